"""Segmentation metrics from one confusion matrix over the whole split (docs/method.md §5).

Rows are ground truth, columns predictions; pixels whose label is >= num_classes (255 = void)
are ignored. pixel accuracy = trace / total; mean accuracy = nanmean(diag / row sums);
mIoU = nanmean(diag / (row + col - diag)); a class absent from both labels and predictions
has no IoU (NaN) and does not count. The matrix is a sum, so it can be reduced across
processes with ``all_reduce(SUM)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


class ConfusionMatrix:
    """Accumulates a ``(K, K)`` int64 confusion matrix from label/prediction batches."""

    def __init__(self, num_classes: int, device: torch.device | str = "cpu") -> None:
        self.num_classes = num_classes
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, prediction: Tensor, label: Tensor) -> None:
        """prediction, label: integer tensors of the same shape (any number of dims)."""
        if prediction.shape != label.shape:
            raise ValueError(
                f"prediction {tuple(prediction.shape)} and label {tuple(label.shape)} differ"
            )
        label = label.reshape(-1).to(torch.int64)
        prediction = prediction.reshape(-1).to(torch.int64)
        valid = (label >= 0) & (label < self.num_classes)
        index = label[valid] * self.num_classes + prediction[valid]
        counts = torch.bincount(index, minlength=self.num_classes**2)
        self.matrix += counts.view(self.num_classes, self.num_classes).to(self.matrix.device)

    def compute(self) -> SegmentationScores:
        return scores_from_confusion(self.matrix)


@dataclass(frozen=True)
class SegmentationScores:
    pixel_accuracy: float
    mean_accuracy: float
    mean_iou: float
    per_class_iou: tuple[float, ...]

    def as_dict(self) -> dict:
        return {
            "pixel_accuracy": self.pixel_accuracy,
            "mean_accuracy": self.mean_accuracy,
            "mean_iou": self.mean_iou,
            "per_class_iou": list(self.per_class_iou),
        }


def scores_from_confusion(matrix: Tensor) -> SegmentationScores:
    matrix = matrix.to(torch.float64)
    diag = matrix.diagonal()
    rows, cols = matrix.sum(1), matrix.sum(0)
    total = matrix.sum()
    with torch.no_grad():
        accuracy = diag / rows  # NaN where a class never occurs in the labels
        iou = diag / (rows + cols - diag)
    return SegmentationScores(
        pixel_accuracy=float(diag.sum() / total) if total > 0 else float("nan"),
        mean_accuracy=float(torch.nanmean(accuracy)),
        mean_iou=float(torch.nanmean(iou)),
        per_class_iou=tuple(float(v) for v in iou),
    )
