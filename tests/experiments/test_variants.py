"""Method names of a comparison: groups, unimodal expansion, the ablation rows, refusals."""

import warnings

import pytest

from cenfusion.config import load_config
from cenfusion.experiments import resolve_variants
from cenfusion.experiments.variants import ABLATIONS, baseline_names, unimodal_modality


def test_groups_expand_to_every_method_once():
    names = [v.name for v in resolve_variants(["all"], ["rgb", "depth"])]
    assert names[:3] == ["cen", "unimodal-rgb", "unimodal-depth"]
    assert len(names) == len(set(names)) == 3 + 16 + len(ABLATIONS) - 1  # cen is in both
    assert set(baseline_names()) <= set(names)
    assert [v.name for v in resolve_variants(["ablations"], ["rgb", "depth"])] == list(ABLATIONS)


def test_a_one_input_method_names_its_modality_and_every_other_method_none():
    names = [v.name for v in resolve_variants(["all"], ["rgb", "depth"])]
    one_input = {name: unimodal_modality(name) for name in names if unimodal_modality(name)}
    assert one_input == {"unimodal-rgb": "rgb", "unimodal-depth": "depth"}


def test_translation_skips_the_segmentation_ablations_of_a_group_and_refuses_them_by_name():
    names = [
        v.name
        for v in resolve_variants(["all"], ["texture", "reshading"], backbone_ablations=False)
    ]
    assert "unshared-convs" not in names and "cen" in names and "align-late" in names
    with pytest.raises(ValueError, match="ablation of the segmentation backbone"):
        resolve_variants(["shared-bn"], ["a", "b"], backbone_ablations=False)


def test_unknown_methods_are_refused_with_the_valid_names():
    with pytest.raises(ValueError, match=r"method 'concat-deep'.*<fusion>-<stage>"):
        resolve_variants(["concat-deep"], ["rgb", "depth"])
    with pytest.raises(ValueError, match="unimodal-<modality>"):
        resolve_variants(["unimodal-thermal"], ["rgb", "depth"])
    # stage numbers are 1-based ASCII digits
    for name in ("concat-0", "concat-02", "average--1", "concat-\u00b2", "cen-2"):
        with pytest.raises(ValueError, match="or a stage number"):
            resolve_variants([name], ["rgb", "depth"])


def test_the_first_block_norm_row_is_cen_with_that_switch_and_for_the_u_net_only():
    from cenfusion.tasks.translation.training import build_model

    (variant,) = resolve_variants(["cen-first-block-norm"], ["a", "b"], unet_ablations=True)
    config = load_config(
        "synthetic_shade_texture_to_rgb", ["model.num_downs=5", *variant.overrides]
    )
    assert config.model.first_block_norm and config.model.exchange
    assert config.train.sparsity == "disjoint" and config.model.fusion == "cen"
    assert build_model(config).generator.down[0].norm.exchange_threshold is not None
    with pytest.raises(ValueError, match="ablation of the translation U-Net"):
        resolve_variants(["cen-first-block-norm"], ["rgb", "depth"])


def test_the_plain_first_block_norm_row_differs_from_it_by_block_1_being_no_site():
    from cenfusion.tasks.translation.training import build_model

    rows = resolve_variants(
        ["cen-first-block-norm", "cen-first-block-plain-norm"], ["a", "b"], unet_ablations=True
    )
    site, plain = (
        build_model(
            load_config("synthetic_shade_texture_to_rgb", ["model.num_downs=5", *v.overrides])
        )
        for v in rows
    )
    assert set(rows[1].overrides) - set(rows[0].overrides) == {"model.first_block_site=false"}
    assert plain.generator.down[0].norm.exchange_threshold is None
    assert (
        not plain.generator.down[0].norm.exchange_site and site.generator.down[0].norm.exchange_site
    )
    assert all(d.norm.exchange_threshold is not None for d in plain.generator.down[1:-1])


def test_a_numbered_stage_fuses_there_alone_and_a_stage_past_the_network_is_refused():
    from cenfusion.tasks.translation.training import build_model

    base = ["model.num_downs=5"]
    (variant,) = resolve_variants(["average-2"], ["rgb", "depth"])
    assert variant.description == "average fusion after stage 2"
    model = build_model(load_config("synthetic_shade_texture_to_rgb", [*base, *variant.overrides]))
    assert list(model.generator.fusion) == ["down2"]
    (variant,) = resolve_variants(["concat-6"], ["rgb", "depth"])
    with pytest.raises(ValueError, match=r"fusion_stages: expected stage numbers in 1\.\.5"):
        build_model(load_config("synthetic_shade_texture_to_rgb", [*base, *variant.overrides]))


@pytest.mark.parametrize(
    "name, expected",
    [
        ("cen", {"exchange": True, "sparsity": "disjoint", "fusion": "cen"}),
        ("unshared-convs", {"exchange": False, "sparsity": "none", "share_convs": False}),
        ("shared-bn", {"exchange": False, "sparsity": "none", "private_norms": False}),
        ("private-bn", {"exchange": False, "sparsity": "none", "private_norms": True}),
        ("private-bn-l1", {"exchange": False, "sparsity": "disjoint"}),
        ("cen-l1-all", {"exchange": True, "sparsity": "all"}),
        (
            "cen-exchange-early",
            {"exchange": True, "sparsity": "disjoint", "exchange_stages": "early"},
        ),
        ("self-attention-late", {"fusion": "self_attention", "fusion_stages": "late"}),
        ("concat-2", {"fusion": "concat", "fusion_stages": [2], "exchange": False}),
        ("unimodal-depth", {"modalities": ["depth"], "exchange": False, "sparsity": "none"}),
    ],
)
def test_each_method_is_the_base_config_with_its_overrides(name, expected):
    """(Also on a base that exchanges in the first stage only: the CEN rows exchange at every
    stage whatever the base says, and the rows without exchange reset it too.)"""
    (variant,) = resolve_variants([name], ["rgb", "depth"])
    config = load_config(None, ["model.exchange_stages=early", *variant.overrides])
    if name != "cen-exchange-early" and config.model.fusion == "cen":
        expected = {**expected, "exchange_stages": "all"}
    for key, value in expected.items():
        section = config.train if key == "sparsity" else config.model
        assert getattr(section, key) == value, key


def test_every_method_builds_on_a_partially_exchanging_base_without_a_warning():
    """A row without exchange would warn that exchange_stages has no effect; none must."""
    from cenfusion.tasks.segmentation.training import build_model

    names = [*ABLATIONS, "cen-exchange-early", "unimodal-rgb", "concat-early"]
    for variant in resolve_variants(names, ["rgb", "depth"]):
        base = ["model.backbone=resnet18", "model.num_classes=4", "model.exchange_stages=early"]
        config = load_config(None, [*base, *variant.overrides])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            build_model(config)


def test_the_robustness_variant_is_cen_with_modality_dropout_and_needs_the_task_to_have_it():
    (variant,) = resolve_variants(["cen-modality-dropout"], ["rgb", "depth"])
    assert (
        "train.modality_dropout=0.3" in variant.overrides
        and "model.fusion=cen" in variant.overrides
    )
    assert "cen-modality-dropout" not in [
        v.name for v in resolve_variants(["all"], ["rgb", "depth"])
    ]
    with pytest.raises(ValueError, match="needs train.modality_dropout"):
        resolve_variants(["cen-modality-dropout"], ["texture", "shade"], False, False)
