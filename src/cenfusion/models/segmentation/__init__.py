"""Segmentation models: Light-Weight RefineNet and PSPNet heads on CEN backbones."""

from cenfusion.models.segmentation.model import CENSegmentationModel
from cenfusion.models.segmentation.pspnet import PyramidPoolingHead
from cenfusion.models.segmentation.refinenet import RefineNetDecoder

__all__ = ["CENSegmentationModel", "PyramidPoolingHead", "RefineNetDecoder"]
