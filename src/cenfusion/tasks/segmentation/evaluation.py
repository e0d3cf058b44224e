"""Scores of a segmentation model: test-time-augmented probabilities, confusion matrices, the
table of every branch and the ensemble."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from cenfusion.config import Config
from cenfusion.engine import distributed
from cenfusion.engine.speed import autocast_context
from cenfusion.engine.trainer import show_bars
from cenfusion.metrics import ConfusionMatrix, SegmentationScores
from cenfusion.models.segmentation import CENSegmentationModel
from cenfusion.nn import ModelInputs


@torch.no_grad()
def predict_probabilities(
    model: CENSegmentationModel,
    inputs: ModelInputs,
    size: tuple[int, int],
    scales: tuple[float, ...] = (1.0,),
    flip: bool = False,
    resize: str = "bilinear",
    precision: str = "fp32",
) -> dict[str, Tensor]:
    """``{modality: (B, K, *size), ..., "ensemble": ...}`` softmax scores at label size.

    ``inputs``: anything the model takes (a dict, a list or a stacked tensor). The ensemble is
    formed from the logits, as in the model; each output is resized to ``size`` (``resize``:
    bilinear, or bicubic as the public code does), turned into probabilities and averaged over
    ``scales`` (inputs resized bilinearly) and horizontal flips. Single-scale argmax equals the
    argmax of the resized logits.
    """
    stacked = model.stack(inputs)
    height, width = stacked.shape[-2:]
    total: dict[str, Tensor] = {}
    for scale in scales:
        scaled = stacked
        if scale != 1.0:
            target = (max(1, round(height * scale)), max(1, round(width * scale)))
            scaled = F.interpolate(stacked, size=target, mode="bilinear", align_corners=False)
        for flipped in (False, True) if flip else (False,):
            x = scaled.flip(-1) if flipped else scaled
            with autocast_context(precision, stacked.device):
                outputs = model(x).items()
            for name, output in outputs:
                if flipped:
                    output = output.flip(-1)
                resized = F.interpolate(output, size=size, mode=resize, align_corners=False)
                probabilities = resized.softmax(dim=1)
                total[name] = total[name] + probabilities if name in total else probabilities
    return total


def evaluate(
    model: CENSegmentationModel,
    dataset: Dataset,
    config: Config,
    progress: bool = True,
) -> dict[str, SegmentationScores]:
    """Confusion matrices over the whole split for every branch and the ensemble.

    Under torchrun each process evaluates a contiguous shard and the matrices are summed over
    the processes, so every process gets the scores of the whole split.
    """
    model.eval()
    device = next(model.parameters()).device
    names = [*model.modalities, "ensemble"]
    matrices = {name: ConfusionMatrix(config.model.num_classes, device) for name in names}
    if distributed.world_size() > 1:
        dataset = Subset(dataset, distributed.shard_range(len(dataset)))
    loader = DataLoader(dataset, batch_size=config.eval.batch_size, num_workers=config.data.workers)
    for batch in tqdm(loader, desc="evaluating", disable=not show_bars(progress), leave=False):
        label = batch["label"].to(device)
        probabilities = predict_probabilities(
            model,
            {m: batch[m] for m in model.modalities},
            tuple(label.shape[-2:]),
            tuple(config.eval.scales),
            config.eval.flip,
            config.eval.logits_resize,
            config.train.precision,
        )
        for name in names:
            matrices[name].update(probabilities[name].argmax(dim=1), label)
    for matrix in matrices.values():
        distributed.sum_tensor_(matrix.matrix)
    return {name: matrix.compute() for name, matrix in matrices.items()}


def format_scores(scores: Mapping[str, SegmentationScores], title: str = "") -> str:
    """The table of pixel accuracy, mean accuracy and mIoU per output."""
    header = f"{'output':<12}{'pixel acc':>11}{'mean acc':>10}{'mIoU':>8}"
    lines = [title] if title else []
    lines += [header, "-" * len(header)]
    for name, s in scores.items():
        lines.append(
            f"{name:<12}{s.pixel_accuracy * 100:>10.2f}%{s.mean_accuracy * 100:>9.2f}%"
            f"{s.mean_iou * 100:>7.2f}%"
        )
    return "\n".join(lines)


def scores_from_record(record: Mapping[str, Mapping]) -> dict[str, SegmentationScores]:
    """A metrics record's ``val`` entry as scores."""
    return {
        name: SegmentationScores(**{**v, "per_class_iou": tuple(v["per_class_iou"])})
        for name, v in record.items()
    }
