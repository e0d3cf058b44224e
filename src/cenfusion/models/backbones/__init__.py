"""Backbones built from the CEN blocks (and their plain unimodal twins)."""

from cenfusion.models.backbones.pretrained import load_torchvision_resnet
from cenfusion.models.backbones.resnet import (
    RESNETS,
    CENResNet,
    ResNet,
    create_backbone,
    create_plain_backbone,
)

__all__ = [
    "RESNETS",
    "CENResNet",
    "ResNet",
    "create_backbone",
    "create_plain_backbone",
    "load_torchvision_resnet",
]
