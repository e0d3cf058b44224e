"""A picture of a few scenes: one row per scene, one column per modality, colourised in NumPy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cenfusion.data.synthetic.classes import IGNORE_INDEX, PALETTE
from cenfusion.data.synthetic.dataset import DEFAULT_SIZE, check_size, render_arrays
from cenfusion.data.synthetic.formats import MODALITIES

_RAMP = np.array(
    [
        [48, 18, 59],
        [70, 107, 227],
        [40, 188, 235],
        [50, 241, 152],
        [164, 252, 60],
        [237, 208, 58],
        [251, 128, 34],
        [215, 53, 6],
        [122, 4, 3],
    ],
    dtype=np.float64,
)
"""Anchors of a turbo-like ramp (dark blue -> cyan -> green -> yellow -> red)."""


def colorize_scalar(
    x: np.ndarray, lo: float, hi: float, invalid: np.ndarray | None = None
) -> np.ndarray:
    """Map ``x`` (H, W) linearly from [lo, hi] onto the ramp; ``invalid`` pixels are black."""
    s = np.clip((x - lo) / max(hi - lo, 1e-12), 0.0, 1.0) * (len(_RAMP) - 1)
    i = np.minimum(np.floor(s).astype(np.int64), len(_RAMP) - 2)
    w = (s - i)[..., None]
    out = _RAMP[i] * (1 - w) + _RAMP[i + 1] * w
    if invalid is not None:
        out[invalid] = 0
    return out.astype(np.uint8)


def colorize_label(label: np.ndarray) -> np.ndarray:
    """Class colours from :data:`PALETTE`; void (255) and unknown labels are black."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: len(PALETTE)] = PALETTE
    lut[IGNORE_INDEX] = 0
    return lut[label]


def colorize(name: str, value: np.ndarray) -> np.ndarray:
    """Display image (H, W, 3) uint8 of one decoded modality or label."""
    if name == "label":
        return colorize_label(value)
    if name == "depth":
        valid = value > 0
        lo, hi = (value[valid].min(), value[valid].max()) if valid.any() else (0.0, 1.0)
        return colorize_scalar(value, float(lo), float(hi), invalid=~valid)
    if name == "normal":
        return np.round((value + 1.0) * 127.5).astype(np.uint8)
    gray = value if value.ndim == 3 else np.repeat(value[..., None], 3, axis=2)
    return np.round(np.clip(gray, 0, 1) * 255).astype(np.uint8)


def preview_grid(
    n: int = 4,
    seed: int = 0,
    size: tuple[int, int] = DEFAULT_SIZE,
    modalities: tuple[str, ...] = MODALITIES,
    gap: int = 4,
) -> np.ndarray:
    """Grid image (rows = scenes, columns = modalities + label) as uint8 (H', W', 3)."""
    height, width = check_size(size)
    names = (*modalities, "label")
    grid = np.full(
        (n * height + (n + 1) * gap, len(names) * width + (len(names) + 1) * gap, 3),
        255,
        dtype=np.uint8,
    )
    for row in range(n):
        arrays = render_arrays(seed, row, (height, width), modalities)
        for col, name in enumerate(names):
            y, x = gap + row * (height + gap), gap + col * (width + gap)
            grid[y : y + height, x : x + width] = colorize(name, arrays[name])
    return grid


def save_preview(
    path: str | Path,
    n: int = 4,
    seed: int = 0,
    size: tuple[int, int] = DEFAULT_SIZE,
    modalities: tuple[str, ...] = MODALITIES,
) -> Path:
    """Write :func:`preview_grid` as a PNG with a caption row naming the columns."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"preview: expected an output path ending in .png, got {str(path)!r}")
    if n < 1:
        raise ValueError(f"preview: expected at least one scene, got n={n}")
    height, width = check_size(size)
    grid = preview_grid(n, seed, (height, width), modalities)
    caption = 16
    canvas = Image.new("RGB", (grid.shape[1], grid.shape[0] + caption), "white")
    canvas.paste(Image.fromarray(grid), (0, caption))
    draw = ImageDraw.Draw(canvas)
    for col, name in enumerate((*modalities, "label")):
        draw.text((4 + col * (width + 4) + 2, 3), name, fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
