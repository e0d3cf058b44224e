"""Sample predictions of a segmentation run: a PNG grid of validation images every N epochs.

One row per image: every input modality (min-max stretched per image, for display only), the
ground truth and each branch's and the ensemble's prediction in the class palette of
``cenfusion predict``, so a run can be followed by eye as well as by its numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from cenfusion.engine.predict import palette
from cenfusion.models.segmentation import CENSegmentationModel

GAP = 4  # white pixels between panels


def _display(image: Tensor) -> np.ndarray:
    """A ``(C, H, W)`` input as ``(H, W, 3)`` uint8: min-max stretched, 1 channel tiled."""
    image = image.detach().float().cpu()
    image = image[:3] if image.shape[0] >= 3 else image[:1].expand(3, -1, -1)
    low, high = image.min(), image.max()
    unit = (image - low) / (high - low) if high > low else torch.zeros_like(image)
    return (unit * 255).round().byte().permute(1, 2, 0).numpy()


def _colour(labels: Tensor, colours: np.ndarray, ignore_index: int) -> np.ndarray:
    labels = labels.detach().cpu().numpy()
    out = np.full((*labels.shape, 3), 255, dtype=np.uint8)  # ignored pixels white
    known = (labels >= 0) & (labels < len(colours)) & (labels != ignore_index)
    out[known] = colours[labels[known]]
    return out


@torch.no_grad()
def save_segmentation_samples(
    model: CENSegmentationModel,
    dataset: Dataset,
    path: str | Path,
    count: int = 4,
    ignore_index: int = 255,
) -> Path:
    """Write the grid of the first ``count`` images of ``dataset`` to ``path``."""
    from cenfusion.engine.segmentation import predict_probabilities, stack_batch

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    colours = palette(model.num_classes)
    rows = []
    for index in range(min(count, len(dataset))):
        sample = dataset[index]
        batch = {key: value[None] for key, value in sample.items()}
        inputs, label = stack_batch(batch, model.modalities)
        probabilities = predict_probabilities(model, inputs.to(device), tuple(label.shape[-2:]))
        panels = [_display(sample[m]) for m in model.modalities]
        panels.append(_colour(label[0], colours, ignore_index))
        panels += [
            _colour(probabilities[name][0].argmax(0), colours, ignore_index)
            for name in [*model.modalities, "ensemble"]
        ]
        gap = np.full((panels[0].shape[0], GAP, 3), 255, dtype=np.uint8)
        rows.append(np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=1))
    model.train(was_training)
    gap = np.full((GAP, rows[0].shape[1], 3), 255, dtype=np.uint8)
    grid = np.concatenate([r for row in rows for r in (row, gap)][:-1], axis=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    return path
