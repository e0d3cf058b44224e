"""How results are judged."""

from cenfusion.metrics.image import (
    FIDInceptionV3,
    ImageMetrics,
    ImageScores,
    fid_from_features,
    format_image_scores,
    kid_from_features,
)
from cenfusion.metrics.segmentation import (
    ConfusionMatrix,
    SegmentationScores,
    scores_from_confusion,
)

__all__ = [
    "ConfusionMatrix",
    "FIDInceptionV3",
    "ImageMetrics",
    "ImageScores",
    "SegmentationScores",
    "fid_from_features",
    "format_image_scores",
    "kid_from_features",
    "scores_from_confusion",
]
