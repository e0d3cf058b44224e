"""The edge every cenfusion model shares: inputs in, stacked branch outputs and the ensemble out.

A :class:`StackedModel` runs one network over all modalities stacked on the batch axis
(:mod:`cenfusion.nn.stacking`). Its ``forward`` is the only place where per-modality inputs
become one ``(M*B, C, H, W)`` tensor and where the branch outputs and the ensemble are put
together; training losses, prediction, export and DDP all go through it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cenfusion.nn.ensemble import Ensemble
from cenfusion.nn.presence import check_presence, presence_context
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

    def with_modalities(self, present: Sequence[str]) -> StackedModel:
        """This model for a non-empty subset ``present`` of its modalities (a camera missing).

        The result shares every weight that all modalities share (the convolutions) and holds
        the present modalities' rows of everything per modality (private norms, unshared
        filters, α), in this model's order: the ensemble's softmax runs over the present α,
        and a channel below θ takes the mean of the *present* other modalities (with one
        present, it keeps its own value). With every modality present this is the model
        itself. Meant for inference; build it once and reuse it.
        """
        names = list(self.modalities)
        unknown = [m for m in present if m not in names]
        if unknown or not present:
            raise ValueError(
                f"modalities {list(present)}: expected a non-empty subset of {names}"
                + (f" ({unknown} unknown)" if unknown else "")
            )
        rows = [index for index, name in enumerate(names) if name in present]
        if len(rows) == len(names):
            return self
        per_modality = [m for m in self.modules() if hasattr(m, "restrict_modalities")]
        restricted = {
            id(t)
            for m in per_modality
            for t in (*m.parameters(recurse=False), *m.buffers(recurse=False))
        }
        shared = {
            id(t): t for t in (*self.parameters(), *self.buffers()) if id(t) not in restricted
        }
        model = copy.deepcopy(self, memo=shared)
        kept = tuple(names[row] for row in rows)
        for module in model.modules():
            restrict = getattr(module, "restrict_modalities", None)
            if restrict is not None:
                restrict(rows)
            elif isinstance(vars(module).get("num_modalities"), int):
                module.num_modalities = len(rows)
            if isinstance(vars(module).get("modalities"), (tuple, list)):
                module.modalities = kept
        return model

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
        present: Tensor | None = None,
    ) -> dict[str, Tensor] | StackedOutputs:
        """Per-modality outputs and the ensemble (in float32 under autocast).

        ``output_size``: the branch outputs are resized (bilinear) to this ``(H, W)`` before
        the ensemble is formed, as the segmentation loss compares them with the labels.
        ``stacked``: return :class:`StackedOutputs` instead of the
        ``{modality: (B, ...), ..., "ensemble": (B, ...)}`` dict. A dict with only some of the
        modalities runs :meth:`with_modalities` of those (outputs for the present ones).
        ``present``: an ``(M, B)`` boolean mask of the modalities each sample has (training
        with modality dropout, :mod:`cenfusion.nn.presence`): every sample is computed as the
        model of its present modalities would compute it; the branch outputs of absent rows
        are left in place and must not be counted by a loss.
        """
        if isinstance(inputs, Mapping) and inputs and set(inputs) < set(self.modalities):
            if present is not None:
                raise ValueError("present: give every modality's input with a presence mask")
            names = [m for m in self.modalities if m in inputs]
            return self.with_modalities(names).forward(inputs, output_size, stacked)
        x = self.stack(inputs)
        if present is not None:
            present = check_presence(
                present, self.num_modalities, x.shape[0] // self.num_modalities
            )
            present = None if bool(present.all()) else present.to(x.device)
        with presence_context(self, present):
            branches = self.forward_stacked(x)
        if branches.dtype in (torch.float16, torch.bfloat16):  # autocast's outputs
            branches = branches.float()
        # resizing and the ensemble stay in float32 under autocast, as the losses expect
        with torch.autocast(branches.device.type, enabled=False):
            if output_size is not None:
                size = tuple(output_size)
                branches = F.interpolate(branches, size=size, mode="bilinear", align_corners=False)
            outputs = StackedOutputs(branches, self.ensemble(branches, present))
        return outputs if stacked else outputs.named(self.modalities)


def _prefers_channels_last(model: nn.Module) -> bool:
    """Whether the model's first 4-d weight (its stem) is stored channels_last."""
    weight = next((p for p in model.parameters() if p.dim() == 4), None)
    return (
        weight is not None
        and not weight.is_contiguous()
        and weight.is_contiguous(memory_format=torch.channels_last)
    )
