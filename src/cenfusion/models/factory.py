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
TRANSLATION_ARCHS = ("pix2pix",)
TASKS = ("segmentation", "translation")


def create_model(
    task: str = "segmentation",
    arch: str | None = None,
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
    target: str | None = None,
    ngf: int = 64,
    ndf: int = 64,
    num_downs: int = 8,
    insnorm_threshold: float = 1e-2,
    in_channels: int = 3,
    out_channels: int = 3,
    fusion: str = "cen",
    fusion_stages: str | Sequence[int] = "all",
    share_convs: bool = True,
    private_norms: bool = True,
) -> nn.Module:
    """Build a CEN model, or one of the paper's baselines and ablations of it.

    Segmentation: ``arch`` ``"refinenet"`` (Light-Weight RefineNet, logits at 1/4, the paper's
    main model) or ``"pspnet"`` (pyramid pooling on a dilated backbone, ``output_stride`` 8 by
    default); ``backbone`` ``"resnet18"`` .. ``"resnet152"``; ``pretrained`` a local
    torchvision-format ImageNet state dict for the backbone. Any number of modalities.
    ``decoder_channels``: RefineNet's (deepest, other) widths, the paper's (512, 256) by default;
    PSPNet's bottleneck width (512 by default).

    Translation: ``arch`` ``"pix2pix"``, the CEN U-Net generator (``ngf``, ``num_downs`` down
    blocks, exchange after the norms of blocks 2..num_downs-1 at ``insnorm_threshold``) with
    the alpha ensemble, plus the shared conditional PatchGAN discriminator (``ndf``);
    ``modalities`` are the input domains, ``target`` the output domain (a name only). Any
    number of input modalities; ``exchange=False`` keeps the norms as L1 sites (ablation);
    ``dropout`` of the first three up blocks, 0.5 by default as in pix2pix.

    Baselines and ablations (same backbone and decoder): ``fusion`` ``"cen"`` (channel
    exchange) or ``"concat" | "average" | "align" | "self_attention"`` after ``fusion_stages``
    (``"early" | "middle" | "late" | "all"`` or stage numbers; see
    :mod:`cenfusion.models.fusion`); ``share_convs=False`` gives each modality its own
    convolutions and ``private_norms=False`` one shared BatchNorm (segmentation only).
    """
    if task not in TASKS:
        raise ValueError(f"task: expected one of {TASKS}, got {task!r}")
    if task == "translation":
        if not (share_convs and private_norms):
            raise ValueError(
                "share_convs=False / private_norms=False: the sharing ablations are built for "
                "segmentation backbones only"
            )
        return _create_translation_model(
            arch or "pix2pix", modalities, target, ngf, ndf, num_downs, insnorm_threshold,
            exchange, in_channels, out_channels, fusion, fusion_stages,
            0.5 if dropout is None else dropout,
        )  # fmt: skip
    arch = arch or "refinenet"
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
        share_convs=share_convs,
        private_norms=private_norms,
        fusion=fusion,
        fusion_stages=fusion_stages,
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


def _create_translation_model(
    arch: str,
    modalities: Sequence[str] | int,
    target: str | None,
    ngf: int,
    ndf: int,
    num_downs: int,
    insnorm_threshold: float,
    exchange: bool,
    in_channels: int,
    out_channels: int,
    fusion: str = "cen",
    fusion_stages: str | Sequence[int] = "all",
    dropout: float = 0.5,
) -> nn.Module:
    from cenfusion.models.translation import CENPix2Pix, CENUNetGenerator, PatchDiscriminator

    if arch not in TRANSLATION_ARCHS:
        raise ValueError(f"arch for translation: expected one of {TRANSLATION_ARCHS}, got {arch!r}")
    if isinstance(modalities, int):
        modalities = tuple(f"m{i}" for i in range(modalities))
    modalities = tuple(modalities)
    if target is not None and target in modalities:
        raise ValueError(
            f"target {target!r} is also an input modality {list(modalities)}: expected a target "
            "that is not among the inputs"
        )
    generator = CENUNetGenerator(
        modalities,
        in_channels=in_channels,
        out_channels=out_channels,
        ngf=ngf,
        num_downs=num_downs,
        insnorm_threshold=insnorm_threshold,
        exchange=exchange,
        fusion=fusion,
        fusion_stages=fusion_stages,
        dropout=dropout,
    )
    discriminator = PatchDiscriminator(in_channels, out_channels, ndf)
    return CENPix2Pix(generator, discriminator, target)
