"""The public CEN code's design, rewritten as the speed baseline: a list of tensors per layer.

One module call per modality (``Parallel``, the public code's ``ModuleParallel``), one
``nn.BatchNorm2d`` / ``nn.InstanceNorm2d`` per modality, and the boolean-index exchange (zeros,
then masked assignment from the own and the other modalities). Three twins, each built from a
cenfusion model whose weights it copies, so that the benchmark can check that both compute the
same outputs before timing them:

- :class:`ListResNet`: the CEN ResNet backbone (features per layer, a list per modality);
- :class:`ListSegmentation`: backbone + the shared decoder called once per modality + the
  alpha ensemble (a :class:`~cenfusion.models.segmentation.CENSegmentationModel`);
- :class:`ListUNet`: the CEN pix2pix U-Net generator + the alpha ensemble.

With one modality a twin is the plain unimodal network (no exchange, no ensemble, ordinary
norms, one call per layer), which is how the benchmark builds its unimodal reference.
"""

from __future__ import annotations

import copy
import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cenfusion.models.backbones.resnet import BasicBlock, CENResNet
from cenfusion.models.segmentation import CENSegmentationModel
from cenfusion.models.translation import CENUNetGenerator
from cenfusion.nn import MaxPool2d, ModalityBatchNorm2d, ModalityInstanceNorm2d


class Parallel(nn.Module):
    """The same module applied to each modality's tensor in turn."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        return [self.module(x) for x in xs]


class ParallelNorm(nn.Module):
    """One ``nn.BatchNorm2d`` (or affine ``nn.InstanceNorm2d`` with running statistics) per
    modality, holding the rows of a cenfusion private norm."""

    def __init__(self, source: ModalityBatchNorm2d | ModalityInstanceNorm2d) -> None:
        super().__init__()
        channels, num = source.num_features, source.num_modalities
        if isinstance(source, ModalityInstanceNorm2d):
            make = functools.partial(nn.InstanceNorm2d, affine=True, track_running_stats=True)
        else:
            make = nn.BatchNorm2d
        self.norms = nn.ModuleList(make(channels, source.eps, source.momentum) for _ in range(num))
        self.to(device=source.weight.device, dtype=source.weight.dtype)
        with torch.no_grad():
            for row, norm in enumerate(self.norms):
                norm.weight.copy_(source.weight[row])
                norm.bias.copy_(source.bias[row])
                norm.running_mean.copy_(source.running_mean[row])
                norm.running_var.copy_(source.running_var[row])
                norm.num_batches_tracked.copy_(source.num_batches_tracked)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        return [norm(x) for norm, x in zip(self.norms, xs, strict=True)]


ParallelBatchNorm = ParallelNorm  # the earlier name


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


def alpha_ensemble(outs: list[Tensor], alpha: Tensor) -> Tensor:
    """``sum_m softmax(alpha)_m * out_m.detach()``, as the public code's ensemble."""
    weights = torch.softmax(alpha, dim=0)
    return sum(w * o.detach() for w, o in zip(weights, outs, strict=True))


class ListBlock(nn.Module):
    def __init__(self, block: nn.Module, num_modalities: int, threshold: float | None) -> None:
        super().__init__()
        self.basic = isinstance(block, BasicBlock)
        names = ("conv1", "conv2") if self.basic else ("conv1", "conv2", "conv3")
        self.convs = nn.ModuleList(Parallel(getattr(block, n)) for n in names)
        self.norms = nn.ModuleList(
            ParallelNorm(getattr(block, f"bn{i + 1}")) for i in range(len(names))
        )
        self.exchange_at = [
            getattr(block, f"bn{i + 1}").exchange_threshold is not None for i in range(len(names))
        ]
        self.threshold = threshold
        self.downsample = None
        if block.downsample is not None:
            self.downsample = nn.Sequential(
                Parallel(block.downsample[0]), ParallelNorm(block.downsample[1])
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
    """The list-of-tensors twin of a CEN ResNet, with a copy of its weights."""

    def __init__(self, cen: CENResNet) -> None:
        super().__init__()
        cen = copy.deepcopy(cen)  # own weights: training one model must not move the other
        m = cen.num_modalities
        self.num_modalities = m
        self.conv1 = Parallel(cen.conv1)
        self.bn1 = ParallelNorm(cen.bn1)
        self.maxpool = Parallel(cen.maxpool)
        self.layers = nn.ModuleList(
            nn.Sequential(*(ListBlock(b, m, cen.bn_threshold) for b in layer))
            for layer in (cen.layer1, cen.layer2, cen.layer3, cen.layer4)
        )

    def forward(self, xs: list[Tensor]) -> list[list[Tensor]]:
        out = self.maxpool([torch.relu(o) for o in self.bn1(self.conv1(xs))])
        features = []
        for layer in self.layers:
            out = layer(out)
            features.append(out)
        return features


class ListSegmentation(nn.Module):
    """A CEN segmentation model in the list design: ``[logits_0, ..., logits_{M-1}, ensemble]``.

    The decoder (shared, norm-free) is called once per modality on that modality's features.
    """

    def __init__(self, cen: CENSegmentationModel) -> None:
        super().__init__()
        cen = copy.deepcopy(cen)
        self.num_modalities = cen.num_modalities
        self.backbone = ListResNet(cen.backbone)
        self.decoder = cen.decoder
        self.alpha = cen.ensemble.alpha

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        features = self.backbone(xs)
        outs = [self.decoder([f[m] for f in features]) for m in range(self.num_modalities)]
        if self.num_modalities == 1:  # the unimodal network: no ensemble
            return outs
        return [*outs, alpha_ensemble(outs, self.alpha)]


class ListDownBlock(nn.Module):
    """Shared conv per modality, then per-modality instance norms and the boolean exchange."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.conv = Parallel(block.conv)
        self.norm = ParallelNorm(block.norm) if block.norm is not None else None
        self.threshold = block.norm.exchange_threshold if block.norm is not None else None

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        out = self.conv(xs)
        if self.norm is None:
            return out
        out = self.norm(out)
        if self.threshold is not None and len(out) > 1:
            out = boolean_index_exchange(out, self.norm.norms, self.threshold)
        return out


class ListUpBlock(nn.Module):
    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.conv = Parallel(block.conv)
        self.norm = ParallelNorm(block.norm) if block.norm is not None else None
        self.dropout = block.dropout

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        out = self.conv([F.relu(x) for x in xs])
        if self.norm is not None:
            out = self.norm(out)
        if self.dropout is not None:
            out = [self.dropout(o) for o in out]
        return out


class ListUNet(nn.Module):
    """The CEN pix2pix U-Net generator in the list design: ``[image_0, ..., ensemble]``."""

    def __init__(self, generator: CENUNetGenerator) -> None:
        super().__init__()
        if generator.fusion_method != "cen":
            raise ValueError("ListUNet: only the CEN generator has a list twin")
        generator = copy.deepcopy(generator)
        self.num_modalities = generator.num_modalities
        self.down = nn.ModuleList(ListDownBlock(b) for b in generator.down)
        self.up = nn.ModuleList(ListUpBlock(b) for b in generator.up)
        self.alpha = generator.ensemble.alpha

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        h = self.down[0](xs)
        skips = []
        for block in self.down[1:]:
            activated = [F.leaky_relu(x, 0.2) for x in h]
            skips.append(activated)
            h = block(activated)
        for j, block in enumerate(self.up):
            h = block(h)
            if j < len(skips):
                h = [torch.cat([x, s], dim=1) for x, s in zip(h, skips[-1 - j], strict=True)]
        outs = [torch.tanh(x) for x in h]
        if self.num_modalities == 1:  # the unimodal network: no ensemble
            return outs
        return [*outs, alpha_ensemble(outs, self.alpha)]


def list_twin(model: nn.Module, stock_pooling: bool = True) -> nn.Module:
    """The list-design twin of a CEN segmentation model, pix2pix model/generator or backbone.

    ``stock_pooling``: max pooling by ``torch.nn.MaxPool2d``, as the public code has it, instead
    of cenfusion's fast CPU route (same values; the unimodal reference keeps cenfusion's).
    """
    network = getattr(model, "generator", model)
    if isinstance(network, CENSegmentationModel):
        twin: nn.Module = ListSegmentation(network)
    elif isinstance(network, CENUNetGenerator):
        twin = ListUNet(network)
    elif isinstance(network, CENResNet):
        twin = ListResNet(network)
    else:
        raise TypeError(f"no list twin for {type(model).__name__}")
    return with_stock_pooling(twin) if stock_pooling else twin


def with_stock_pooling(module: nn.Module) -> nn.Module:
    """``module`` with every :class:`cenfusion.nn.MaxPool2d` replaced by ``torch.nn.MaxPool2d``."""
    for parent in module.modules():
        for name, child in parent.named_children():
            if isinstance(child, MaxPool2d):
                stock = nn.MaxPool2d(child.kernel_size, child.stride, child.padding)
                parent.register_module(name, stock)
    return module
