"""Segmentation on image files and the sample grids of a run.

``predict_files`` reads each modality as in training, runs the model and writes the mask
(class palette), the raw labels and an overlay. ``save_samples`` writes a PNG grid of
validation images every N epochs: one row per image with every input modality (min-max
stretched per image, for display only), the ground truth and each branch's and the ensemble's
prediction in the same palette, each column titled, so a run can be followed by eye as well as
by its numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from cenfusion.config import Config
from cenfusion.data.io import modality_files, read_modality, write_png
from cenfusion.engine.samples import write_grid
from cenfusion.models.segmentation import CENSegmentationModel
from cenfusion.tasks.segmentation.evaluation import predict_probabilities
from cenfusion.tasks.segmentation.training import modality_specs


def palette(num_classes: int) -> np.ndarray:
    """A fixed, well-separated colour per class (the PASCAL VOC bit-interleaving palette)."""
    colours = np.zeros((max(num_classes, 1), 3), dtype=np.uint8)
    for index in range(num_classes):
        label, r, g, b = index + 1, 0, 0, 0
        for bit in range(8):
            r |= ((label >> 0) & 1) << (7 - bit)
            g |= ((label >> 1) & 1) << (7 - bit)
            b |= ((label >> 2) & 1) << (7 - bit)
            label >>= 3
        colours[index] = (r, g, b)
    return colours


def read_inputs(
    model: CENSegmentationModel, config: Config, files: Mapping[str, str | Path]
) -> dict[str, Tensor]:
    """``{modality: (C, H, W)}`` read and normalised as the training data set does."""
    ordered = modality_files(model.modalities, files)
    specs = {spec.name: spec for spec in modality_specs(config)}
    tensors, shapes = {}, {}
    for name, path in ordered.items():
        spec = specs[name]
        stored = read_modality(
            path,
            where="command line",
            name=name,
            channels=spec.channels,
            require_16bit=spec.require_16bit,
        )
        shapes[name] = stored.shape[:2]
        tensors[name] = torch.from_numpy(spec.normalise(stored)).permute(2, 0, 1).float()
    if len(set(shapes.values())) > 1:
        raise ValueError(
            f"modalities differ in size: { {k: ordered[k].name for k in shapes} } {shapes}"
        )
    return tensors


@torch.no_grad()
def predict_files(
    model: CENSegmentationModel,
    config: Config,
    files: Mapping[str, str | Path],
    output: str | Path,
) -> dict[str, Path]:
    """Segment one sample given as ``{modality: file}``; write mask, overlay and raw labels."""
    inputs = read_inputs(model, config, files)
    size = next(iter(inputs.values())).shape[-2:]
    probabilities = predict_probabilities(
        model,
        {name: tensor[None] for name, tensor in inputs.items()},
        tuple(size),
        tuple(config.eval.scales),
        config.eval.flip,
        config.eval.logits_resize,
        config.train.precision,
    )
    labels = probabilities["ensemble"].argmax(dim=1)[0].cpu().numpy()
    rgb = Path(files["rgb"]) if "rgb" in files else None
    return write_prediction(labels, rgb, config.model.num_classes, Path(output))


def write_prediction(
    labels: np.ndarray, rgb_file: Path | None, num_classes: int, output: Path
) -> dict[str, Path]:
    """The mask in the class palette, ``*_labels.png`` (the class indices: 8-bit, 16-bit for
    more than 256 classes, such as NYUDv2's 894) and ``*_overlay.png``."""
    if labels.size and (labels.min() < 0 or labels.max() >= max(num_classes, 1)):
        raise ValueError(f"labels outside 0..{num_classes - 1}, the model's classes")
    labels = labels.astype(np.uint8 if num_classes <= 256 else np.uint16)
    output.parent.mkdir(parents=True, exist_ok=True)
    colours = palette(num_classes)[labels]
    paths = {
        "mask": output,
        "labels": output.with_name(f"{output.stem}_labels.png"),
        "overlay": output.with_name(f"{output.stem}_overlay.png"),
    }
    Image.fromarray(colours).save(paths["mask"])
    write_png(paths["labels"], labels)
    if rgb_file is not None:
        base = np.asarray(Image.open(rgb_file).convert("RGB"), dtype=np.float32)
    else:
        base = np.full(colours.shape, 128, dtype=np.float32)
    overlay = (0.5 * base + 0.5 * colours).astype(np.uint8)
    Image.fromarray(overlay).save(paths["overlay"])
    return paths


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
def save_samples(
    model: CENSegmentationModel,
    dataset: Dataset,
    path: str | Path,
    count: int = 4,
    ignore_index: int = 255,
) -> Path:
    """Write the grid of the first ``count`` images of ``dataset`` to ``path``."""
    was_training = model.training
    model.eval()
    colours = palette(model.num_classes)
    rows = []
    for index in range(min(count, len(dataset))):
        sample = dataset[index]
        label = sample["label"]
        inputs = {m: sample[m][None] for m in model.modalities}
        probabilities = predict_probabilities(model, inputs, tuple(label.shape[-2:]))
        panels = [_display(sample[m]) for m in model.modalities]
        panels.append(_colour(label, colours, ignore_index))
        panels += [
            _colour(probabilities[name][0].argmax(0), colours, ignore_index)
            for name in [*model.modalities, "ensemble"]
        ]
        rows.append(panels)
    model.train(was_training)
    titles = [*(f"input\n{m}" for m in model.modalities), "ground\ntruth"]
    titles += [*(f"branch\n{m}" for m in model.modalities), "ensemble"]
    return write_grid(rows, titles, path)
