"""ResNet-18/34/50/101/152 over stacked modalities: shared convolutions, private norms.

Every convolution is shared by all modalities (one call over the ``(M*B, C, H, W)`` tensor);
every norm is a :class:`~cenfusion.nn.ModalityBatchNorm2d`. Exchange sites, as in the paper:
the norm after the 3x3 convolution of each residual branch, before its ReLU, i.e. ``bn2`` of a
bottleneck (ResNet-50/101/152) and ``bn1`` of a basic block (ResNet-18/34, which the paper does
not use; its ``bn1`` is the basic block's only norm followed by a non-linearity inside the
branch). Never in the stem nor the downsample path. ``exchange_norms`` moves the sites.

The same class with ``nn.BatchNorm2d`` as its norm is the plain unimodal ResNet
(:func:`create_plain_backbone`), so both share one definition of the architecture.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from cenfusion.models.backbones.pretrained import load_torchvision_resnet
from cenfusion.models.fusion import build_stage_fusion, check_fusion, resolve_stages
from cenfusion.nn import (
    MaxPool2d,
    ModalityBatchNorm2d,
    ModalityConv2d,
    as_stacked,
    exchange_sites,
)

NormFactory = Callable[[int, bool], nn.Module]
"""``(num_features, is_exchange_site) -> norm module``."""
ConvFactory = Callable[..., nn.Module]
"""``nn.Conv2d``'s signature (keywords): shared by default, per modality for the ablation."""


def conv3x3(
    in_planes: int,
    out_planes: int,
    stride: int = 1,
    dilation: int = 1,
    conv: ConvFactory = nn.Conv2d,
) -> nn.Module:
    return conv(
        in_planes,
        out_planes,
        kernel_size=3,
        stride=stride,
        padding=dilation,
        dilation=dilation,
        bias=False,
    )


def conv1x1(
    in_planes: int, out_planes: int, stride: int = 1, conv: ConvFactory = nn.Conv2d
) -> nn.Module:
    return conv(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1
    norm_names = ("bn1", "bn2")
    default_exchange_norms = ("bn1",)

    def __init__(
        self,
        inplanes: int,
        planes: int,
        norm: NormFactory,
        exchange_norms: Sequence[str],
        stride: int = 1,
        downsample: nn.Module | None = None,
        dilation: int = 1,
        conv: ConvFactory = nn.Conv2d,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride, dilation, conv)
        self.bn1 = norm(planes, "bn1" in exchange_norms)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes, dilation=dilation, conv=conv)
        self.bn2 = norm(planes, "bn2" in exchange_norms)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4
    norm_names = ("bn1", "bn2", "bn3")
    default_exchange_norms = ("bn2",)

    def __init__(
        self,
        inplanes: int,
        planes: int,
        norm: NormFactory,
        exchange_norms: Sequence[str],
        stride: int = 1,
        downsample: nn.Module | None = None,
        dilation: int = 1,
        conv: ConvFactory = nn.Conv2d,
    ) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes, conv=conv)
        self.bn1 = norm(planes, "bn1" in exchange_norms)
        self.conv2 = conv3x3(planes, planes, stride, dilation, conv)
        self.bn2 = norm(planes, "bn2" in exchange_norms)
        self.conv3 = conv1x1(planes, planes * self.expansion, conv=conv)
        self.bn3 = norm(planes * self.expansion, "bn3" in exchange_norms)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


@dataclass(frozen=True)
class ResNetSpec:
    block: type[BasicBlock] | type[Bottleneck]
    layers: tuple[int, int, int, int]


RESNETS: dict[str, ResNetSpec] = {
    "resnet18": ResNetSpec(BasicBlock, (2, 2, 2, 2)),
    "resnet34": ResNetSpec(BasicBlock, (3, 4, 6, 3)),
    "resnet50": ResNetSpec(Bottleneck, (3, 4, 6, 3)),
    "resnet101": ResNetSpec(Bottleneck, (3, 4, 23, 3)),
    "resnet152": ResNetSpec(Bottleneck, (3, 8, 36, 3)),
}


STAGE_CHANNELS = (64, 128, 256, 512)
"""The four stages' widths of every torchvision ResNet (a bottleneck's inner width; its output
is four times that). The stem has the first stage's width."""


def check_stage_channels(stage_channels: Sequence[int]) -> tuple[int, int, int, int]:
    """Four positive widths, or a ``ValueError`` naming ``stage_channels``."""
    widths = tuple(int(c) for c in stage_channels)
    if len(widths) != 4 or min(widths) < 1:
        raise ValueError(
            f"stage_channels: expected four positive widths (layer1..layer4, torchvision's "
            f"{list(STAGE_CHANNELS)}), got {list(stage_channels)}"
        )
    return widths  # type: ignore[return-value]


class ResNet(nn.Module):
    """A ResNet trunk returning features at strides 4, 8, 16 and 32 (timm's ``features_only``).

    Module names follow torchvision's ResNet (``conv1``, ``bn1``, ``layer1.0.conv2``,
    ``layer1.0.downsample.1``, ...) so its ImageNet state dicts map key for key.
    ``output_stride`` 16 or 8 replaces the stride of layer4 (and layer3) by dilation, as
    torchvision's ``replace_stride_with_dilation`` does (for PSPNet-style heads).
    ``stage_channels`` narrows (or widens) the four stages, e.g. ``(32, 64, 128, 256)`` for a
    ResNet-18 at a quarter of the cost; ImageNet weights need the default.
    """

    def __init__(
        self,
        spec: ResNetSpec,
        norm: NormFactory,
        exchange_norms: Sequence[str] | None = None,
        in_channels: int = 3,
        output_stride: int = 32,
        conv: ConvFactory = nn.Conv2d,
        stage_channels: Sequence[int] = STAGE_CHANNELS,
    ) -> None:
        super().__init__()
        dilate = {32: (False, False, False), 16: (False, False, True), 8: (False, True, True)}
        if output_stride not in dilate:
            raise ValueError(f"output_stride: expected 8, 16 or 32, got {output_stride}")
        widths = check_stage_channels(stage_channels)
        block = spec.block
        if exchange_norms is None:
            exchange_norms = block.default_exchange_norms
        elif exchange_norms == "all":
            exchange_norms = block.norm_names
        unknown = set(exchange_norms) - set(block.norm_names)
        if unknown:
            raise ValueError(
                f"exchange_norms: {sorted(unknown)} are not norms of {block.__name__} "
                f"(which has {list(block.norm_names)})"
            )
        self.exchange_norms = tuple(exchange_norms)
        self.in_channels = in_channels
        self.conv1 = conv(in_channels, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm(widths[0], False)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = MaxPool2d(3, stride=2, padding=1)
        inplanes, dilation, stride_so_far = widths[0], 1, 4
        strides = []
        for index, (planes, blocks) in enumerate(zip(widths, spec.layers, strict=True), start=1):
            stride, previous_dilation = (1 if index == 1 else 2), dilation
            if index > 1 and dilate[output_stride][index - 2]:
                dilation, stride = dilation * stride, 1
            stride_so_far *= stride
            strides.append(stride_so_far)
            layer, inplanes = _make_layer(
                block, inplanes, planes, blocks, stride, norm, exchange_norms,
                previous_dilation, dilation, conv,
            )  # fmt: skip
            self.add_module(f"layer{index}", layer)
        self.feature_channels = tuple(p * block.expansion for p in widths)
        self.feature_strides = tuple(strides)
        self.output_stride = output_stride
        # fusion baselines: a layer after some of layer1..4, keyed "layer{i}" (empty for CEN)
        self.fusion = nn.ModuleDict()
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's initialisation: He-normal convolutions, unit-gamma norms."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, ModalityConv2d):
                for m in range(module.num_modalities):
                    nn.init.kaiming_normal_(module.weight[m], mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """x: stacked ``(M*B, C, H, W)`` -> four stacked features at strides 4, 8, 16, 32."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features = []
        for index, layer in enumerate((self.layer1, self.layer2, self.layer3, self.layer4), 1):
            x = layer(x)
            if f"layer{index}" in self.fusion:
                x = self.fusion[f"layer{index}"](x)
            features.append(x)
        return features

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.forward_features(x)


def _make_layer(
    block: type[BasicBlock] | type[Bottleneck],
    inplanes: int,
    planes: int,
    blocks: int,
    stride: int,
    norm: NormFactory,
    exchange_norms: Sequence[str],
    first_dilation: int = 1,
    dilation: int = 1,
    conv: ConvFactory = nn.Conv2d,
) -> tuple[nn.Sequential, int]:
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            conv1x1(inplanes, planes * block.expansion, stride, conv),
            norm(planes * block.expansion, False),
        )
    layers = [
        block(inplanes, planes, norm, exchange_norms, stride, downsample, first_dilation, conv)
    ]
    inplanes = planes * block.expansion
    layers += [
        block(inplanes, planes, norm, exchange_norms, dilation=dilation, conv=conv)
        for _ in range(1, blocks)
    ]
    return nn.Sequential(*layers), inplanes


class CENResNet(ResNet):
    """A ResNet over several modalities with private norms and channel exchange.

    ``forward`` takes a ``{modality: (B, C, H, W)}`` dict, a list in ``modalities`` order, or an
    already stacked ``(M*B, in_channels, H, W)`` tensor; 1-channel inputs are tiled to the stem.

    The paper's comparisons are switches of the same trunk: ``share_convs=False`` gives every
    modality its own convolutions (:class:`~cenfusion.nn.ModalityConv2d`),
    ``private_norms=False`` one ``nn.BatchNorm2d`` for all modalities (statistics over the whole
    stacked batch), and ``fusion`` one of the baselines of :mod:`cenfusion.models.fusion` after
    the ``fusion_stages`` (layer1..4) instead of exchange (the baselines have no exchange
    sites, hence no L1 term). ``exchange_stages`` (``"early"``, ``[1, 2]``, ... as
    ``fusion_stages``) limits the exchange to those stages; the other stages' sites stay sites,
    their penalised channels under the L1 term but never replaced (as ``exchange=False``).
    ``site_stages`` (the same forms) keeps sites in those stages only: the other stages' norms
    are plain private norms, neither penalised nor exchanging, so they keep every channel (the
    L1 term otherwise empties the penalised share of every deep site, exchanged or not).
    """

    def __init__(
        self,
        spec: ResNetSpec,
        modalities: Sequence[str],
        bn_threshold: float = 2e-2,
        exchange: bool = True,
        exchange_norms: Sequence[str] | None = None,
        in_channels: int = 3,
        output_stride: int = 32,
        share_convs: bool = True,
        private_norms: bool = True,
        fusion: str = "cen",
        fusion_stages: str | Sequence[int] = "all",
        stage_channels: Sequence[int] = STAGE_CHANNELS,
        exchange_stages: str | Sequence[int] = "all",
        site_stages: str | Sequence[int] = "all",
    ) -> None:
        modalities = tuple(modalities)
        if not modalities or len(set(modalities)) != len(modalities):
            raise ValueError(f"modalities: expected distinct names, got {list(modalities)}")
        check_fusion(fusion)
        num_modalities = len(modalities)
        if fusion != "cen":
            exchange, exchange_norms = False, ()
        if not private_norms:
            if exchange:
                raise ValueError(
                    "private_norms=False: exchange needs each modality's own scaling factors; "
                    "set exchange=False for the shared-norm ablation"
                )
            exchange_norms = ()
        threshold = bn_threshold if exchange else None

        def norm(num_features: int, site: bool) -> nn.Module:
            if not private_norms:
                return nn.BatchNorm2d(num_features)
            return ModalityBatchNorm2d(
                num_features,
                num_modalities,
                exchange_threshold=threshold if site else None,
                exchange_site=site,
            )

        conv: ConvFactory = nn.Conv2d
        if not share_convs:
            conv = functools.partial(ModalityConv2d, num_modalities=num_modalities)
        super().__init__(
            spec, norm, exchange_norms, in_channels, output_stride, conv, stage_channels
        )
        self.modalities = modalities
        self.num_modalities = num_modalities
        self.bn_threshold = bn_threshold
        self.exchange = exchange
        self.exchange_stages = resolve_stages(exchange_stages, 4, "exchange_stages")
        has_sites = next(exchange_sites(self), None) is not None
        if not exchange and has_sites and len(self.exchange_stages) < 4:
            warnings.warn(
                f"exchange_stages={exchange_stages!r} has no effect with exchange=False: no "
                f"site exchanges",
                stacklevel=2,
            )
        self.site_stages = resolve_stages(site_stages, 4, "site_stages")
        for index, layer in enumerate((self.layer1, self.layer2, self.layer3, self.layer4), 1):
            for _, site in exchange_sites(layer):
                if index not in self.exchange_stages or index not in self.site_stages:
                    site.exchange_threshold = None
                if index not in self.site_stages:
                    site.exchange_site = False
        self.share_convs = share_convs
        self.private_norms = private_norms
        self.fusion_method = fusion
        self.fusion = build_stage_fusion(
            fusion, fusion_stages, self.feature_channels, num_modalities, prefix="layer"
        )

    def stack(self, inputs: Mapping[str, Tensor] | Sequence[Tensor] | Tensor) -> Tensor:
        """Validate and stack inputs into ``(M*B, in_channels, H, W)``."""
        return as_stacked(inputs, self.modalities, self.in_channels, next(self.parameters(), None))

    def forward(self, inputs: Mapping[str, Tensor] | Sequence[Tensor] | Tensor) -> list[Tensor]:
        return self.forward_features(self.stack(inputs))


def _spec(name: str) -> ResNetSpec:
    if name not in RESNETS:
        raise ValueError(f"backbone: expected one of {sorted(RESNETS)}, got {name!r}")
    return RESNETS[name]


def create_backbone(
    name: str,
    modalities: Sequence[str] | int = ("rgb", "depth"),
    bn_threshold: float = 2e-2,
    exchange: bool = True,
    exchange_norms: Sequence[str] | str | None = None,
    pretrained: str | None = None,
    in_channels: int = 3,
    output_stride: int = 32,
    share_convs: bool = True,
    private_norms: bool = True,
    fusion: str = "cen",
    fusion_stages: str | Sequence[int] = "all",
    stage_channels: Sequence[int] = STAGE_CHANNELS,
    exchange_stages: str | Sequence[int] = "all",
    site_stages: str | Sequence[int] = "all",
) -> CENResNet:
    """Build a CEN ResNet (``resnet18`` .. ``resnet152``) over ``modalities``.

    ``modalities`` is a sequence of names, or a count ``M`` (names ``m0 .. m{M-1}``).
    ``pretrained`` is the path of a torchvision-format ImageNet state dict (``.pth``); every
    BatchNorm (and, with ``share_convs=False``, every convolution) is copied into each
    modality's copy. Nothing is ever downloaded. ``share_convs``, ``private_norms``, ``fusion``
    and ``fusion_stages``: the paper's ablations and baselines; ``exchange_stages``: where the
    exchange happens and ``site_stages`` where the norms are sites at all (see
    :class:`CENResNet`). ``stage_channels``: the four stages' widths (see :class:`ResNet`).
    """
    if isinstance(modalities, int):
        modalities = tuple(f"m{i}" for i in range(modalities))
    model = CENResNet(
        _spec(name), modalities, bn_threshold, exchange, exchange_norms, in_channels,
        output_stride, share_convs, private_norms, fusion, fusion_stages, stage_channels,
        exchange_stages, site_stages,
    )  # fmt: skip
    if pretrained is not None:
        load_torchvision_resnet(model, pretrained)
    return model


def create_plain_backbone(
    name: str,
    pretrained: str | None = None,
    in_channels: int = 3,
    output_stride: int = 32,
    stage_channels: Sequence[int] = STAGE_CHANNELS,
) -> ResNet:
    """The same ResNet trunk with ``nn.BatchNorm2d``: the unimodal network, for comparison."""
    plain_norm = lambda channels, site: nn.BatchNorm2d(channels)  # noqa: E731
    model = ResNet(
        _spec(name), plain_norm, (), in_channels, output_stride, stage_channels=stage_channels
    )
    if pretrained is not None:
        load_torchvision_resnet(model, pretrained)
    return model


__all__ = [
    "RESNETS",
    "STAGE_CHANNELS",
    "BasicBlock",
    "Bottleneck",
    "CENResNet",
    "ResNet",
    "create_backbone",
    "create_plain_backbone",
]
