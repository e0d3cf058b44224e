"""The public CEN code's design, rewritten as the speed baseline: a list of tensors per layer.

One module call per modality (``ModuleParallel``), one ``nn.BatchNorm2d`` per modality, and the
boolean-index exchange (zeros, then masked assignment from the own and the other modalities).
Weights are copied from a :class:`cenfusion.models.backbones.CENResNet`, and the benchmark checks
that both compute the same features before timing them.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from cenfusion.models.backbones.resnet import BasicBlock, CENResNet
from cenfusion.nn import ModalityBatchNorm2d


class Parallel(nn.Module):
    """The same module applied to each modality's tensor in turn."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        return [self.module(x) for x in xs]


class ParallelBatchNorm(nn.Module):
    def __init__(self, num_features: int, num_modalities: int) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.BatchNorm2d(num_features) for _ in range(num_modalities))

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        return [norm(x) for norm, x in zip(self.norms, xs, strict=True)]


def boolean_index_exchange(
    xs: list[Tensor], norms: nn.ModuleList, threshold: float
) -> list[Tensor]:
    """The public code's exchange (generalised to M by the mean of the others)."""
    num = len(xs)
    outs = []
    for m, x in enumerate(xs):
        keep = norms[m].weight.abs() >= threshold
        others = sum(xs[n] for n in range(num) if n != m)
        if num > 2:
            others = others / (num - 1)
        out = torch.zeros_like(x)
        out[:, keep] = x[:, keep]
        out[:, ~keep] = others[:, ~keep]
        outs.append(out)
    return outs


class ListBlock(nn.Module):
    def __init__(self, block: nn.Module, num_modalities: int, threshold: float | None) -> None:
        super().__init__()
        self.basic = isinstance(block, BasicBlock)
        names = ("conv1", "conv2") if self.basic else ("conv1", "conv2", "conv3")
        self.convs = nn.ModuleList(Parallel(getattr(block, n)) for n in names)
        self.norms = nn.ModuleList(
            _list_norm(getattr(block, f"bn{i + 1}"), num_modalities) for i in range(len(names))
        )
        self.exchange_at = [
            getattr(block, f"bn{i + 1}").exchange_threshold is not None for i in range(len(names))
        ]
        self.threshold = threshold
        self.downsample = None
        if block.downsample is not None:
            self.downsample = nn.Sequential(
                Parallel(block.downsample[0]), _list_norm(block.downsample[1], num_modalities)
            )

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        identity = xs if self.downsample is None else self.downsample(xs)
        out = xs
        last = len(self.convs) - 1
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            out = norm(conv(out))
            if self.exchange_at[i] and len(xs) > 1:
                out = boolean_index_exchange(out, norm.norms, self.threshold)
            if i < last:
                out = [torch.relu(o) for o in out]
        return [torch.relu(o + i) for o, i in zip(out, identity, strict=True)]


class ListResNet(nn.Module):
    """The list-of-tensors twin of a CEN ResNet, sharing its weights by copy."""

    def __init__(self, cen: CENResNet) -> None:
        super().__init__()
        cen = copy.deepcopy(cen)  # own weights: training one model must not move the other
        m = cen.num_modalities
        self.num_modalities = m
        self.conv1 = Parallel(cen.conv1)
        self.bn1 = _list_norm(cen.bn1, m)
        self.maxpool = Parallel(cen.maxpool)
        self.layers = nn.ModuleList(
            nn.Sequential(*(ListBlock(b, m, cen.bn_threshold) for b in layer))
            for layer in (cen.layer1, cen.layer2, cen.layer3, cen.layer4)
        )
        self.load_from(cen)

    def load_from(self, cen: CENResNet) -> None:
        """Copy the CEN model's (M, C) norm rows into the per-modality BatchNorms."""
        with torch.no_grad():
            pairs = zip(
                (m for m in cen.modules() if isinstance(m, ModalityBatchNorm2d)),
                (m for m in self.modules() if isinstance(m, ParallelBatchNorm)),
                strict=True,
            )
            for ours, theirs in pairs:
                for row, norm in enumerate(theirs.norms):
                    norm.weight.copy_(ours.weight[row])
                    norm.bias.copy_(ours.bias[row])
                    norm.running_mean.copy_(ours.running_mean[row])
                    norm.running_var.copy_(ours.running_var[row])

    def forward(self, xs: list[Tensor]) -> list[list[Tensor]]:
        out = self.maxpool([torch.relu(o) for o in self.bn1(self.conv1(xs))])
        features = []
        for layer in self.layers:
            out = layer(out)
            features.append(out)
        return features


def _list_norm(norm: nn.Module, num_modalities: int) -> ParallelBatchNorm:
    return ParallelBatchNorm(norm.num_features, num_modalities).to(norm.weight.dtype)
