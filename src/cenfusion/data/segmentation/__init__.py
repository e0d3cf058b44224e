"""Real-format segmentation data: NYUDv2, SUN RGB-D, folder-per-modality, joint transforms.

``dataset[i]`` is ``{modality: (C, H, W) float32, ..., "label": (H, W) int64}`` for every layout;
see :mod:`.datasets` for the layouts, :mod:`.modalities` for normalisation and
:mod:`.transforms` for the paper's augmentation and its determinism.
"""

from cenfusion.data.segmentation.datasets import (
    SUNRGBD,
    FolderSegmentation,
    ListFileSegmentation,
    NYUDv2,
    SegmentationFiles,
)
from cenfusion.data.segmentation.modalities import (
    IMAGENET_MEAN,
    IMAGENET_RGB,
    IMAGENET_STD,
    NYUDV2_DEPTH,
    SUNRGBD_DEPTH,
    Modality,
)
from cenfusion.data.segmentation.transforms import (
    AugmentSettings,
    Compose,
    Normalise,
    Pad,
    RandomCrop,
    RandomHorizontalFlip,
    RandomScale,
    Resize,
    eval_transform,
    resize_array,
    to_tensors,
    train_transform,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_RGB",
    "IMAGENET_STD",
    "NYUDV2_DEPTH",
    "SUNRGBD",
    "SUNRGBD_DEPTH",
    "AugmentSettings",
    "Compose",
    "FolderSegmentation",
    "ListFileSegmentation",
    "Modality",
    "NYUDv2",
    "Normalise",
    "Pad",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomScale",
    "Resize",
    "SegmentationFiles",
    "eval_transform",
    "resize_array",
    "to_tensors",
    "train_transform",
]
