"""A model built for modalities S, called with a subset P: the present rows, nothing else.

The slow reference is the model one would build for P alone: the same shared convolutions, the
present modalities' norm rows and α (for M = 3 with one missing, an M = 2 model). With every
modality present nothing changes, bit for bit.
"""

import pytest
import torch

from cenfusion.models import create_model
from cenfusion.nn import ModalityBatchNorm2d, exchange_sites


def varied(model, seed=0):
    """Different gammas (some below θ), statistics and α per modality, so rows matter."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, ModalityBatchNorm2d):
                module.weight.uniform_(-1, 1, generator=generator)
                module.running_mean.normal_(0, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
        model.ensemble.alpha.normal_(0, 1, generator=generator)
    return model.eval()


def reference(model, present, **kwargs):
    """The model built for ``present`` alone, filled with the present rows of ``model``."""
    rows = [i for i, m in enumerate(model.modalities) if m in present]
    small = create_model("segmentation", modalities=tuple(present), **kwargs).eval()
    big = model.state_dict()
    state = {}
    for key, value in small.state_dict().items():
        source = big[key]
        state[key] = source[rows] if source.shape != value.shape else source
    small.load_state_dict(state)
    return small


SMALL = {"backbone": "resnet18", "num_classes": 5, "decoder_channels": (8, 8), "dropout": 0.0}


@pytest.mark.parametrize(
    ("modalities", "present"),
    [
        (("rgb", "depth"), ("rgb",)),
        (("rgb", "depth"), ("depth",)),
        (("rgb", "depth", "normal"), ("rgb", "normal")),
        (("rgb", "depth", "normal"), ("depth",)),
    ],
)
def test_a_subset_computes_the_model_of_its_rows(modalities, present):
    torch.manual_seed(0)
    model = varied(create_model("segmentation", modalities=modalities, **SMALL))
    assert any(n.exchange_threshold for _, n in exchange_sites(model))
    inputs = {m: torch.randn(2, 3, 32, 32) for m in present}
    with torch.no_grad():
        got = model(inputs)
        expected = reference(model, present, **SMALL)(inputs)
    assert list(got) == [*present, "ensemble"]
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=key)


def test_with_every_modality_present_nothing_changes():
    torch.manual_seed(0)
    model = varied(create_model("segmentation", modalities=("rgb", "depth"), **SMALL))
    assert model.with_modalities(["depth", "rgb"]) is model
    inputs = {m: torch.randn(1, 3, 32, 32) for m in ("rgb", "depth")}
    with torch.no_grad():
        torch.testing.assert_close(
            model(inputs)["ensemble"], model(inputs)["ensemble"], rtol=0, atol=0
        )


def test_the_restricted_model_shares_the_convolutions_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = varied(create_model("segmentation", modalities=("rgb", "depth"), **SMALL))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rgb_only = model.with_modalities(["rgb"])
    assert rgb_only.backbone.conv1.weight is model.backbone.conv1.weight
    assert rgb_only.modalities == ("rgb",) and model.modalities == ("rgb", "depth")
    assert rgb_only.ensemble.weights().tolist() == [1.0]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_translation_generator_runs_on_one_input():
    torch.manual_seed(0)
    model = create_model("translation", modalities=("texture", "reshading"), ngf=4, ndf=4,
                         num_downs=5).eval()  # fmt: skip
    out = model({"texture": torch.randn(1, 3, 32, 32)})
    assert list(out) == ["texture", "ensemble"]
    torch.testing.assert_close(out["ensemble"], out["texture"])


def test_unknown_or_no_modalities_and_fusion_baselines_are_refused():
    model = create_model("segmentation", modalities=("rgb", "depth"), **SMALL)
    with pytest.raises(ValueError, match="non-empty subset"):
        model.with_modalities([])
    with pytest.raises(ValueError, match="thermal"):
        model.with_modalities(["thermal"])
    concat = create_model("segmentation", modalities=("rgb", "depth"), fusion="concat", **SMALL)
    with pytest.raises(ValueError, match="fusion baseline needs all 2 modalities"):
        concat.with_modalities(["rgb"])
