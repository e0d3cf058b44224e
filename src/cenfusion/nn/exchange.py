"""Channel exchange (paper Eq. 6): a channel whose scaling factor is near zero takes the others'.

After a private norm, channel ``c`` of modality ``m`` is replaced by the mean over the other
modalities of their channel ``c`` wherever ``|gamma[m, c]| < threshold``. The mask is hard (no
gradient reaches ``gamma`` through it); gradient flows through the copied values into the other
branches. One ``torch.where`` over the stacked tensor: no boolean-index scatter, no loop over
channels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cenfusion.nn.stacking import modality_view


def exchange_mask(gamma: Tensor, threshold: float) -> Tensor:
    """``(M, C)`` boolean mask of the channels that take the other modalities' values."""
    return gamma.detach().abs() < threshold


def channel_exchange(
    y: Tensor,
    gamma: Tensor,
    threshold: float,
    num_modalities: int,
    present: Tensor | None = None,
) -> Tensor:
    """Exchange the channels of ``y`` whose ``|gamma|`` is below ``threshold``.

    y: ``(M*B, C, H, W)`` post-norm, modality-major; gamma: ``(M, C)`` scaling factors of the
    norm that produced ``y``. Returns a tensor of ``y``'s shape; ``y`` itself for ``M = 1``.
    ``present``: an ``(M, B)`` boolean presence mask (:mod:`cenfusion.nn.presence`): a channel
    then takes the mean of the other modalities *present in its sample*, and keeps its own
    value where none is.
    """
    if num_modalities == 1:
        return y
    if gamma.shape != (num_modalities, y.shape[1]):
        raise ValueError(
            f"gamma: expected shape ({num_modalities}, {y.shape[1]}) for y of shape "
            f"{tuple(y.shape)}, got {tuple(gamma.shape)}"
        )
    per_modality = modality_view(y, num_modalities)
    exchanged = exchange_mask(gamma, threshold).view(
        num_modalities, 1, y.shape[1], *([1] * (y.dim() - 2))
    )
    if present is not None and not bool(present.all()):
        return _exchange_present(per_modality, exchanged, present).flatten(0, 1)
    # Rolling the modality axis by k puts modality m-k beside modality m; summing the rolls
    # k = 1..M-1 gives each modality the exact sum of the others (no total-minus-self rounding).
    others = per_modality.roll(1, dims=0)
    for shift in range(2, num_modalities):
        others = others + per_modality.roll(shift, dims=0)
    if num_modalities > 2:
        others = others / (num_modalities - 1)
    return torch.where(exchanged, others, per_modality).flatten(0, 1)


def _exchange_present(per_modality: Tensor, exchanged: Tensor, present: Tensor) -> Tensor:
    """:func:`channel_exchange` over ``(M, B, C, H, W)`` with the sources limited to the
    modalities present in each sample."""
    num_modalities = per_modality.shape[0]
    mask = present.to(per_modality.device).view(*present.shape, *([1] * (per_modality.dim() - 2)))
    # absent rows contribute zero (where, not a product: their values are never read)
    sources = torch.where(mask, per_modality, torch.zeros((), dtype=per_modality.dtype))
    weights = mask.to(per_modality.dtype)
    others, count = sources.roll(1, dims=0), weights.roll(1, dims=0)
    for shift in range(2, num_modalities):
        others = others + sources.roll(shift, dims=0)
        count = count + weights.roll(shift, dims=0)
    mean = others / count.clamp(min=1)
    return torch.where(exchanged & (count > 0), mean, per_modality)
