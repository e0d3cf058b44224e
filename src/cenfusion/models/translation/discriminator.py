"""The conditional PatchGAN discriminator that all modalities share (docs/method.md §3).

``D(x_m, y)`` sees one input modality concatenated with a real or generated target: 4x4 convs
with strides 2, 2, 2, 1, 1 and widths ``ndf * (1, 2, 4, 8)``, then 1; LeakyReLU(0.2) before
every conv but the first; instance norm on layers 2-4. It is shared: the stacked
``(M*B, ...)`` tensor goes through it in one call, and it never sees the ensemble.

It returns *logits*: the sigmoid of the public code is folded into the loss
(``binary_cross_entropy_with_logits``), the same function without the ``log(0)`` clamp.
Its instance norms keep no running statistics: the discriminator only ever runs in training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PatchDiscriminator(nn.Module):
    """``forward(x, y)``: ``x`` ``(N, in_channels, H, W)``, ``y`` ``(N, target_channels, H, W)``
    -> patch logits ``(N, 1, H/8 - 2, W/8 - 2)``."""

    def __init__(self, in_channels: int = 3, target_channels: int = 3, ndf: int = 64) -> None:
        super().__init__()
        widths = [ndf, ndf * 2, ndf * 4, ndf * 8, 1]
        strides = [2, 2, 2, 1, 1]
        self.in_channels = in_channels
        self.target_channels = target_channels
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        previous = in_channels + target_channels
        for i, (width, stride) in enumerate(zip(widths, strides, strict=True)):
            self.convs.append(nn.Conv2d(previous, width, 4, stride=stride, padding=1))
            self.norms.append(
                nn.InstanceNorm2d(width, affine=True) if 1 <= i <= 3 else nn.Identity()
            )
            previous = width
        self.init_weights()

    def init_weights(self, std: float = 0.02) -> None:
        """Conv weights ~ N(0, std), as pix2pix and the public code."""
        for conv in self.convs:
            nn.init.normal_(conv.weight, 0.0, std)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if x.shape[0] != y.shape[0] or x.shape[-2:] != y.shape[-2:]:
            raise ValueError(
                f"discriminator: condition {tuple(x.shape)} and target {tuple(y.shape)} must "
                "share batch and spatial size"
            )
        h = torch.cat([x, y], dim=1)
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            if i > 0:
                h = F.leaky_relu(h, 0.2)
            h = norm(conv(h))
        return h
