"""What is built from the CEN blocks: backbones, one builder per architecture, one factory."""

from cenfusion.models.backbones import create_backbone, create_plain_backbone
from cenfusion.models.factory import ARCHITECTURES, create_model
from cenfusion.models.segmentation import create_pspnet, create_refinenet
from cenfusion.models.translation import create_pix2pix

__all__ = [
    "ARCHITECTURES",
    "create_backbone",
    "create_model",
    "create_pix2pix",
    "create_plain_backbone",
    "create_pspnet",
    "create_refinenet",
]
