"""Inference export: a trained model as ONNX or TorchScript, one input per modality.

The exported graph takes the modalities as separate inputs (named after them, ``(B, C, H, W)``
each, as many channels as the model's stem) and returns one output per modality (named
``out_<modality>``) plus the ``ensemble``, in that order. Batch, height and width are dynamic:
any batch size, and any height and width that are multiples of the model's ``size_multiple``
(32 for a segmentation ResNet, ``2**num_downs`` for the translation U-Net). Exchange decisions
are baked in: they depend on the trained scaling factors only, not on the input.

``speed="fast"`` bakes this host's inference choice (:func:`cenfusion.engine.speed.
choose_settings`) into a TorchScript file: traced under bf16 autocast with channels_last
weights where the host has bf16 hardware (the file then runs in bf16 wherever it is loaded;
its outputs stay float32), the fp32 trace elsewhere. ONNX files stay fp32: an ONNX runtime
picks its own precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from cenfusion.engine.speed import (
    SPEEDS,
    Accelerated,
    SpeedSettings,
    choose_settings,
    host_capabilities,
)
from cenfusion.models.backbones.pretrained import torchvision_state
from cenfusion.tasks import load_trained

FORMATS = ("onnx", "torchscript", "backbone")


class ModalityInputs(nn.Module):
    """``forward(*modalities)`` -> ``(out_0, ..., out_{M-1}, ensemble)``: a plain-tensor edge."""

    def __init__(self, model: nn.Module, modalities: Sequence[str], input_channels: Sequence[int]):
        super().__init__()
        self.model = model
        self.modalities = tuple(modalities)
        self.input_channels = tuple(input_channels)

    @property
    def output_names(self) -> list[str]:
        """``out_<modality>`` per branch, then ``ensemble`` (ONNX names must differ from the
        inputs')."""
        return [*(f"out_{m}" for m in self.modalities), "ensemble"]

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        outputs = self.model(dict(zip(self.modalities, inputs, strict=True)))
        return tuple(outputs[name] for name in (*self.modalities, "ensemble"))


def exportable(model: nn.Module, input_channels: Sequence[int] | None = None) -> ModalityInputs:
    """Wrap a segmentation model or a translation generator (a ``CENPix2Pix`` gives its
    generator) for export, in evaluation mode."""
    network = getattr(model, "generator", model)
    modalities = tuple(network.modalities)
    if input_channels is None:
        input_channels = [_stem_channels(network)] * len(modalities)
    return ModalityInputs(network, modalities, input_channels).eval()


def size_multiple(model: nn.Module) -> int:
    """Height and width of exported inputs must be multiples of this."""
    network = getattr(model, "generator", model)
    return int(getattr(network, "size_multiple", 32))


def _stem_channels(network: nn.Module) -> int:
    backbone = getattr(network, "backbone", network)
    return int(getattr(backbone, "in_channels", 3))


def example_inputs(
    wrapper: ModalityInputs, size: tuple[int, int], batch: int = 2
) -> tuple[Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    return tuple(
        torch.randn(batch, channels, *size, generator=generator)
        for channels in wrapper.input_channels
    )


def export_onnx(
    model: nn.Module,
    path: str | Path,
    size: tuple[int, int] | None = None,
    input_channels: Sequence[int] | None = None,
) -> Path:
    """Write ``model`` as ONNX (opset of the torch exporter) with dynamic batch and size."""
    wrapper, size, multiple, path = _prepare(model, path, size, input_channels)
    batch = torch.export.Dim("batch", min=1, max=1024)
    height = multiple * torch.export.Dim("height_blocks", min=1, max=4096 // multiple)
    width = multiple * torch.export.Dim("width_blocks", min=1, max=4096 // multiple)
    axes = {0: batch, 2: height, 3: width}
    torch.onnx.export(
        wrapper,
        example_inputs(wrapper, size),
        str(path),
        dynamo=True,
        input_names=list(wrapper.modalities),
        output_names=wrapper.output_names,
        dynamic_shapes=(tuple(axes for _ in wrapper.modalities),),  # forward(*inputs)
        verbose=False,
    )
    return path


def export_torchscript(
    model: nn.Module,
    path: str | Path,
    size: tuple[int, int] | None = None,
    input_channels: Sequence[int] | None = None,
    settings: SpeedSettings | None = None,
) -> Path:
    """Write ``model`` as a traced TorchScript module (shapes stay symbolic in the trace);
    under ``settings`` (bf16 autocast, channels_last) when given."""
    wrapper, size, _, path = _prepare(model, path, size, input_channels)
    traced_module: nn.Module = wrapper
    if settings is not None and _changes_anything(settings):
        if settings.compile:
            raise ValueError("export: torch.compile cannot be baked into a TorchScript file")
        traced_module = Accelerated(wrapper, settings, torch.device("cpu")).eval()
    with torch.no_grad():
        traced = torch.jit.trace(traced_module, example_inputs(wrapper, size), check_trace=False)
    traced.save(str(path))
    return path


def _changes_anything(settings: SpeedSettings) -> bool:
    """Whether ``settings`` differ from the plain fp32 path (whatever their reason says)."""
    return (settings.precision, settings.channels_last, settings.compile) != ("fp32", False, False)


def _prepare(
    model: nn.Module,
    path: str | Path,
    size: tuple[int, int] | None,
    input_channels: Sequence[int] | None,
) -> tuple[ModalityInputs, tuple[int, int], int, Path]:
    """The wrapper, the checked example size (default 2x3 blocks), the multiple, the path."""
    wrapper = exportable(model, input_channels)
    multiple = size_multiple(model)
    size = tuple(size) if size else (2 * multiple, 3 * multiple)
    if len(size) != 2 or any(s < multiple or s % multiple for s in size):
        raise ValueError(f"example size {size}: expected H and W multiples of {multiple}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return wrapper, size, multiple, path


def export_checkpoint(
    checkpoint: str | Path,
    output: str | Path,
    fmt: str,
    size: tuple[int, int] | None = None,
    speed: str = "exact",
) -> tuple[Path, SpeedSettings]:
    """``cenfusion export``: rebuild a checkpoint's model and write it as ``fmt``, at ``speed``
    (see the module docstring); returns the path and the settings baked in."""
    if fmt not in FORMATS:
        raise ValueError(f"--format: expected one of {FORMATS}, got {fmt!r}")
    if speed not in SPEEDS:
        raise ValueError(f"--speed: expected one of {SPEEDS}, got {speed!r}")
    settings = choose_settings("inference", speed, host_capabilities("cpu"))
    if _changes_anything(settings) and fmt != "torchscript":
        raise ValueError(
            f"--speed fast with --format {fmt}: this host's choice ({settings.describe()}) can "
            "only be baked into --format torchscript; ONNX and the trunk stay fp32"
        )
    _, model, _ = load_trained(checkpoint)
    if fmt == "backbone":
        return export_backbone(model, output), settings
    if fmt == "onnx":
        return export_onnx(model.eval(), output, size), settings
    return export_torchscript(model.eval(), output, size, settings=settings), settings


def export_backbone(model: nn.Module, output: str | Path, modality: int = 0) -> Path:
    """Write a segmentation model's ResNet trunk as a torchvision-format state dict (the first
    modality's norms), which ``model.pretrained`` of any later run reads."""
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        raise ValueError(
            f"--format backbone: {type(model).__name__} has no ResNet backbone (segmentation "
            "models have one)"
        )
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision_state(backbone, modality), path)
    return path
