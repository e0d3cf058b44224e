"""Opt-in speed options: the ``channels_last`` memory format and ``torch.compile``.

Both are switches of :class:`cenfusion.config.TrainConfig` (``train.channels_last``,
``train.compile``) and change no result beyond float rounding
(``tests/engine/test_speed.py`` checks each against the default path). The third option, bf16
autocast (``train.precision: bf16``), is the precision switch :func:`autocast_context`.

Neither is on by default because neither pays everywhere: on the project's 2-core AVX2 CPU
``channels_last`` gained nothing and ``torch.compile`` made a training step slower (and costs
minutes of compilation, with a C++ compiler, before the first step); ``benchmarks/run.py
--options channels_last compile`` measures both on any machine.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from cenfusion.config import Config, TrainConfig


def _train_config(config: Config | TrainConfig) -> TrainConfig:
    return config.train if isinstance(config, Config) else config


def apply_speed_options(
    module: nn.Module,
    config: Config | TrainConfig,
    wrap: Callable[[nn.Module], nn.Module] | None = None,
) -> nn.Module:
    """The module to call for the forward pass, under ``train.channels_last``/``train.compile``.

    ``channels_last`` converts ``module``'s parameters in place (the optimiser and the state
    dict keep seeing the same tensors). ``wrap`` (the trainers pass DistributedDataParallel)
    comes between the two: after the conversion, whose strides DDP's gradient buckets must
    see, and before compilation, which PyTorch wants outside DDP. ``compile`` returns
    ``torch.compile(...)``, which shares ``module``'s parameters; keep saving and optimising
    ``module`` itself, whose state dict keys the compiled wrapper would prefix with
    ``_orig_mod.``. Under tracing and compilation the private norms take their composite path
    (no custom autograd function), so the compiled graph is whole.
    """
    train = _train_config(config)
    if train.compile:  # refuse before any conversion, naming the reason
        available, reason = compile_available(_device_of(module))
        if not available:
            raise RuntimeError(f"train.compile: {reason}")
    if train.channels_last:
        module.to(memory_format=torch.channels_last)
    if wrap is not None:
        module = wrap(module)
    if train.compile:
        return torch.compile(module)
    return module


def autocast_context(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The one precision switch: fp32, or bf16 autocast on CPU and CUDA alike."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        if device.type == "cpu" and not cpu_has_fast_bf16():
            warnings.warn(
                "bf16 autocast on a CPU without hardware bf16 (AVX512-BF16/AMX): convolutions "
                "fall back to a slow path, measured 10-30x slower than fp32 on an AVX2 CPU",
                stacklevel=2,
            )
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ValueError(f"train.precision: expected 'fp32' or 'bf16', got {precision!r}")


def cpu_has_fast_bf16() -> bool:
    """Whether oneDNN runs bf16 convolutions natively on this CPU."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def prepare_inputs(x: Tensor, config: Config | TrainConfig) -> Tensor:
    """``x`` in the memory format the model expects (``channels_last`` for 4-d inputs), for
    calls of ``forward_stacked`` on stacked tensors (the models' ``forward`` does this
    itself)."""
    if _train_config(config).channels_last and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def compile_available(device: torch.device | str = "cpu") -> tuple[bool, str]:
    """Whether ``torch.compile`` (inductor) can build kernels for ``device``, and why not.

    On the CPU inductor writes C++ and needs a compiler (``$CXX``, ``g++``, ``c++`` or
    ``clang++``); on CUDA it needs Triton.
    """
    device = torch.device(device)
    if not hasattr(torch, "compile"):
        return False, f"torch {torch.__version__} has no torch.compile"
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return False, "inductor needs Triton on CUDA (pip install triton)"
        return True, ""
    compilers = [os.environ.get("CXX"), "g++", "c++", "clang++"]
    if not any(c and shutil.which(c) for c in compilers):
        return False, "inductor needs a C++ compiler on the CPU (g++, c++ or clang++ on PATH)"
    return True, ""


def _device_of(module: nn.Module) -> torch.device:
    first = next(itertools.chain(module.parameters(), module.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


# --- one switch per host: exact | fast ------------------------------------------------------

SPEEDS = ("exact", "fast")
MODES = ("inference", "training")


@dataclass(frozen=True)
class HostCapabilities:
    """What a device can do fast: bf16 matrix hardware (AMX or AVX512-BF16 on the CPU, bf16
    on a CUDA device) and a compiler for ``torch.compile``; ``cpu`` names the CPU's level."""

    device_type: str
    bf16: bool
    compiler: bool
    cpu: str = ""


@dataclass(frozen=True)
class SpeedSettings:
    """What a speed choice turns on: the precision, the memory format, compilation; ``reason``
    says why (default: the exact path's, or "set by hand" for any other combination)."""

    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    reason: str = ""

    def __post_init__(self) -> None:
        if not self.reason:
            exact = (self.precision, self.channels_last, self.compile) == ("fp32", False, False)
            default = "exact: fp32, the default path" if exact else "set by hand"
            object.__setattr__(self, "reason", default)

    def describe(self) -> str:
        parts = [self.precision] + (["channels_last"] if self.channels_last else [])
        parts += ["compile"] if self.compile else []
        return f"{' + '.join(parts)} ({self.reason})"


def host_capabilities(device: torch.device | str = "cpu") -> HostCapabilities:
    """Detect this host's capabilities for ``device`` (never assumed from the CPU's name)."""
    device = torch.device(device)
    compiler, _ = compile_available(device)
    if device.type == "cuda":
        return HostCapabilities("cuda", torch.cuda.is_bf16_supported(), compiler)
    return HostCapabilities(
        "cpu", cpu_has_fast_bf16(), compiler, torch.backends.cpu.get_cpu_capability()
    )


def choose_settings(mode: str, speed: str, host: HostCapabilities) -> SpeedSettings:
    """The settings ``speed`` means for ``mode`` on ``host``.

    ``exact`` is the fp32 path. ``fast`` takes bf16 autocast with channels_last where the
    hardware runs bf16 natively (measured on an AMX CPU with RefineNet-ResNet-50, M = 2: 4.5x
    inference and 4.1x training against fp32, ensemble argmax 99.35 % equal); elsewhere it
    stays exact, because there bf16 runs a slow path (10-30x slower on an AVX2 CPU) and
    channels_last gained nothing. ``torch.compile`` is never chosen: it made a CPU training
    step slower and costs minutes before the first step.
    """
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    if speed not in SPEEDS:
        raise ValueError(f"speed: expected one of {SPEEDS}, got {speed!r}")
    if speed == "exact":
        return SpeedSettings()
    if host.bf16:
        where = "CUDA bf16" if host.device_type == "cuda" else "CPU bf16 hardware (AMX/AVX512-BF16)"
        return SpeedSettings("bf16", True, False, f"fast on {where}")
    return SpeedSettings(
        reason=f"fast: no bf16 hardware here ({host.cpu or host.device_type}), fp32"
    )


class Accelerated(nn.Module):
    """``model`` run under :class:`SpeedSettings`: the same inputs (dict, list or stacked
    tensor), float32 outputs, ``settings`` saying what was chosen. The model's weights and
    state dict stay as they were (channels_last changes the layout, not a value)."""

    def __init__(self, model: nn.Module, settings: SpeedSettings, device: torch.device) -> None:
        super().__init__()
        self.model = model
        self.settings = settings
        self.device = device
        if settings.channels_last:
            model.to(memory_format=torch.channels_last)
        self.forward_model = torch.compile(model) if settings.compile else model

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with autocast_context(self.settings.precision, self.device):
            outputs = self.forward_model(*args, **kwargs)
        return _float32(outputs)


def accelerate(
    model: nn.Module,
    mode: str = "inference",
    speed: str = "fast",
    device: torch.device | str | None = None,
    settings: SpeedSettings | None = None,
) -> Accelerated:
    """``model`` wrapped to run as fast as this host allows at ``speed`` (see
    :func:`choose_settings`; ``settings`` forces a choice). The result's ``settings`` record
    the choice."""
    if device is None:
        device = _device_of(model)
    device = torch.device(device)
    chosen = settings or choose_settings(mode, speed, host_capabilities(device))
    return Accelerated(model, chosen, device)


def apply_inference_speed(model: nn.Module, config: Config, speed: str) -> SpeedSettings:
    """``--speed`` of ``evaluate`` and ``predict``: choose for inference on the model's device,
    write the precision into ``config.train.precision`` (which evaluation and prediction
    follow) and convert the model to channels_last when chosen (its inputs follow it)."""
    settings = choose_settings("inference", speed, host_capabilities(_device_of(model)))
    config.train.precision = settings.precision
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)
    return settings


def _float32(outputs: Any) -> Any:
    if isinstance(outputs, Tensor):
        return outputs.float() if outputs.is_floating_point() else outputs
    if isinstance(outputs, dict):
        return {key: _float32(value) for key, value in outputs.items()}
    if isinstance(outputs, tuple):
        converted = [_float32(value) for value in outputs]
        return type(outputs)(*converted) if hasattr(outputs, "_fields") else tuple(converted)
    return outputs
