"""PSPNet head (Zhao et al. 2017): pyramid pooling at 1, 2, 3 and 6 bins over the deepest feature.

Its norms are private per modality (``ModalityBatchNorm2d`` without exchange: the paper
exchanges only in the encoder); the convolutions are shared. Used on a dilated backbone
(``output_stride=8`` by default), so the logits come out at 1/8 of the input resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cenfusion.models.backbones import create_backbone
from cenfusion.models.segmentation.model import CENSegmentationModel, check_classes_and_dropout
from cenfusion.nn import ModalityBatchNorm2d


class PyramidPoolingHead(nn.Module):
    def __init__(
        self,
        feature_channels: Sequence[int],
        num_classes: int,
        num_modalities: int,
        bins: Sequence[int] = (1, 2, 3, 6),
        channels: int = 512,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        in_channels = feature_channels[-1]
        branch_channels = in_channels // len(bins)
        self.bins = tuple(bins)
        self.branches = nn.ModuleList(
            nn.ModuleDict(
                {
                    "conv": nn.Conv2d(in_channels, branch_channels, 1, bias=False),
                    "bn": ModalityBatchNorm2d(branch_channels, num_modalities),
                }
            )
            for _ in self.bins
        )
        self.bottleneck = nn.Conv2d(
            in_channels + branch_channels * len(bins), channels, 3, padding=1, bias=False
        )
        self.bn = ModalityBatchNorm2d(channels, num_modalities)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        x = features[-1]
        size = x.shape[-2:]
        pyramid = [x]
        for bins, branch in zip(self.bins, self.branches, strict=True):
            pooled = F.adaptive_avg_pool2d(x, bins)
            pooled = F.relu(branch["bn"](branch["conv"](pooled)))
            pyramid.append(F.interpolate(pooled, size=size, mode="bilinear", align_corners=True))
        x = F.relu(self.bn(self.bottleneck(torch.cat(pyramid, dim=1))))
        return self.classifier(self.dropout(x))


def create_pspnet(
    backbone: str = "resnet50",
    num_classes: int = 40,
    modalities: Sequence[str] | int = ("rgb", "depth"),
    channels: int = 512,
    dropout: float = 0.1,
    output_stride: int = 8,
    **backbone_options: Any,
) -> CENSegmentationModel:
    """PSPNet on a dilated CEN ResNet (``output_stride`` 8 by default; logits at 1/8).

    ``channels``: the width of the head after the pyramid; ``dropout``: before the classifier.
    ``backbone_options`` go to :func:`~cenfusion.models.create_backbone` (see
    :func:`~cenfusion.models.segmentation.create_refinenet`).
    """
    check_classes_and_dropout(num_classes, dropout)
    encoder = create_backbone(backbone, modalities, output_stride=output_stride, **backbone_options)
    head = PyramidPoolingHead(
        encoder.feature_channels,
        num_classes,
        encoder.num_modalities,
        channels=channels,
        dropout=dropout,
    )
    return CENSegmentationModel(encoder, head, num_classes)
