"""Sample grids of a run: panels in rows, one title above each column.

A task decides what the panels are (inputs, predictions, targets); this writes them as one PNG
whose columns are named, so a grid can be read without knowing the task's column order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

GAP = 4  # white pixels between panels
TITLE_HEIGHT = 26  # pixels of the title row: two lines


def write_grid(
    rows: Sequence[Sequence[np.ndarray]], titles: Sequence[str], path: str | Path
) -> Path:
    """Write ``rows`` of ``(H, W, 3)`` uint8 panels (the same sizes in every row) with
    ``titles`` above the columns (at most two lines each, ``"branch\\ntexture"``); returns the
    path."""
    if not rows or any(len(row) != len(titles) for row in rows):
        raise ValueError(f"sample grid: expected rows of {len(titles)} panels ({list(titles)})")
    widths = [panel.shape[1] for panel in rows[0]]
    width = sum(widths) + GAP * (len(widths) - 1)
    height = TITLE_HEIGHT + sum(row[0].shape[0] + GAP for row in rows) - GAP
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    top = TITLE_HEIGHT
    for row in rows:
        left = 0
        for panel, panel_width in zip(row, widths, strict=True):
            canvas[top : top + panel.shape[0], left : left + panel_width] = panel
            left += panel_width + GAP
        top += row[0].shape[0] + GAP
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    left = 0
    for title, panel_width in zip(titles, widths, strict=True):
        for line_number, line in enumerate(title.split("\n")[:2]):
            draw.text((left + 1, 1 + 12 * line_number), _fit(draw, line, panel_width), fill=0)
        left += panel_width + GAP
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def _fit(draw: ImageDraw.ImageDraw, text: str, width: int) -> str:
    """``text``, shortened with a trailing ``.`` until it fits ``width`` pixels."""
    while text and draw.textlength(text) > width - 2:
        text = text[:-2] + "." if len(text) > 2 else ""
    return text
