"""Prediction on image files: read each modality as in training, run, write mask PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cenfusion.config import Config, from_dict
from cenfusion.data.segmentation.io import read_modality
from cenfusion.engine.checkpoint import load_checkpoint, load_model_state, require_entries
from cenfusion.engine.segmentation import build_model, modality_specs, predict_probabilities
from cenfusion.models.segmentation import CENSegmentationModel


def checkpoint_config(payload: dict, checkpoint: str | Path) -> Config:
    """The config a cenfusion checkpoint was trained with."""
    if "config" not in payload:
        raise ValueError(f"checkpoint {str(checkpoint)!r} carries no config")
    try:
        data = json.loads(payload["config"])
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"checkpoint {str(checkpoint)!r}: its config is not JSON ({error})"
        ) from None
    return from_dict(Config, data, where=f"{checkpoint}:config")


def load_trained_model(
    checkpoint: str | Path, payload: dict | None = None
) -> tuple[CENSegmentationModel, Config]:
    """Rebuild the model a cenfusion checkpoint was trained as, with its weights (``payload``:
    the checkpoint already loaded, to avoid reading it twice)."""
    if payload is None:
        payload = load_checkpoint(checkpoint)
    require_entries(payload, ("model",), checkpoint, "a model checkpoint")
    config = checkpoint_config(payload, checkpoint)
    config.model.pretrained = None  # the weights come from the checkpoint
    model = build_model(config)
    load_model_state(model, payload["model"], checkpoint)
    return model.eval(), config


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


@torch.no_grad()
def predict_files(
    model: CENSegmentationModel, config: Config, files: dict[str, Path], output: str | Path
) -> dict[str, Path]:
    """Segment one sample given as ``{modality: file}``; write mask, overlay and raw labels."""
    specs = {spec.name: spec for spec in modality_specs(config)}
    missing = [m for m in model.modalities if m not in files]
    extra = [m for m in files if m not in model.modalities]
    if missing or extra:
        raise ValueError(
            f"this model takes modalities {list(model.modalities)}; missing {missing}, "
            f"unexpected {extra}"
        )
    arrays, shapes = [], {}
    for name in model.modalities:
        spec = specs[name]
        stored = read_modality(
            Path(files[name]),
            where="command line",
            name=name,
            channels=spec.channels,
            require_16bit=spec.require_16bit,
        )
        shapes[name] = stored.shape[:2]
        arrays.append(torch.from_numpy(spec.normalise(stored)).permute(2, 0, 1)[None])
    if len(set(shapes.values())) > 1:
        raise ValueError(
            f"modalities differ in size: { {k: files[k].name for k in shapes} } {shapes}"
        )
    from cenfusion.nn import stack_modalities

    inputs = stack_modalities(arrays, model.modalities, channels=3)
    size = next(iter(shapes.values()))
    probabilities = predict_probabilities(
        model, inputs, size, tuple(config.eval.scales), config.eval.flip, config.eval.logits_resize
    )
    labels = probabilities["ensemble"].argmax(dim=1)[0].numpy().astype(np.uint8)
    return write_prediction(labels, files.get("rgb"), config.model.num_classes, Path(output))


def write_prediction(
    labels: np.ndarray, rgb_file: Path | None, num_classes: int, output: Path
) -> dict[str, Path]:
    output.parent.mkdir(parents=True, exist_ok=True)
    colours = palette(num_classes)[labels]
    paths = {
        "mask": output,
        "labels": output.with_name(f"{output.stem}_labels.png"),
        "overlay": output.with_name(f"{output.stem}_overlay.png"),
    }
    Image.fromarray(colours).save(paths["mask"])
    Image.fromarray(labels).save(paths["labels"])
    if rgb_file is not None:
        base = np.asarray(Image.open(rgb_file).convert("RGB"), dtype=np.float32)
    else:
        base = np.full(colours.shape, 128, dtype=np.float32)
    overlay = (0.5 * base + 0.5 * colours).astype(np.uint8)
    Image.fromarray(overlay).save(paths["overlay"])
    return paths
