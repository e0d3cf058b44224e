"""A CEN pix2pix model: the multimodal U-Net generator and the shared PatchGAN discriminator."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from cenfusion.models.translation.discriminator import PatchDiscriminator
from cenfusion.models.translation.unet import CENUNetGenerator


class CENPix2Pix(nn.Module):
    """``forward`` maps input modalities to ``{modality: image, ..., "ensemble": image}``.

    ``generator`` is all that inference needs (and all that the public code's generator
    checkpoint holds); ``discriminator`` is used by the training loss only. ``target`` names
    the output modality (informational: the networks do not depend on it).
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
    def ensemble(self) -> nn.Module:
        return self.generator.ensemble

    def forward_stacked(self, x: Tensor) -> Tensor:
        """x: stacked ``(M*B, C, H, W)`` -> stacked translations ``(M*B, out, H, W)``."""
        return self.generator.forward_stacked(x)

    def forward(
        self, inputs: Mapping[str, Tensor] | Sequence[Tensor] | Tensor
    ) -> dict[str, Tensor]:
        return self.generator(inputs)
