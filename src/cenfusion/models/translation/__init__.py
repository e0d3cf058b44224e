"""Translation models: the CEN pix2pix U-Net generator and the shared PatchGAN discriminator."""

from cenfusion.models.translation.discriminator import PatchDiscriminator
from cenfusion.models.translation.model import CENPix2Pix, create_pix2pix
from cenfusion.models.translation.unet import (
    CENUNetGenerator,
    DownBlock,
    UpBlock,
    encoder_widths,
)

__all__ = [
    "CENPix2Pix",
    "CENUNetGenerator",
    "DownBlock",
    "PatchDiscriminator",
    "UpBlock",
    "create_pix2pix",
    "encoder_widths",
]
