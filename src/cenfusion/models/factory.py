"""``create_model``: the one small surface that builds every cenfusion model."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from cenfusion.models.backbones import create_backbone
from cenfusion.models.segmentation import (
    CENSegmentationModel,
    PyramidPoolingHead,
    RefineNetDecoder,
)

SEGMENTATION_ARCHS = ("refinenet", "pspnet")
TASKS = ("segmentation",)


def create_model(
    task: str = "segmentation",
    arch: str = "refinenet",
    backbone: str = "resnet50",
    num_classes: int = 40,
    modalities: Sequence[str] | int = ("rgb", "depth"),
    bn_threshold: float = 2e-2,
    exchange: bool = True,
    exchange_norms: Sequence[str] | str | None = None,
    pretrained: str | None = None,
    output_stride: int | None = None,
    rcu_residual: str = "activated",
    dropout: float | None = None,
    decoder_channels: Sequence[int] | None = None,
) -> nn.Module:
    """Build a CEN model.

    Segmentation: ``arch`` ``"refinenet"`` (Light-Weight RefineNet, logits at 1/4, the paper's
    main model) or ``"pspnet"`` (pyramid pooling on a dilated backbone, ``output_stride`` 8 by
    default); ``backbone`` ``"resnet18"`` .. ``"resnet152"``; ``pretrained`` a local
    torchvision-format ImageNet state dict for the backbone. Any number of modalities.
    ``decoder_channels``: RefineNet's (deepest, other) widths, the paper's (512, 256) by default;
    PSPNet's bottleneck width (512 by default).
    """
    if task not in TASKS:
        raise ValueError(f"task: expected one of {TASKS}, got {task!r}")
    if arch not in SEGMENTATION_ARCHS:
        raise ValueError(
            f"arch for segmentation: expected one of {SEGMENTATION_ARCHS}, got {arch!r}"
        )
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if output_stride is None:
        output_stride = 32 if arch == "refinenet" else 8
    encoder = create_backbone(
        backbone,
        modalities,
        bn_threshold=bn_threshold,
        exchange=exchange,
        exchange_norms=exchange_norms,
        pretrained=pretrained,
        output_stride=output_stride,
    )
    if arch == "refinenet":
        decoder = RefineNetDecoder(
            encoder.feature_channels,
            num_classes,
            dropout=0.5 if dropout is None else dropout,
            rcu_residual=rcu_residual,
            channels=tuple(decoder_channels) if decoder_channels else (512, 256),
        )
    else:
        decoder = PyramidPoolingHead(
            encoder.feature_channels,
            num_classes,
            encoder.num_modalities,
            dropout=0.1 if dropout is None else dropout,
            channels=decoder_channels[0] if decoder_channels else 512,
        )
    return CENSegmentationModel(encoder, decoder, num_classes)
