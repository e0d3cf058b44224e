"""Exported models (ONNX through onnxruntime, TorchScript) compute what the PyTorch model does,
at batch sizes and image sizes other than the ones they were traced with."""

from __future__ import annotations

import pytest
import torch

from cenfusion.cli import main
from cenfusion.config import load_config
from cenfusion.data.synthetic.writers import write_nyudv2
from cenfusion.nn import exchange_sites
from cenfusion.tasks import get_task, load_trained

SEGMENTATION = get_task("segmentation")

SHAPES = [(1, 64, 96), (3, 96, 64)]  # (batch, H, W), none of them the traced (2, 64, 96)


@pytest.fixture(scope="module")
def segmentation_checkpoint(tmp_path_factory):
    """A tiny CEN RefineNet checkpoint in which half of the first modality's channels exchange."""
    root = tmp_path_factory.mktemp("export")
    write_nyudv2(root / "data", n_train=2, n_val=1, size=(32, 40), progress=False)
    config = load_config(
        None,
        [
            f"output_dir={root / 'run'}",
            f"data.root={root / 'data'}",
            "model.backbone=resnet18",
            "model.num_classes=5",
            "model.decoder_channels=[8, 8]",
        ],
    )
    trainer = SEGMENTATION.trainer(config, progress=False)
    with torch.no_grad():
        for _, norm in exchange_sites(trainer.model):
            norm.weight[0, : norm.num_features // 2] = 1e-3
            norm.running_mean.normal_()
            norm.running_var.uniform_(0.5, 2.0)
    return trainer.save(0)


def reference_outputs(checkpoint, inputs):
    _, model, _ = load_trained(checkpoint)
    with torch.no_grad():
        out = model(dict(zip(("rgb", "depth"), inputs, strict=True)))
    return [out["rgb"], out["depth"], out["ensemble"]]


def inputs_of(batch, height, width, seed=0):
    generator = torch.Generator().manual_seed(seed)
    rgb = torch.randn(batch, 3, height, width, generator=generator)
    depth = torch.randn(batch, 3, height, width, generator=generator)
    return rgb, depth


def test_onnx_export_matches_pytorch_in_onnxruntime(segmentation_checkpoint, tmp_path):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    path = tmp_path / "model.onnx"
    code = main(["export", str(segmentation_checkpoint), "--format", "onnx", "-o", str(path)])
    assert code == 0
    session = ort.InferenceSession(str(path))
    assert [i.name for i in session.get_inputs()] == ["rgb", "depth"]
    assert [o.name for o in session.get_outputs()] == ["out_rgb", "out_depth", "ensemble"]
    for batch, height, width in SHAPES:
        rgb, depth = inputs_of(batch, height, width)
        theirs = session.run(None, {"rgb": rgb.numpy(), "depth": depth.numpy()})
        for ours, exported in zip(
            reference_outputs(segmentation_checkpoint, (rgb, depth)), theirs, strict=True
        ):
            assert exported.shape == tuple(ours.shape)
            torch.testing.assert_close(torch.from_numpy(exported), ours, atol=1e-4, rtol=1e-4)


def test_torchscript_export_matches_pytorch(segmentation_checkpoint, tmp_path):
    path = tmp_path / "model.pt"
    assert (
        main(["export", str(segmentation_checkpoint), "--format", "torchscript", "-o", str(path)])
        == 0
    )
    scripted = torch.jit.load(str(path))
    for batch, height, width in SHAPES:
        rgb, depth = inputs_of(batch, height, width, seed=1)
        with torch.no_grad():
            exported = scripted(rgb, depth)
        for ours, theirs in zip(
            reference_outputs(segmentation_checkpoint, (rgb, depth)), exported, strict=True
        ):
            torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-5)


def test_translation_generator_exports_to_torchscript(tmp_path):
    from cenfusion import create_model
    from cenfusion.export import export_torchscript

    torch.manual_seed(0)
    model = create_model(
        "translation", modalities=("texture", "reshading"), ngf=4, ndf=4, num_downs=5
    )
    with torch.no_grad():
        for _, norm in exchange_sites(model.generator):
            norm.weight[1, : norm.num_features // 2] = 1e-3
    model.eval()
    path = export_torchscript(model, tmp_path / "generator.pt")
    scripted = torch.jit.load(str(path))
    texture, shade = torch.randn(3, 3, 64, 32), torch.randn(3, 3, 64, 32)
    with torch.no_grad():
        ours = model.generator({"texture": texture, "reshading": shade})
        theirs = scripted(texture, shade)
    for name, exported in zip(("texture", "reshading", "ensemble"), theirs, strict=True):
        torch.testing.assert_close(exported, ours[name], atol=1e-5, rtol=1e-5)


def test_export_refuses_an_unknown_format_and_a_bad_size(segmentation_checkpoint, tmp_path, capsys):
    from cenfusion.export import export_checkpoint

    with pytest.raises(ValueError, match="--format"):
        export_checkpoint(segmentation_checkpoint, tmp_path / "x", "tflite")
    with pytest.raises(ValueError, match="multiples of 32"):
        export_checkpoint(segmentation_checkpoint, tmp_path / "x.pt", "torchscript", (50, 64))
    assert main(["export", str(tmp_path / "missing.pt"), "-o", str(tmp_path / "m.onnx")]) == 2
    assert "missing.pt" in capsys.readouterr().err


def test_a_trained_trunk_starts_another_run_as_model_pretrained(segmentation_config, tmp_path):
    """The pretrained regime: RGB alone trained first; its trunk (torchvision layout) then
    initialises a two-modality CEN model, the same copy in every modality's norms."""
    config = segmentation_config("model.modalities=[rgb]", "optim.stages=[{epochs: 1}]",
                                 "train.eval_every=0")  # fmt: skip
    trained = get_task("segmentation").trainer(config, progress=False)
    trained.fit()
    out = tmp_path / "trunk.pth"
    assert main(["export", str(tmp_path / "run" / "last.pt"), "--format", "backbone", "-o",
                 str(out)]) == 0  # fmt: skip
    trunk = torch.load(out, weights_only=True)
    assert "fc.weight" not in trunk and trunk["bn1.weight"].dim() == 1
    started = SEGMENTATION.build_model(segmentation_config(f"model.pretrained={out}"))
    ours = trained.model.backbone.state_dict()
    for key, value in started.backbone.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        source = ours[key]
        if value.dim() and source.dim() == value.dim() and source.shape[0] == 1 < value.shape[0]:
            for row in value:  # a private norm: the one trained row in every modality's row
                torch.testing.assert_close(row, source[0], msg=key)
        else:
            torch.testing.assert_close(value, source, msg=key)


def test_a_fast_torchscript_file_carries_the_bf16_choice_and_stays_close(
    segmentation_checkpoint, tmp_path
):
    from cenfusion.engine.speed import SpeedSettings
    from cenfusion.export import export_torchscript

    _, model, _ = load_trained(segmentation_checkpoint)
    path = export_torchscript(
        model.eval(), tmp_path / "fast.pt", settings=SpeedSettings("bf16", True)
    )
    scripted = torch.jit.load(str(path))
    rgb, depth = inputs_of(2, 64, 96, seed=2)
    with torch.no_grad():
        exported = scripted(rgb, depth)
    for ours, theirs in zip(
        reference_outputs(segmentation_checkpoint, (rgb, depth)), exported, strict=True
    ):
        assert theirs.dtype == torch.float32
        # bf16 arithmetic shows (an fp32 trace agrees to about 1e-7), within bf16's tolerance
        assert 1e-4 < float((theirs - ours).norm() / ours.norm()) < 5e-2


def test_export_speed_follows_the_host_and_refuses_bf16_outside_torchscript(
    segmentation_checkpoint, tmp_path, monkeypatch, capsys
):
    from cenfusion import export as export_module
    from cenfusion.engine.speed import HostCapabilities

    monkeypatch.setattr(export_module, "host_capabilities",
                        lambda device: HostCapabilities("cpu", True, False, "AVX512"))  # fmt: skip
    with pytest.raises(ValueError, match="only be baked into --format torchscript"):
        export_module.export_checkpoint(
            segmentation_checkpoint, tmp_path / "m.onnx", "onnx", speed="fast"
        )
    args = ["export", str(segmentation_checkpoint), "--format", "torchscript", "--speed", "fast"]
    assert main([*args, "-o", str(tmp_path / "m.pt")]) == 0
    assert "speed fast: bf16 + channels_last" in capsys.readouterr().out
    monkeypatch.setattr(export_module, "host_capabilities",
                        lambda device: HostCapabilities("cpu", False, False, "AVX2"))  # fmt: skip
    _, settings = export_module.export_checkpoint(
        segmentation_checkpoint, tmp_path / "m2.onnx", "backbone", speed="fast"
    )
    assert settings.precision == "fp32"  # no bf16 hardware: fast is the fp32 file
