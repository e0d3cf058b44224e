"""cenfusion computes the public CEN code's function: RefineNet-ResNet-50, eval and train.

The reference outputs in tests/compat/official_fixtures/ were produced by the public code
itself (its README says how to rebuild the weights and which tolerances hold).
"""

import json

import pytest
import torch

from cenfusion.compat import cenfusion_to_official, load_official, official_to_cenfusion
from cenfusion.nn import exchange_mask
from tests.compat.fixtures import official_file, reference_weight

MODALITIES = ("rgb", "depth", "ensemble")


@pytest.fixture(scope="module")
def official_state():
    keys = json.loads(official_file("segmentation_refinenet50_keys.json").read_text())
    return {k: reference_weight(k, tuple(shape), owner) for k, shape, owner in keys}


@pytest.fixture(scope="module")
def io():
    return torch.load(official_file("segmentation_refinenet50_io.pt"), weights_only=True)


@pytest.fixture
def model(official_state):
    checkpoint = {"segmenter": {"module." + k: v for k, v in official_state.items()}}
    return load_official(
        checkpoint, backbone="resnet50", num_classes=40, modalities=("rgb", "depth")
    )


def assert_output_close(got, ref):
    tolerance = 1e-4 * max(1.0, ref.abs().max().item())
    assert (got - ref).abs().max().item() <= tolerance


def test_eval_outputs_match_the_public_code(model, io):
    model.eval()
    with torch.no_grad():
        out = model(io["eval"]["inputs"])
    for name, ref in zip(MODALITIES, io["eval"]["outputs"], strict=True):
        assert_output_close(out[name], ref)
    assert_output_close(model.ensemble.weights().detach(), io["eval"]["alpha_soft"])


def test_train_outputs_and_gradients_match_the_public_code(model, io):
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.eval()
    out = model(io["train"]["inputs"])
    for name, ref in zip(MODALITIES, io["train"]["outputs"], strict=True):
        assert_output_close(out[name], ref)
    sum(o.sum() for o in out.values()).backward()
    grads = cenfusion_to_official(
        {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    )

    def relative(key):
        got, ref = grads[key], io["train"]["grads"][key]
        cosine = torch.nn.functional.cosine_similarity(got.flatten(), ref.flatten(), dim=0)
        return ((got - ref).norm() / ref.norm()).item(), cosine.item()

    assert relative("clf_conv.module.weight")[0] <= 1e-4
    assert relative("alpha")[0] <= 1e-3
    for key in ("conv1.module.weight", "layer1.0.bn2.bn_0.weight", "layer1.0.bn2.bn_1.weight",
                "layer3.2.conv2.module.weight"):  # fmt: skip
        rel, cosine = relative(key)
        assert rel <= 0.05 and cosine >= 0.999, key


def test_exchange_masks_match_the_public_code(model):
    expected = json.loads(official_file("segmentation_exchange_masks.json").read_text())
    for site, per_modality in expected.items():
        mask = exchange_mask(model.backbone.get_submodule(site).weight, 2e-2)
        for m in range(2):
            assert mask[m].nonzero().flatten().tolist() == per_modality[f"bn_{m}"]


def test_without_exchange_the_outputs_differ(official_state, io):
    """The fixtures do test the exchange: with it off, outputs move far beyond the tolerance."""
    checkpoint = {"segmenter": official_state}
    model = load_official(checkpoint, backbone="resnet50", num_classes=40, exchange=False)
    model.eval()
    with torch.no_grad():
        out = model(io["eval"]["inputs"])
    ref = io["eval"]["outputs"][0]
    assert (out["m0"] - ref).abs().max().item() > 1.0


def test_import_then_export_is_the_identity(official_state, model):
    back = cenfusion_to_official(model.state_dict())
    assert set(back) == set(official_state)
    assert all(torch.equal(back[k], official_state[k]) for k in official_state)


def test_another_architecture_is_refused_with_the_unmatched_keys(official_state):
    with pytest.raises(ValueError, match="model keys not in the checkpoint.*layer3.6"):
        load_official({"segmenter": official_state}, backbone="resnet101", num_classes=40)
    with pytest.raises(ValueError, match="shape mismatches.*classifier.weight"):
        load_official({"segmenter": official_state}, backbone="resnet50", num_classes=37)
    bad = dict(official_state, **{"extra.module.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="checkpoint keys without a place.*extra.module.weight"):
        official_to_cenfusion(bad, load_official({"segmenter": official_state}).state_dict())


def test_command_line_import_and_export_round_trip(official_state, tmp_path, capsys):
    from cenfusion.cli import main
    from cenfusion.engine.checkpoint import load_checkpoint

    public = tmp_path / "ckpt.pth.tar"
    torch.save({"segmenter": {"module." + k: v for k, v in official_state.items()},
                "epoch_start": 7, "best_val": 0.5}, public)  # fmt: skip
    ours = tmp_path / "imported.pt"
    assert main(["import-official", str(public), "-o", str(ours)]) == 0
    payload = load_checkpoint(ours)
    config = json.loads(payload["config"])
    assert config["model"]["backbone"] == "resnet50" and config["model"]["num_classes"] == 40
    assert config["model"]["modalities"] == ["rgb", "depth"]
    assert torch.equal(payload["model"]["backbone.layer1.0.bn2.weight"][1],
                       official_state["layer1.0.bn2.bn_1.weight"])  # fmt: skip
    back = tmp_path / "exported.pth.tar"
    assert main(["export-official", str(ours), "-o", str(back)]) == 0
    exported = torch.load(back, weights_only=True)["segmenter"]
    assert set(exported) == {"module." + k for k in official_state}
    assert all(torch.equal(exported["module." + k], v) for k, v in official_state.items())
    # a model that exchanges at some stages only has no copy in the public code
    from cenfusion.engine.checkpoint import save_checkpoint

    config["model"]["exchange_stages"] = "early"
    save_checkpoint({**payload, "config": json.dumps(config)}, tmp_path / "early.pt")
    assert main(["export-official", str(tmp_path / "early.pt"), "-o", str(back)]) == 2
    assert "model.exchange_stages is 'early'" in capsys.readouterr().err
    # nor one whose deeper norms are no sites
    config["model"]["exchange_stages"] = "all"
    config["model"]["site_stages"] = [1]
    save_checkpoint({**payload, "config": json.dumps(config)}, tmp_path / "sites.pt")
    assert main(["export-official", str(tmp_path / "sites.pt"), "-o", str(back)]) == 2
    assert "model.site_stages is [1]" in capsys.readouterr().err
