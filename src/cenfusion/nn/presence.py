"""Which modalities each sample has: training with a modality missing per sample.

A presence mask is a boolean ``(M, B)`` tensor, ``present[m, b]`` True when sample ``b`` has
modality ``m``; every sample has at least one. Under a mask (``StackedModel.forward(...,
present=mask)``) a network behaves, sample by sample, as the model of the present modalities
(:meth:`cenfusion.nn.StackedModel.with_modalities`) would: the private norms take their batch
statistics over the present rows only, a channel below θ takes the mean of the *present* other
modalities (its own value with none), and the ensemble's softmax runs over the present α. The
absent rows are still computed (from whatever input they hold) but reach nothing: no statistic,
no exchange, no output that a loss should count (:func:`absent_rows`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn


def check_presence(present: Tensor, num_modalities: int, batch: int) -> Tensor:
    """``present`` as a boolean ``(M, B)`` tensor, or a ValueError saying what is wrong."""
    if not isinstance(present, Tensor) or tuple(present.shape) != (num_modalities, batch):
        shape = tuple(present.shape) if isinstance(present, Tensor) else type(present).__name__
        raise ValueError(
            f"present: expected a boolean tensor of shape (M, B) = ({num_modalities}, {batch}), "
            f"got {shape}"
        )
    present = present.bool()
    empty = (~present.any(dim=0)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"present: samples {empty} have no modality; every sample needs one")
    return present


def sample_presence(
    num_modalities: int, batch: int, probability: float, generator: torch.Generator | None = None
) -> Tensor:
    """A mask where each sample, with ``probability``, loses one modality drawn uniformly (never
    all): ``(M, B)`` boolean, drawn on the CPU from ``generator`` (torch's global one by
    default, which checkpoints save, so a resumed run draws the same masks)."""
    if not 0.0 <= probability < 1.0:
        raise ValueError(f"modality dropout: expected a probability in [0, 1), got {probability}")
    if num_modalities < 2:
        raise ValueError("modality dropout needs at least two modalities")
    drop = torch.rand(batch, generator=generator) < probability
    which = torch.randint(num_modalities, (batch,), generator=generator)
    present = torch.ones(num_modalities, batch, dtype=torch.bool)
    present[which[drop], drop.nonzero().flatten()] = False
    return present


def absent_rows(present: Tensor) -> Tensor:
    """``(M*B,)`` boolean: the rows of the stacked batch whose modality the sample lacks."""
    return ~present.flatten()


@contextlib.contextmanager
def presence_context(model: nn.Module, present: Tensor | None) -> Iterator[None]:
    """Hand ``present`` to every module of ``model`` that reads it (the private norms: their
    ``presence`` attribute) for the duration; ``None`` leaves them on the ordinary path."""
    readers = [m for m in model.modules() if hasattr(m, "presence")]
    if present is not None:
        refused = [type(m).__name__ for m in readers if not getattr(m, "supports_presence", True)]
        # a norm shared by every row would take its statistics over the absent rows too
        refused += [type(m).__name__ for m in model.modules()
                    if isinstance(m, nn.modules.batchnorm._NormBase)]  # fmt: skip
        if refused:
            raise ValueError(
                f"a per-sample presence mask is not supported by {sorted(set(refused))}"
            )
    for module in readers:
        module.presence = present
    try:
        yield
    finally:
        for module in readers:
            module.presence = None
