"""Light-Weight RefineNet decoder (Nekrasov et al. 2018) as the CEN paper's code builds it.

Shared weights over the stacked modalities; no norms, so nothing in the decoder is private.
From the deepest feature up: a 3x3 dimension reduction (to 512 for the deepest, 256 for the
others), a residual conv unit (RCU) chain, the sum with the upsampled coarser path, a ReLU, a
chained residual pooling (CRP: 4 stages of 5x5 max-pool + 3x3 conv), three more RCUs and a 3x3
conv; bilinear upsampling with ``align_corners=True``; dropout 0.5 on layer3, layer4 and the
last feature; a 3x3 classifier. Output at 1/4 of the input resolution. ``channels`` (512, 256)
are the paper's widths; smaller ones make a light decoder for small images and CPUs.

RCU residual: the public code (and Light-Weight RefineNet's) applies an in-place ReLU to the
block input, which is also the residual, so each RCU computes ``relu(x) + f(relu(x))``.
``rcu_residual="activated"`` (the default) reproduces that, which is what every published
checkpoint was trained with; ``"input"`` gives the textbook ``x + f(relu(x))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor, nn

from cenfusion.models.backbones import create_backbone
from cenfusion.models.segmentation.model import CENSegmentationModel, check_classes_and_dropout
from cenfusion.nn import MaxPool2d

RcuResidual = Literal["activated", "input"]


def conv3x3(in_channels: int, out_channels: int, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)


class ResidualConvUnit(nn.Module):
    """``num_blocks`` residual blocks of (ReLU, 3x3 conv with bias, ReLU, 3x3 conv)."""

    def __init__(self, channels: int, num_blocks: int, residual: RcuResidual = "activated") -> None:
        super().__init__()
        if residual not in ("activated", "input"):
            raise ValueError(f"rcu_residual: expected 'activated' or 'input', got {residual!r}")
        self.residual = residual
        self.blocks = nn.ModuleList(
            nn.ModuleList([conv3x3(channels, channels, bias=True), conv3x3(channels, channels)])
            for _ in range(num_blocks)
        )

    def forward(self, x: Tensor) -> Tensor:
        for first, second in self.blocks:
            activated = F.relu(x)
            residual = activated if self.residual == "activated" else x
            x = second(F.relu(first(activated))) + residual
        return x


class ChainedResidualPooling(nn.Module):
    """``x + sum_i top_i`` with ``top_i = conv_i(maxpool5x5(top_{i-1}))``, ``top_0 = x``."""

    def __init__(self, channels: int, num_stages: int = 4) -> None:
        super().__init__()
        self.pool = MaxPool2d(5, stride=1, padding=2)
        self.convs = nn.ModuleList(conv3x3(channels, channels) for _ in range(num_stages))

    def forward(self, x: Tensor) -> Tensor:
        top = x
        for conv in self.convs:
            top = conv(self.pool(top))
            x = x + top
        return x


class RefinementStage(nn.Module):
    """One level of the decoder; ``fuse`` says whether a coarser path is added in."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        out_channels: int | None,
        fuse: bool,
        rcu_residual: RcuResidual,
    ) -> None:
        super().__init__()
        self.reduce = conv3x3(in_channels, channels)
        self.adapt = ResidualConvUnit(channels, 2, rcu_residual)
        self.adapt_out = conv3x3(channels, channels) if fuse else None
        self.pool = ChainedResidualPooling(channels, 4)
        self.refine = ResidualConvUnit(channels, 3, rcu_residual)
        self.out = conv3x3(channels, out_channels) if out_channels is not None else None

    def forward(self, feature: Tensor, coarser: Tensor | None) -> Tensor:
        x = self.adapt(self.reduce(feature))
        if self.adapt_out is not None:
            x = self.adapt_out(x)
        if coarser is not None:
            size = x.shape[-2:]
            x = x + F.interpolate(coarser, size=size, mode="bilinear", align_corners=True)
        x = self.refine(self.pool(F.relu(x)))
        return self.out(x) if self.out is not None else x


class RefineNetDecoder(nn.Module):
    """Features at strides 4..32 -> class logits at stride 4 (all on the stacked tensor)."""

    def __init__(
        self,
        feature_channels: Sequence[int],
        num_classes: int,
        dropout: float = 0.5,
        rcu_residual: RcuResidual = "activated",
        channels: tuple[int, int] = (512, 256),
    ) -> None:
        super().__init__()
        c1, c2, c3, c4 = feature_channels
        deep, width = channels
        self.dropout = nn.Dropout(dropout)
        self.stage4 = RefinementStage(c4, deep, width, False, rcu_residual)
        self.stage3 = RefinementStage(c3, width, width, True, rcu_residual)
        self.stage2 = RefinementStage(c2, width, width, True, rcu_residual)
        self.stage1 = RefinementStage(c1, width, None, True, rcu_residual)
        self.classifier = conv3x3(width, num_classes, bias=True)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        l1, l2, l3, l4 = features
        x = self.stage4(self.dropout(l4), None)
        x = self.stage3(self.dropout(l3), x)
        x = self.stage2(l2, x)
        x = self.stage1(l1, x)
        return self.classifier(self.dropout(x))


def create_refinenet(
    backbone: str = "resnet50",
    num_classes: int = 40,
    modalities: Sequence[str] | int = ("rgb", "depth"),
    decoder_channels: Sequence[int] = (512, 256),
    dropout: float = 0.5,
    rcu_residual: RcuResidual = "activated",
    output_stride: int = 32,
    **backbone_options: Any,
) -> CENSegmentationModel:
    """Light-Weight RefineNet on a CEN ResNet: the paper's main segmentation model.

    ``decoder_channels``: the (deepest, other) widths of the decoder, the paper's (512, 256);
    smaller ones make a light decoder for small images and CPUs. ``dropout``: on layer3, layer4
    and the last feature. ``rcu_residual``: see the module docstring. Logits at 1/4 of the
    input. ``backbone_options`` go to :func:`~cenfusion.models.create_backbone`
    (``bn_threshold``, ``exchange``, ``exchange_norms``, ``pretrained``, ``share_convs``,
    ``private_norms``, ``fusion``, ``fusion_stages``).
    """
    channels = tuple(decoder_channels)
    if len(channels) != 2:
        raise ValueError(
            f"decoder_channels: expected RefineNet's (deepest, other) widths, got {list(channels)}"
        )
    check_classes_and_dropout(num_classes, dropout)
    encoder = create_backbone(backbone, modalities, output_stride=output_stride, **backbone_options)
    decoder = RefineNetDecoder(
        encoder.feature_channels, num_classes, dropout, rcu_residual, channels=channels
    )
    return CENSegmentationModel(encoder, decoder, num_classes)
