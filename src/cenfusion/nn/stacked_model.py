"""The edge every cenfusion model shares: inputs in, stacked branch outputs and the ensemble out.

A :class:`StackedModel` runs one network over all modalities stacked on the batch axis
(:mod:`cenfusion.nn.stacking`). Its ``forward`` is the only place where per-modality inputs
become one ``(M*B, C, H, W)`` tensor and where the branch outputs and the ensemble are put
together; training losses, prediction, export and DDP all go through it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cenfusion.nn.ensemble import Ensemble
from cenfusion.nn.stacking import as_stacked, unstack_modalities

ModelInputs = Mapping[str, Tensor] | Sequence[Tensor] | Tensor
"""``{modality: (B, C, H, W)}``, a list in the model's modality order, or a stacked tensor."""


class StackedOutputs(NamedTuple):
    """A model's outputs in the stacked layout: ``branches (M*B, ...)``, ``ensemble (B, ...)``."""

    branches: Tensor
    ensemble: Tensor

    def named(self, modalities: Sequence[str]) -> dict[str, Tensor]:
        """``{modality: (B, ...), ..., "ensemble": (B, ...)}`` (the branches as views)."""
        named = unstack_modalities(self.branches, modalities)
        named["ensemble"] = self.ensemble
        return named


class StackedModel(nn.Module):
    """Base of the models: ``forward_stacked`` is the network, the rest is shared.

    Subclasses set ``modalities`` (names, in stacking order), ``in_channels`` (the stem's input
    width: 1-channel inputs are tiled to it) and ``ensemble`` (an :class:`~cenfusion.nn.Ensemble`),
    and implement :meth:`forward_stacked`.
    """

    modalities: tuple[str, ...]
    in_channels: int
    ensemble: Ensemble

    @property
    def num_modalities(self) -> int:
        return len(self.modalities)

    def stack(self, inputs: ModelInputs) -> Tensor:
        """Validate inputs and stack them into ``(M*B, in_channels, H, W)``, on the model's
        device, dtype and memory format (``channels_last`` when its weights are)."""
        x = as_stacked(inputs, self.modalities, self.in_channels, next(self.parameters(), None))
        if _prefers_channels_last(self):
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward_stacked(self, x: Tensor) -> Tensor:
        """x: ``(M*B, in_channels, H, W)`` -> branch outputs ``(M*B, ...)``."""
        raise NotImplementedError

    def forward(
        self,
        inputs: ModelInputs,
        output_size: Sequence[int] | None = None,
        stacked: bool = False,
    ) -> dict[str, Tensor] | StackedOutputs:
        """Per-modality outputs and the ensemble (in float32 under autocast).

        ``output_size``: the branch outputs are resized (bilinear) to this ``(H, W)`` before
        the ensemble is formed, as the segmentation loss compares them with the labels.
        ``stacked``: return :class:`StackedOutputs` instead of the
        ``{modality: (B, ...), ..., "ensemble": (B, ...)}`` dict.
        """
        branches = self.forward_stacked(self.stack(inputs))
        if branches.dtype in (torch.float16, torch.bfloat16):  # autocast's outputs
            branches = branches.float()
        # resizing and the ensemble stay in float32 under autocast, as the losses expect
        with torch.autocast(branches.device.type, enabled=False):
            if output_size is not None:
                size = tuple(output_size)
                branches = F.interpolate(branches, size=size, mode="bilinear", align_corners=False)
            outputs = StackedOutputs(branches, self.ensemble(branches))
        return outputs if stacked else outputs.named(self.modalities)


def _prefers_channels_last(model: nn.Module) -> bool:
    """Whether the model's first 4-d weight (its stem) is stored channels_last."""
    weight = next((p for p in model.parameters() if p.dim() == 4), None)
    return (
        weight is not None
        and not weight.is_contiguous()
        and weight.is_contiguous(memory_format=torch.channels_last)
    )
