"""When a hand-written autograd function may run, and when the stock composite ops must."""

from __future__ import annotations

import torch


def composite_path_needed() -> bool:
    """True where a custom ``torch.autograd.Function`` cannot run or be recorded: tracing,
    scripting, ``torch.compile`` and ONNX export see the stock ops instead."""
    return (
        torch.jit.is_scripting()
        or torch.jit.is_tracing()
        or torch.compiler.is_compiling()
        or torch.onnx.is_in_onnx_export()
    )
