"""The fusion baselines the paper compares CEN with, as layers over the stacked features.

Each layer takes the stacked ``(M*B, C, H, W)`` features of one stage and returns the stacked
features every branch continues with, so a baseline is the CEN network with exchange off and
one of these after the chosen stages:

- :class:`AverageFusion` — aggregation without parameters: every branch continues with the
  mean over the modalities (the paper's Fig. 1a, "average").
- :class:`ConcatFusion` — aggregation by concatenation: ``f = W [x_1; ...; x_M]`` (a 1x1
  convolution from ``M*C`` to ``C`` channels) and every branch continues with ``f``. ``W``
  starts as the average (``I / M`` per modality), so training starts from the average fusion
  and the pretrained features pass through unchanged; it then learns any mixing.
- :class:`SelfAttentionFusion` — attention across modalities at every position: branch ``m``
  attends over the ``M`` modalities' features at its pixel (queries and keys 1x1-projected to
  ``C/8``, values to ``C``) and adds the result, gated by a scalar that starts at 0 (SAGAN).
  Attention per position keeps the cost linear in the image size.
- :class:`MMDAlignment` (in ``alignment.py``) — no mixing; an MMD loss pulls the branches'
  feature distributions together (the paper's Fig. 1b, alignment-based fusion).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cenfusion.nn.stacking import modality_view


class StageFusion(nn.Module):
    """Base class: a fusion layer after one stage; may record an auxiliary loss per forward."""

    # the baselines mix every modality: no per-sample presence (modality dropout is CEN's)
    presence = None
    supports_presence = False

    def __init__(self, channels: int, num_modalities: int) -> None:
        super().__init__()
        self.channels = channels
        self.num_modalities = num_modalities
        self.last_loss: Tensor | None = None

    def _check(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels or x.shape[0] % self.num_modalities:
            raise ValueError(
                f"{type(self).__name__}: expected stacked features (M*B, {self.channels}, H, W) "
                f"with M = {self.num_modalities}, got {tuple(x.shape)}"
            )
        return modality_view(x, self.num_modalities)

    def restrict_modalities(self, rows: list[int]) -> None:
        """A fusion baseline mixes every modality's features: it cannot run without some."""
        raise ValueError(
            f"{type(self).__name__}: a fusion baseline needs all {self.num_modalities} "
            "modalities; only channel exchanging and unimodal networks run with some missing"
        )

    def extra_repr(self) -> str:
        return f"{self.channels}, num_modalities={self.num_modalities}"


class AverageFusion(StageFusion):
    """Every branch continues with the mean of the ``M`` modalities' features."""

    def forward(self, x: Tensor) -> Tensor:
        per_modality = self._check(x)
        fused = per_modality.mean(dim=0, keepdim=True)
        return fused.expand_as(per_modality).reshape(x.shape)


class ConcatFusion(StageFusion):
    """Every branch continues with ``W [x_1; ...; x_M]`` (1x1 conv, ``M*C -> C``)."""

    def __init__(self, channels: int, num_modalities: int) -> None:
        super().__init__(channels, num_modalities)
        self.proj = nn.Conv2d(num_modalities * channels, channels, 1, bias=False)
        identity = torch.eye(channels) / num_modalities
        with torch.no_grad():
            self.proj.weight.copy_(identity.repeat(1, num_modalities)[:, :, None, None])

    def forward(self, x: Tensor) -> Tensor:
        per_modality = self._check(x)  # (M, B, C, H, W)
        concatenated = per_modality.transpose(0, 1).flatten(1, 2)  # (B, M*C, H, W)
        fused = self.proj(concatenated).unsqueeze(0)
        return fused.expand_as(per_modality).reshape(x.shape)


class SelfAttentionFusion(StageFusion):
    """``x_m + gamma * sum_n softmax_n(q_m . k_n / sqrt(d)) v_n`` at every position."""

    def __init__(self, channels: int, num_modalities: int, reduction: int = 8) -> None:
        super().__init__(channels, num_modalities)
        self.key_channels = max(1, channels // reduction)
        self.query = nn.Conv2d(channels, self.key_channels, 1)
        self.key = nn.Conv2d(channels, self.key_channels, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        m = self.num_modalities
        query = modality_view(self.query(x), m)  # (M, B, d, H, W)
        key = modality_view(self.key(x), m)
        value = modality_view(self.value(x), m)  # (M, B, C, H, W)
        scores = torch.einsum("mbdhw,nbdhw->mnbhw", query, key) / math.sqrt(self.key_channels)
        attention = F.softmax(scores, dim=1)
        attended = torch.einsum("mnbhw,nbchw->mbchw", attention, value)
        return x + self.gamma * attended.flatten(0, 1)
