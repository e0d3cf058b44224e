"""How results are judged."""

from cenfusion.metrics.segmentation import (
    ConfusionMatrix,
    SegmentationScores,
    scores_from_confusion,
)

__all__ = ["ConfusionMatrix", "SegmentationScores", "scores_from_confusion"]
