"""Small networks of the kinds users bring: residual, depthwise (MobileNet), U-Net, functional."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MixedResidualNet(nn.Module):
    """One residual branch through every convertible norm kind, and a depthwise convolution.

    Default exchange sites: ``gn`` and ``inorm`` (after a 3x3 convolution, before a ReLU,
    inside the branch); not ``bn`` (the stem feeds both sides of the addition) nor
    ``inorm_stats`` (after a 1x1 convolution, into the addition).
    """

    def __init__(self, in_channels: int = 3, width: int = 8, classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.depthwise = nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False)
        self.gn = nn.GroupNorm(2, width)
        self.conv = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.inorm = nn.InstanceNorm2d(width, affine=True)
        self.pointwise = nn.Conv2d(width, width, 1, bias=False)
        self.inorm_stats = nn.InstanceNorm2d(width, affine=True, track_running_stats=True)
        self.head = nn.Conv2d(width, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.stem(x)))
        y = F.relu(self.gn(self.depthwise(x)))
        y = torch.relu(self.inorm(self.conv(y)))
        y = self.inorm_stats(self.pointwise(y))
        return self.head(F.relu(x + y))


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expand, 3x3 depthwise, 1x1 linear projection, skip if it fits."""

    def __init__(self, cin: int, cout: int, stride: int = 1, expand: int = 2) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        self.expand = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)
        )
        self.depthwise = nn.Sequential(
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
        )
        self.project = nn.Sequential(nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.use_residual else out


class TinyMobileNet(nn.Module):
    """A MobileNetV2-style segmenter: logits at the input's resolution."""

    def __init__(self, classes: int, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU6(inplace=True)
        )
        self.blocks = nn.Sequential(
            InvertedResidual(width, width),
            InvertedResidual(width, 2 * width, stride=2),
            InvertedResidual(2 * width, 2 * width),
        )
        self.head = nn.Conv2d(2 * width, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.blocks(self.stem(x)))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def conv_norm_relu(cin: int, cout: int, norm: nn.Module) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), norm, nn.ReLU())


class TinyUNet(nn.Module):
    """A two-level U-Net with skip concatenations (GroupNorm, BatchNorm, InstanceNorm)."""

    def __init__(self, classes: int, width: int = 8) -> None:
        super().__init__()
        w = width
        self.enc1 = conv_norm_relu(3, w, nn.GroupNorm(2, w))
        self.enc2 = conv_norm_relu(w, 2 * w, nn.BatchNorm2d(2 * w))
        self.bottom = conv_norm_relu(2 * w, 2 * w, nn.BatchNorm2d(2 * w))
        self.up2 = nn.ConvTranspose2d(2 * w, 2 * w, 2, stride=2)
        self.dec2 = conv_norm_relu(4 * w, 2 * w, nn.InstanceNorm2d(2 * w, affine=True))
        self.up1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2)
        self.dec1 = conv_norm_relu(2 * w, w, nn.BatchNorm2d(w))
        self.head = nn.Conv2d(w, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        b = self.bottom(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(b), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
        return self.head(d1)


class GroupNormBlock(nn.Module):
    """A residual block whose GroupNorm is a function call on its own parameters."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.gn_weight = nn.Parameter(torch.ones(width))
        self.gn_bias = nn.Parameter(torch.zeros(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.relu(F.group_norm(self.conv(x), 2, self.gn_weight, self.gn_bias, 1e-5))


class FunctionalNormNet(nn.Module):
    """Norms as ``F.batch_norm`` / ``F.group_norm`` calls: only torch.fx can see them."""

    def __init__(self, width: int = 8, classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn_weight = nn.Parameter(torch.ones(width))
        self.bn_bias = nn.Parameter(torch.zeros(width))
        self.register_buffer("bn_mean", torch.zeros(width))
        self.register_buffer("bn_var", torch.ones(width))
        self.block = GroupNormBlock(width)
        self.head = nn.Conv2d(width, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.batch_norm(
            self.stem(x), self.bn_mean, self.bn_var, self.bn_weight, self.bn_bias,
            self.training, 0.1, 1e-5,
        )  # fmt: skip
        return self.head(self.block(F.relu(x)))


class ModuleNormNet(nn.Module):
    """:class:`FunctionalNormNet` with norm modules: what the fx path must reproduce."""

    def __init__(self, width: int = 8, classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.conv = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.gn = nn.GroupNorm(2, width)
        self.head = nn.Conv2d(width, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.stem(x)))
        return self.head(x + F.relu(self.gn(self.conv(x))))


def randomise_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Scaling factors ~30 % below 2e-2 (so some channels exchange), random shifts and stats."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            leaf = name.rpartition(".")[2]
            shape, dtype = tensor.shape, tensor.dtype
            if leaf in ("weight", "gn_weight", "bn_weight") and _is_norm_tensor(model, name):
                u = torch.rand(shape, generator=g, dtype=dtype)
                tensor.copy_(torch.where(u < 0.3, u / 30, 0.5 + u))
            elif leaf in ("running_mean", "bn_mean") or (
                leaf in ("bias", "gn_bias", "bn_bias") and _is_norm_tensor(model, name)
            ):
                tensor.copy_(torch.randn(shape, generator=g, dtype=dtype) * 0.1)
            elif leaf in ("running_var", "bn_var"):
                tensor.copy_(torch.rand(shape, generator=g, dtype=dtype) + 0.5)
    return model


def _is_norm_tensor(model: nn.Module, name: str) -> bool:
    owner_name, _, leaf = name.rpartition(".")
    owner = model.get_submodule(owner_name)
    if leaf.startswith(("gn_", "bn_")):
        return True
    return not isinstance(owner, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))
