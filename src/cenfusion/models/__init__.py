"""What is built from the CEN blocks: backbones, segmentation models, one factory."""

from cenfusion.models.backbones import create_backbone, create_plain_backbone
from cenfusion.models.factory import create_model

__all__ = ["create_backbone", "create_model", "create_plain_backbone"]
