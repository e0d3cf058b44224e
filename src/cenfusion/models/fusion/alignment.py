"""Alignment-based fusion: an MMD loss between the modalities' features (the paper's Fig. 1b).

The branches stay separate; :class:`MMDAlignment` passes its stage's features through and, in
training, records the squared maximum mean discrepancy between every pair of modalities. The
samples are the feature vectors of a 4x4 average-pooled grid of every image (``16 B`` per
modality), so the loss sees where things are without costing a full pixel-pair kernel. The
kernel is a sum of Gaussians whose bandwidths are multiples of the mean pairwise squared
distance (detached), which makes the loss independent of the features' scale.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor

from cenfusion.models.fusion.layers import StageFusion

BANDWIDTH_MULTIPLIERS = (0.25, 0.5, 1.0, 2.0, 4.0)


def gaussian_mmd2(
    x: Tensor, y: Tensor, multipliers: tuple[float, ...] = BANDWIDTH_MULTIPLIERS
) -> Tensor:
    """Biased squared MMD between samples ``x: (N, D)`` and ``y: (N', D)``, multi-bandwidth.

    ``MMD^2 = mean k(x, x') + mean k(y, y') - 2 mean k(x, y)`` with
    ``k = mean_s exp(-|a - b|^2 / (s * mean_distance))``; zero iff the samples coincide.
    """
    samples = torch.cat([x, y])
    distances = torch.cdist(samples, samples).pow(2)
    scale = distances.detach().mean().clamp_min(1e-12)
    kernel = sum(torch.exp(-distances / (s * scale)) for s in multipliers) / len(multipliers)
    n = x.shape[0]
    return kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2 * kernel[:n, n:].mean()


class MMDAlignment(StageFusion):
    """Identity on the features; ``last_loss`` = mean MMD^2 over modality pairs (training only)."""

    def __init__(self, channels: int, num_modalities: int, grid: int = 4) -> None:
        super().__init__(channels, num_modalities)
        self.grid = grid

    def forward(self, x: Tensor) -> Tensor:
        per_modality = self._check(x)
        self.last_loss = None
        if self.training and self.num_modalities > 1:
            pooled = F.adaptive_avg_pool2d(x.float(), self.grid)  # (M*B, C, g, g)
            samples = pooled.unflatten(0, (self.num_modalities, -1))
            samples = samples.permute(0, 1, 3, 4, 2).flatten(1, 3)  # (M, B*g*g, C)
            pairs = list(itertools.combinations(range(self.num_modalities), 2))
            losses = [gaussian_mmd2(samples[a], samples[b]) for a, b in pairs]
            self.last_loss = torch.stack(losses).mean()
        return per_modality.flatten(0, 1)
