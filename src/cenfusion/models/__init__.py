"""What is built from the CEN blocks: backbones (and, later, segmentation/translation models)."""

from cenfusion.models.backbones import create_backbone, create_plain_backbone

__all__ = ["create_backbone", "create_plain_backbone"]
