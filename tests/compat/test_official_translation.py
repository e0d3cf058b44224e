"""cenfusion computes the public CEN pix2pix generator's function: ngf 8, two modalities.

The reference outputs in tests/compat/official_fixtures/ were produced by the public code
itself (its README says how to rebuild the weights and which tolerances hold):
``Generator(3, 8, 3)``, exchange on at threshold 1e-2, in eval mode (running statistics) and in
train mode with the dropouts off (instance statistics).
"""

import json

import pytest
import torch

from cenfusion.compat import (
    cenfusion_to_official,
    load_official,
    map_official_translation_key,
    official_translation_to_cenfusion,
)
from cenfusion.compat.official import UNUSED_NORM
from tests.compat.fixtures import official_file, reference_weight

OUTPUTS = ("m0", "m1", "ensemble")


@pytest.fixture(scope="module")
def official_state():
    keys = json.loads(official_file("translation_pix2pix_ngf8_keys.json").read_text())
    return {k: reference_weight(k, tuple(shape), owner) for k, shape, owner in keys}


@pytest.fixture(scope="module")
def io():
    return torch.load(official_file("translation_pix2pix_ngf8_io.pt"), weights_only=True)


@pytest.fixture
def model(official_state):
    return load_official(official_state, task="translation", insnorm_threshold=1e-2)


def max_error(got, ref):
    """(max abs difference, the README's tolerance 1e-4 * max(1, max |ref|))."""
    return (got - ref).abs().max().item(), 1e-4 * max(1.0, ref.abs().max().item())


def test_eval_outputs_match_the_public_code(model, io):
    model.eval()
    with torch.no_grad():
        out = model(io["eval"]["inputs"])
    for name, ref in zip(OUTPUTS, io["eval"]["outputs"], strict=True):
        error, tolerance = max_error(out[name], ref)
        assert error <= tolerance, (name, error)
    error, tolerance = max_error(model.ensemble.weights().detach(), io["eval"]["alpha_soft"])
    assert error <= tolerance


def test_train_outputs_match_the_public_code(model, io):
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.eval()
    with torch.no_grad():
        out = model(io["train"]["inputs"])
    for name, ref in zip(OUTPUTS, io["train"]["outputs"], strict=True):
        error, tolerance = max_error(out[name], ref)
        assert error <= tolerance, (name, error)
    error, tolerance = max_error(model.ensemble.weights().detach(), io["train"]["alpha_soft"])
    assert error <= tolerance


def test_settings_are_read_from_the_checkpoint(model):
    generator = model.generator
    assert (generator.ngf, generator.num_downs, generator.num_modalities) == (8, 8, 2)
    assert generator.exchange and generator.insnorm_threshold == 1e-2


@pytest.mark.parametrize("change", ["no exchange", "block-1 norm called"])
def test_the_fixtures_tell_the_details_apart(official_state, io, change):
    """Turning the exchange off, or calling the norm that the public block 1 builds but never
    calls, moves the outputs far beyond the tolerance: the fixtures test both."""
    exchange = change != "no exchange"
    model = load_official(official_state, task="translation", exchange=exchange).eval()
    if change == "block-1 norm called":
        weight, bias, mean, var = (
            [official_state[f"conv1.insnorm_conv.insnorm_{m}.{field}"] for m in range(2)]
            for field in ("weight", "bias", "running_mean", "running_var")
        )

        def norm_hook(module, inputs, output):
            halves = output.chunk(2)
            return torch.cat(
                [
                    torch.nn.functional.instance_norm(h, mean[m], var[m], weight[m], bias[m])
                    for m, h in enumerate(halves)
                ]
            )

        model.generator.down[0].register_forward_hook(norm_hook)
    with torch.no_grad():
        out = model(io["eval"]["inputs"])
    error, tolerance = max_error(out["m0"], io["eval"]["outputs"][0])
    assert error > 100 * tolerance


def test_import_then_export_is_the_identity(official_state, model):
    back = cenfusion_to_official(model.state_dict())
    assert set(back) == set(official_state)
    unused = {k for k in official_state if map_official_translation_key(k)[0] == UNUSED_NORM}
    assert len(unused) == 3 * 2 * 5  # conv1, conv8, deconv8; two modalities; five entries
    assert all(torch.equal(back[k], official_state[k]) for k in official_state if k not in unused)
    # the norms the public forward never calls come back as the public code initialises them
    for key in unused:
        field = key.rsplit(".", 1)[1]
        expected = {"weight": 1.0, "running_var": 1.0}.get(field, 0.0)
        assert torch.all(back[key] == expected), key
    # and exporting what was exported and re-imported changes nothing at all
    again = load_official(back, task="translation")
    assert all(
        torch.equal(v, back[k]) for k, v in cenfusion_to_official(again.state_dict()).items()
    )
    # with the never-called norms load_official kept beside the model, export is the identity
    exact = cenfusion_to_official(model.state_dict(), model.official_unused_norms)
    assert set(exact) == set(official_state)
    assert all(torch.equal(exact[k], official_state[k]) for k in official_state)


def test_command_line_import_and_export_round_trip(official_state, tmp_path):
    from cenfusion.cli import main
    from cenfusion.engine.checkpoint import load_checkpoint

    public = tmp_path / "checkpoint-gen.pkl"
    torch.save(official_state, public)
    ours = tmp_path / "imported.pt"
    assert main(["import-official", str(public), "-o", str(ours),
                 "--modalities", "reshading,texture"]) == 0  # fmt: skip
    payload = load_checkpoint(ours)
    config = json.loads(payload["config"])
    assert config["task"] == "translation" and config["model"]["ngf"] == 8
    assert config["model"]["modalities"] == ["reshading", "texture"]
    back = tmp_path / "exported.pkl"
    assert main(["export-official", str(ours), "-o", str(back)]) == 0
    exported = torch.load(back, weights_only=True)
    assert set(exported) == set(official_state)
    assert all(torch.equal(exported[k], v) for k, v in official_state.items())


def test_another_architecture_is_refused_with_the_unmatched_keys(official_state):
    with pytest.raises(ValueError, match="shape mismatches.*down.0.conv.weight"):
        load_official(official_state, task="translation", ngf=16)
    with pytest.raises(ValueError, match="without a place.*conv8.conv.module.weight"):
        load_official(official_state, task="translation", num_downs=7)
    with pytest.raises(ValueError, match="model keys not in the checkpoint.*down.2.norm.weight"):
        load_official(official_state, task="translation", modalities=3)
    bad = dict(official_state, **{"extra.module.weight": torch.zeros(1)})
    target = load_official(official_state, task="translation").generator.state_dict()
    with pytest.raises(ValueError, match="checkpoint keys without a place.*extra.module.weight"):
        official_translation_to_cenfusion(bad, target)
    missing = {k: v for k, v in official_state.items() if k != "conv1.insnorm_conv.insnorm_1.bias"}
    with pytest.raises(
        ValueError, match="not in the checkpoint.*conv1.insnorm_conv.insnorm_1.bias"
    ):
        official_translation_to_cenfusion(missing, target)


def test_a_generator_with_a_first_block_norm_is_refused_for_export():
    """The public generator never calls its first block's norm: exporting ours would drop it."""
    from cenfusion.models import create_model

    model = create_model("translation", "pix2pix", modalities=2, ngf=4, num_downs=5)
    assert set(cenfusion_to_official(model.state_dict()))  # the paper's layout exports
    model = create_model(
        "translation", "pix2pix", modalities=2, ngf=4, num_downs=5, first_block_norm=True
    )
    with pytest.raises(ValueError, match="norm in its first encoder block"):
        cenfusion_to_official(model.state_dict())
