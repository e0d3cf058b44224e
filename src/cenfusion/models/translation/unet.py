"""The CEN pix2pix U-Net generator: shared convolutions, private instance norms, exchange.

Every modality runs through the *same* convolutions (one call over the stacked
``(M*B, C, H, W)`` tensor); each norm is a :class:`~cenfusion.nn.ModalityInstanceNorm2d` with
one affine InstanceNorm (and running statistics) per modality. Encoder blocks are
``LeakyReLU(0.2) -> 4x4 stride-2 conv -> norm``, widths ``ngf * (1, 2, 4, 8, 8, 8, 8, 8)``;
blocks 1 and 8 have no norm (block 1 not even the activation), and the norms of blocks 2..7 are
the exchange sites (docs/method.md §2-3); ``first_block_norm`` (not the paper's) gives block 1 a
norm too, and so an exchange site, where the full-resolution skip starts. Decoder blocks are
``ReLU -> 4x4 stride-2 transposed conv -> norm (not on the last) -> dropout 0.5 (first
three)``, each output concatenated with the mirrored encoder feature; ``tanh`` at the end,
then the alpha ensemble. ``fusion`` (not ``"cen"``) puts one of the baselines of
:mod:`cenfusion.models.fusion` after the chosen encoder blocks instead (stages 1..num_downs),
with no exchange and no L1 sites.

The skip connections carry the encoder feature *after* the next block's LeakyReLU, as the
public code does (its in-place LeakyReLU overwrites the feature it later concatenates). This is
no switch, because it cannot change anything: every skip enters the next decoder block through
that block's ReLU, and ``relu(leaky_relu(s)) == relu(s)`` for every ``s``, values and gradients
alike (``tests/models/test_pix2pix.py`` checks it against a reference with pre-activation skips).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cenfusion.models.fusion import build_stage_fusion, check_fusion, resolve_stages
from cenfusion.nn import Ensemble, ModalityInstanceNorm2d, StackedModel


def encoder_widths(ngf: int, num_downs: int) -> list[int]:
    """Output channels of the encoder blocks: ``ngf * (1, 2, 4, 8, 8, ...)``."""
    return [ngf * min(2**i, 8) for i in range(num_downs)]


class DownBlock(nn.Module):
    """Shared 4x4 stride-2 conv, then (optionally) a private norm that may exchange.

    The LeakyReLU before the conv is applied by the generator, which also needs the activated
    feature for the skip connection.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_modalities: int,
        norm: bool,
        exchange_threshold: float | None = None,
        exchange_site: bool = False,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1)
        self.norm = (
            ModalityInstanceNorm2d(
                out_channels,
                num_modalities,
                exchange_threshold=exchange_threshold,
                exchange_site=exchange_site,
            )
            if norm
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        """x: ``(M*B, C_in, H, W)`` -> ``(M*B, C_out, H/2, W/2)``."""
        y = self.conv(x)
        return self.norm(y) if self.norm is not None else y


class UpBlock(nn.Module):
    """ReLU, shared 4x4 stride-2 transposed conv, private norm (no exchange), dropout."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_modalities: int,
        norm: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1)
        self.norm = ModalityInstanceNorm2d(out_channels, num_modalities) if norm else None
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def forward(self, x: Tensor) -> Tensor:
        """x: ``(M*B, C_in, H, W)`` -> ``(M*B, C_out, 2H, 2W)``."""
        y = self.conv(F.relu(x))
        if self.norm is not None:
            y = self.norm(y)
        return self.dropout(y) if self.dropout is not None else y


class CENUNetGenerator(StackedModel):
    """The pix2pix U-Net over ``M`` stacked modalities, one translation per modality + ensemble.

    ``forward`` maps ``{modality: (B, C, H, W)}`` (or a list, or an already stacked tensor) to
    ``{modality: (B, out_channels, H, W), ..., "ensemble": (B, out_channels, H, W)}`` in
    ``[-1, 1]``. ``H`` and ``W`` must be multiples of ``2**num_downs`` (256 for the paper's 8).
    ``exchange_stages`` (``"all"``, or encoder block numbers ``1..num_downs`` as
    ``fusion_stages``) limits the exchange to those blocks' norms (sites: blocks
    ``2..num_downs-1``); the other sites keep the L1 term but never exchange.
    ``first_block_norm``: block 1 gets a norm as well (pix2pix has none there), so the sites
    are blocks ``1..num_downs-1`` and the skip to the last decoder block can carry exchanged
    channels; with ``first_block_site=False`` that norm is no site (it never exchanges and the
    L1 term leaves it alone), which measures what the norm does without its exchange.
    """

    def __init__(
        self,
        modalities: Sequence[str],
        in_channels: int = 3,
        out_channels: int = 3,
        ngf: int = 64,
        num_downs: int = 8,
        insnorm_threshold: float = 1e-2,
        exchange: bool = True,
        dropout: float = 0.5,
        dropout_blocks: int = 3,
        fusion: str = "cen",
        fusion_stages: str | Sequence[int] = "all",
        exchange_stages: str | Sequence[int] = "all",
        first_block_norm: bool = False,
        first_block_site: bool = True,
    ) -> None:
        super().__init__()
        check_fusion(fusion)
        baseline = fusion != "cen"  # a baseline fuses with layers instead; no exchange, no L1
        modalities = tuple(modalities)
        if not modalities or len(set(modalities)) != len(modalities):
            raise ValueError(f"modalities: expected distinct names, got {list(modalities)}")
        if num_downs < 2:
            raise ValueError(f"num_downs: expected >= 2, got {num_downs}")
        if ngf < 1:
            raise ValueError(f"ngf: expected >= 1, got {ngf}")
        self.modalities = modalities
        num_modalities = len(modalities)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.ngf = ngf
        self.num_downs = num_downs
        self.insnorm_threshold = insnorm_threshold
        self.exchange = exchange = exchange and not baseline
        self.fusion_method = fusion
        if not first_block_site and not first_block_norm:
            raise ValueError(
                "first_block_site=False: expected first_block_norm=True (without a norm in "
                "block 1 there is no site to leave out)"
            )
        first_site = 1 if first_block_norm and first_block_site else 2
        widths = encoder_widths(ngf, num_downs)
        self.exchange_stages = resolve_stages(exchange_stages, num_downs, "exchange_stages")
        if exchange and not any(first_site <= s < num_downs for s in self.exchange_stages):
            raise ValueError(
                f"exchange_stages: the U-Net's exchange sites are the norms of blocks "
                f"{first_site}..{num_downs - 1}, got {exchange_stages!r}, which has none of them"
            )
        if (
            not baseline
            and not exchange
            and not set(range(first_site, num_downs)) <= set(self.exchange_stages)
        ):
            warnings.warn(
                f"exchange_stages={exchange_stages!r} has no effect with exchange=False: no "
                f"site exchanges",
                stacklevel=2,
            )
        threshold = insnorm_threshold if exchange else None
        self.down = nn.ModuleList(
            DownBlock(
                in_channels if i == 0 else widths[i - 1],
                widths[i],
                num_modalities,
                norm=(i > 0 or first_block_norm) and i < num_downs - 1,
                exchange_threshold=(
                    threshold if i + 1 in self.exchange_stages and i + 1 >= first_site else None
                ),
                exchange_site=not baseline and i + 1 >= first_site,
            )
            for i in range(num_downs)
        )
        # fusion baselines: a layer after some encoder blocks, keyed "down{i}" (empty for CEN)
        self.fusion = build_stage_fusion(fusion, fusion_stages, widths, num_modalities, "down")
        # up block j mirrors encoder block num_downs - 1 - j; all but the first take a skip too
        ups = []
        for j in range(num_downs):
            source = num_downs - 1 - j
            in_width = widths[source] * (1 if j == 0 else 2)
            last = j == num_downs - 1
            out_width = out_channels if last else widths[source - 1]
            ups.append(
                UpBlock(
                    in_width,
                    out_width,
                    num_modalities,
                    norm=not last,
                    dropout=dropout if j < dropout_blocks and not last else 0.0,
                )
            )
        self.up = nn.ModuleList(ups)
        self.ensemble = Ensemble(num_modalities)
        self.init_weights()

    def init_weights(self, std: float = 0.02) -> None:
        """Conv weights ~ N(0, std) as pix2pix and the public code; biases keep torch's init."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.normal_(module.weight, 0.0, std)

    @property
    def size_multiple(self) -> int:
        return 2**self.num_downs

    def _check_size(self, x: Tensor) -> None:
        height, width = x.shape[-2:]
        multiple = self.size_multiple
        if height % multiple or width % multiple:
            raise ValueError(
                f"input of size {height}x{width} (HxW): the U-Net with {self.num_downs} "
                f"down blocks needs sizes that are multiples of {multiple}"
            )

    def forward_stacked(self, x: Tensor) -> Tensor:
        """x: ``(M*B, in_channels, H, W)`` -> per-modality translations ``(M*B, out, H, W)``."""
        self._check_size(x)
        h = self._fuse(self.down[0](x), 1)
        skips = []
        for index, block in enumerate(self.down[1:], start=2):
            activated = F.leaky_relu(h, 0.2)
            skips.append(activated)
            h = self._fuse(block(activated), index)
        for j, block in enumerate(self.up):
            h = block(h)
            if j < len(skips):
                h = torch.cat([h, skips[-1 - j]], dim=1)
        return torch.tanh(h)

    def _fuse(self, h: Tensor, stage: int) -> Tensor:
        key = f"down{stage}"
        return self.fusion[key](h) if key in self.fusion else h
