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
