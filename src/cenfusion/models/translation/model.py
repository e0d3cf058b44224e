"""A CEN pix2pix model: the multimodal U-Net generator and the shared PatchGAN discriminator."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from cenfusion.models.translation.discriminator import PatchDiscriminator
from cenfusion.models.translation.unet import CENUNetGenerator
from cenfusion.nn import Ensemble, ModelInputs, StackedOutputs


class CENPix2Pix(nn.Module):
    """``forward`` maps input modalities to ``{modality: image, ..., "ensemble": image}``.

    ``generator`` is all that inference needs (and all that the public code's generator
    checkpoint holds); ``discriminator`` is used by the training loss only. ``target`` names
    the output modality (informational: the networks do not depend on it). Calls go to the
    generator's :meth:`~cenfusion.nn.StackedModel.forward`.
    """

    def __init__(
        self,
        generator: CENUNetGenerator,
        discriminator: PatchDiscriminator,
        target: str | None = None,
    ) -> None:
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator
        self.target = target

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.generator.modalities

    @property
    def num_modalities(self) -> int:
        return self.generator.num_modalities

    @property
    def ensemble(self) -> Ensemble:
        return self.generator.ensemble

    def with_modalities(self, present: Sequence[str]) -> CENPix2Pix:
        """This model with the generator for a subset of its input modalities (see
        :meth:`~cenfusion.nn.StackedModel.with_modalities`); the discriminator is shared."""
        generator = self.generator.with_modalities(present)
        if generator is self.generator:
            return self
        return CENPix2Pix(generator, self.discriminator, self.target).train(self.training)

    def stack(self, inputs: ModelInputs) -> Tensor:
        """The generator's input edge (see :meth:`~cenfusion.nn.StackedModel.stack`)."""
        return self.generator.stack(inputs)

    def forward_stacked(self, x: Tensor) -> Tensor:
        """x: stacked ``(M*B, C, H, W)`` -> stacked translations ``(M*B, out, H, W)``."""
        return self.generator.forward_stacked(x)

    def forward(
        self,
        inputs: ModelInputs,
        output_size: Sequence[int] | None = None,
        stacked: bool = False,
    ) -> dict[str, Tensor] | StackedOutputs:
        return self.generator(inputs, output_size, stacked)


def create_pix2pix(
    modalities: Sequence[str] | int = ("texture", "reshading"),
    target: str | None = None,
    ngf: int = 64,
    ndf: int = 64,
    num_downs: int = 8,
    insnorm_threshold: float = 1e-2,
    exchange: bool = True,
    in_channels: int = 3,
    out_channels: int = 3,
    dropout: float = 0.5,
    fusion: str = "cen",
    fusion_stages: str | Sequence[int] = "all",
    exchange_stages: str | Sequence[int] = "all",
    first_block_norm: bool = False,
    first_block_site: bool = True,
) -> CENPix2Pix:
    """The paper's translation model: the CEN U-Net generator and the shared PatchGAN.

    ``modalities``: the input domains (names, or a count ``M`` for ``m0 .. m{M-1}``);
    ``target``: the output domain (a name only; it may not be an input). ``ngf``/``ndf``: the
    generator's and discriminator's widths; ``num_downs`` down blocks (image sides must be
    multiples of ``2**num_downs``); exchange after the norms of blocks 2..num_downs-1 at
    ``insnorm_threshold``; ``exchange=False`` keeps those norms as L1 sites (ablation),
    ``exchange_stages`` exchanges at some blocks only and ``first_block_norm`` adds a norm,
    and so a site (unless ``first_block_site=False``), to block 1 (see
    :class:`~cenfusion.models.translation.unet.CENUNetGenerator`);
    ``dropout`` on the first three up blocks; ``fusion``/``fusion_stages``: a baseline of
    :mod:`cenfusion.models.fusion` after those encoder blocks instead of exchange.
    """
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
        dropout=dropout,
        fusion=fusion,
        fusion_stages=fusion_stages,
        exchange_stages=exchange_stages,
        first_block_norm=first_block_norm,
        first_block_site=first_block_site,
    )
    return CENPix2Pix(generator, PatchDiscriminator(in_channels, out_channels, ndf), target)
