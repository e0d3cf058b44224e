"""Fusion baselines (concat, average, alignment, self-attention) and their placement by stage.

CEN fuses by exchanging channels inside the norms; these are what the paper compares it with.
:func:`build_stage_fusion` makes the layers a trunk inserts after its chosen stages;
:func:`fusion_parameter_count` and :func:`auxiliary_loss` read them back from any model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from cenfusion.models.fusion.alignment import MMDAlignment, gaussian_mmd2
from cenfusion.models.fusion.layers import (
    AverageFusion,
    ConcatFusion,
    SelfAttentionFusion,
    StageFusion,
)
from cenfusion.models.fusion.stages import STAGE_NAMES, resolve_stages

FUSION_LAYERS: dict[str, type[StageFusion]] = {
    "concat": ConcatFusion,
    "average": AverageFusion,
    "align": MMDAlignment,
    "self_attention": SelfAttentionFusion,
}
FUSION_METHODS = ("cen", *FUSION_LAYERS)
"""``cen`` fuses by channel exchange (no layers); the others are the baselines."""


def check_fusion(fusion: str) -> None:
    if fusion not in FUSION_METHODS:
        raise ValueError(f"fusion: expected one of {FUSION_METHODS}, got {fusion!r}")


def build_stage_fusion(
    fusion: str,
    stages: str | Sequence[int],
    stage_channels: Sequence[int],
    num_modalities: int,
    prefix: str,
) -> nn.ModuleDict:
    """``{f"{prefix}{s}": layer}`` for every chosen stage ``s`` (empty for ``cen``)."""
    check_fusion(fusion)
    if fusion == "cen":
        return nn.ModuleDict()
    layer = FUSION_LAYERS[fusion]
    chosen = resolve_stages(stages, len(stage_channels))
    return nn.ModuleDict(
        {f"{prefix}{s}": layer(stage_channels[s - 1], num_modalities) for s in chosen}
    )


def fusion_parameter_count(model: nn.Module) -> int:
    """Parameters that exist only to fuse (the paper's "params used for fusion"; CEN: 0)."""
    return sum(
        p.numel()
        for module in model.modules()
        if isinstance(module, StageFusion)
        for p in module.parameters()
    )


def auxiliary_loss(model: nn.Module) -> Tensor:
    """Sum of the losses the fusion layers recorded in the last forward (alignment's MMD)."""
    losses = [
        module.last_loss
        for module in model.modules()
        if isinstance(module, StageFusion) and module.last_loss is not None
    ]
    if not losses:
        reference = next(model.parameters(), None)
        return torch.zeros((), device=None if reference is None else reference.device)
    return torch.stack(losses).sum()


__all__ = [
    "FUSION_LAYERS",
    "FUSION_METHODS",
    "STAGE_NAMES",
    "AverageFusion",
    "ConcatFusion",
    "MMDAlignment",
    "SelfAttentionFusion",
    "StageFusion",
    "auxiliary_loss",
    "build_stage_fusion",
    "check_fusion",
    "fusion_parameter_count",
    "gaussian_mmd2",
    "resolve_stages",
]
