"""Procedural albedo: vectorised functions of surface coordinates, one per material kind.

Object materials are *solid* textures (functions of the 3-D point in the object's frame), so a
wooden box, cylinder and sphere share exactly the same texture statistics and differ only in
geometry. Rugs and posters share one 2-D pattern family for the same reason.
"""

from __future__ import annotations

import numpy as np

from cenfusion.data.synthetic._linalg import transform
from cenfusion.data.synthetic.scene import Material


def _noise(points: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
    """Smooth noise in about [-1, 1]: a sum of random plane waves. points: (N, D) -> (N,)."""
    phase = transform(points, params["wave_k"].T) + params["wave_phase"]
    return np.sin(phase) @ params["wave_amp"]


def _mix(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    return a + (b - a) * w[:, None]


def _hash2(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) per integer cell (i, j)."""
    h = np.sin(i * 12.9898 + j * 78.233) * 43758.5453
    return h - np.floor(h)


def tiles(uv: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
    """Floor tiles with grout lines and a per-tile brightness jitter. uv: (N, 2) metres."""
    cells = uv / p["size"] + p["offset"]
    index = np.floor(cells)
    frac = cells - index
    jitter = 1.0 + p["jitter"] * (2.0 * _hash2(index[:, 0], index[:, 1]) - 1.0)
    grout = np.any(frac < p["grout_width"], axis=1)
    color = p["color"] * jitter[:, None]
    color[grout] = p["grout"]
    return color


def paint(uv: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
    """Matte wall paint with a faint low-frequency mottle."""
    return p["color"] * (1.0 + 0.04 * _noise(uv, p))[:, None]


def pattern(uv: np.ndarray, p: dict[str, np.ndarray], half_size: np.ndarray) -> np.ndarray:
    """Rug/poster pattern in decal coordinates (centred, metres): stripes, checker or rings."""
    colors = p["colors"]
    n = len(colors) - 1
    width = p["width"]
    style = int(p["style"])
    if style == 0:
        index = np.floor(uv @ p["direction"] / width)
    elif style == 1:
        index = np.floor(uv[:, 0] / width) + np.floor(uv[:, 1] / width)
    else:
        index = np.floor(np.hypot(uv[:, 0], uv[:, 1]) / width)
    color = colors[(index.astype(np.int64) % n)]
    border = np.any(np.abs(uv) > half_size - p["border"], axis=1)
    color[border] = colors[-1]
    return color


def wood(xyz: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
    """Wood rings around a random axis, with turbulence. xyz: (N, 3) object-frame metres."""
    q = transform(xyz, p["frame"])
    radius = np.hypot(q[:, 0] + p["axis_offset"][0], q[:, 2] + p["axis_offset"][1])
    rings = 0.5 + 0.5 * np.sin(2 * np.pi * (radius * p["ring_freq"] + 0.6 * _noise(q, p)))
    return _mix(p["color"], p["dark"], rings**3)


def fabric(xyz: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
    """A two-tone 3-D checker weave with fine fibre noise. xyz: (N, 3) object-frame metres."""
    q = transform(xyz, p["frame"])
    checker = np.floor(q / p["cell"]).sum(axis=1).astype(np.int64) % 2
    color = _mix(p["color"], p["dark"], checker.astype(np.float64))
    return color * (1.0 + 0.08 * _noise(q, p))[:, None]


def albedo(
    material: Material, coords: np.ndarray, half_size: np.ndarray | None = None
) -> np.ndarray:
    """Albedo (N, 3) in [0, 1] of ``material`` at ``coords`` ((N, 2) surface or (N, 3) solid)."""
    kind, p = material.kind, material.params
    if kind == "tiles":
        out = tiles(coords, p)
    elif kind == "paint":
        out = paint(coords, p)
    elif kind == "pattern":
        assert half_size is not None
        out = pattern(coords, p, half_size)
    elif kind == "wood":
        out = wood(coords, p)
    elif kind == "fabric":
        out = fabric(coords, p)
    else:
        raise ValueError(f"material kind {kind!r}: expected tiles, paint, pattern, wood or fabric")
    return np.clip(out, 0.0, 1.0)
