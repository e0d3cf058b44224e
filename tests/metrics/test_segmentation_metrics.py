"""Segmentation metrics against torchmetrics (an independent implementation) and by hand."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cenfusion.metrics import ConfusionMatrix

torchmetrics = pytest.importorskip("torchmetrics")


def test_hand_computed_example():
    label = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 1]])
    prediction = torch.tensor([[0, 1, 1, 1], [2, 0, 0, 3]])
    cm = ConfusionMatrix(4)
    cm.update(prediction, label)
    assert cm.matrix.tolist() == [[1, 1, 0, 0], [0, 2, 0, 1], [1, 0, 1, 0], [0, 0, 0, 0]]
    scores = cm.compute()
    assert scores.pixel_accuracy == pytest.approx(4 / 7)
    assert scores.mean_accuracy == pytest.approx((1 / 2 + 2 / 3 + 1 / 2) / 3)  # class 3 absent
    ious = [1 / 3, 2 / 4, 1 / 2, 0.0]  # class 3: predicted once, never true -> IoU 0
    assert scores.per_class_iou == pytest.approx(ious)
    assert scores.mean_iou == pytest.approx(sum(ious) / 4)


def test_class_absent_from_labels_and_predictions_is_not_counted():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    scores = cm.compute()
    assert math.isnan(scores.per_class_iou[2])
    assert scores.mean_iou == 1.0


@given(
    num_classes=st.integers(2, 7),
    n=st.integers(1, 300),
    seed=st.integers(0, 10_000),
)
def test_matches_torchmetrics(num_classes, n, seed):
    g = torch.Generator().manual_seed(seed)
    label = torch.randint(0, num_classes, (n,), generator=g)
    label[torch.rand(n, generator=g) < 0.1] = 255
    prediction = torch.randint(0, num_classes, (n,), generator=g)
    cm = ConfusionMatrix(num_classes)
    cm.update(prediction[: n // 2], label[: n // 2])  # accumulates over batches
    cm.update(prediction[n // 2 :], label[n // 2 :])
    reference = torchmetrics.classification.MulticlassConfusionMatrix(
        num_classes, ignore_index=255
    )(prediction, label)
    assert torch.equal(cm.matrix, reference)
    scores = cm.compute()
    present = (reference.sum(0) + reference.sum(1)) > 0
    if not present.any():
        return
    jaccard = torchmetrics.classification.MulticlassJaccardIndex(
        num_classes, ignore_index=255, average="none"
    )(prediction, label)
    assert scores.mean_iou == pytest.approx(float(jaccard[present].mean()), abs=1e-6)
    valid = label != 255
    if valid.any():
        accuracy = float((prediction[valid] == label[valid]).double().mean())
        assert scores.pixel_accuracy == pytest.approx(accuracy)
