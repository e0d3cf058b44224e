"""Segmentation models: Light-Weight RefineNet and PSPNet heads on CEN backbones."""

from cenfusion.models.segmentation.model import CENSegmentationModel
from cenfusion.models.segmentation.pspnet import PyramidPoolingHead, create_pspnet
from cenfusion.models.segmentation.refinenet import RefineNetDecoder, create_refinenet

__all__ = [
    "CENSegmentationModel",
    "PyramidPoolingHead",
    "RefineNetDecoder",
    "create_pspnet",
    "create_refinenet",
]
