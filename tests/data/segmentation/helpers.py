"""Tiny data sets written with PIL in the layouts the loaders read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def random_sample(rng: np.random.Generator, size=(6, 8), num_classes=40) -> dict[str, np.ndarray]:
    """Stored codes: rgb uint8 (H, W, 3), depth uint16 (H, W), label uint8 with some 255."""
    label = rng.integers(0, num_classes, size=size).astype(np.uint8)
    label[0, 0] = 255
    return {
        "rgb": rng.integers(0, 256, size=(*size, 3)).astype(np.uint8),
        "depth": rng.integers(0, 65536, size=size).astype(np.uint16),
        "label": label,
    }


def write_nyudv2(
    root: Path, n: int = 3, size=(6, 8), seed: int = 0, list_name: str = "train.txt", num_classes=40
) -> list[dict[str, np.ndarray]]:
    """NYUDv2 layout: rgb/, masks/, depth/ and a tab-separated list (rgb, mask, depth)."""
    rng = np.random.default_rng(seed)
    samples, lines = [], []
    for i in range(1, n + 1):
        s = random_sample(rng, size, num_classes)
        name = f"{i:06d}.png"
        write_png(root / "rgb" / name, s["rgb"])
        write_png(root / "masks" / name, s["label"])
        write_png(root / "depth" / name, s["depth"])
        lines.append(f"rgb/{name}\tmasks/{name}\tdepth/{name}\n")
        samples.append(s)
    (root / list_name).write_text("".join(lines))
    return samples


def expected_rgb(code: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (3, H, W) as the paper normalises it."""
    return ((code / 255.0 - MEAN) / STD).astype(np.float32).transpose(2, 0, 1)
