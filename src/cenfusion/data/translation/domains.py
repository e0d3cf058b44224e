"""How each domain's stored values become a ``[-1, 1]`` image (docs/method.md §4 and §6).

The public code (``utils/dataset.py``) tiles single-channel images to 3 channels, takes
``log(1 + x)`` of depth, divides the 16-bit domains by fixed maxima (depth 11.1 after the log,
``edge_texture`` 11355, ``edge_occlusion`` 11584) and maps ``[0, 1]`` to ``[-1, 1]``. The
Taskonomy presets below carry those numbers; every one is a setting (``Domain`` fields).

Differences on purpose: values above the maximum are clipped (the public code casts them to
uint8, which wraps them around), and nothing is rounded back to 8 bits before resizing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np

TASKONOMY_DOMAINS: tuple[str, ...] = (
    "rgb",
    "normal",
    "reshading",
    "depth_euclidean",
    "depth_zbuffer",
    "principal_curvature",
    "edge_occlusion",
    "edge_texture",
    "segment_unsup2d",
    "segment_unsup25d",
)
"""The public code's domain indices (``-i 2 7 0`` = reshading, edge_texture -> rgb)."""

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


def taskonomy_domain(domain: int | str) -> str:
    """A domain name from its index in the public code (``2`` -> ``"reshading"``) or name."""
    if isinstance(domain, str) and not domain.isdigit():
        return domain
    index = int(domain)
    if not 0 <= index < len(TASKONOMY_DOMAINS):
        raise ValueError(
            f"Taskonomy domain index {index}: expected 0..{len(TASKONOMY_DOMAINS) - 1} "
            f"({', '.join(f'{i} {n}' for i, n in enumerate(TASKONOMY_DOMAINS))})"
        )
    return TASKONOMY_DOMAINS[index]


@dataclass(frozen=True)
class Domain:
    """One image domain: where its files are and how stored values map to ``[-1, 1]``.

    ``v = log(1 + x)`` if ``log``; then ``(v - min_value) / (max_value - min_value)``, clipped to
    ``[0, 1]``, times 2 minus 1. ``max_value=None`` means the stored type's full range (255
    for 8-bit files, 65535 for 16-bit; after ``log``, ``log(1 + that)``). Single-channel
    images are tiled to 3 channels. ``folder``/``ext`` place files in the folder layout
    (``root/<folder>/<id>.<ext>``; folder defaults to the name); the Taskonomy layout names
    its folders after the domain.
    """

    name: str
    log: bool = False
    min_value: float = 0.0
    max_value: float | None = None
    interpolation: str = "bilinear"
    folder: str | None = None
    ext: str = "png"

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name == "target":
            raise ValueError(
                f"domain name: expected a non-empty name other than 'target', got {self.name!r}"
            )
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"domain {self.name!r}: interpolation must be one of {INTERPOLATIONS}, "
                f"got {self.interpolation!r}"
            )
        if self.max_value is not None and not self.max_value > self.min_value:
            raise ValueError(
                f"domain {self.name!r}: max_value {self.max_value} must exceed min_value "
                f"{self.min_value}"
            )

    @property
    def directory(self) -> str:
        return self.folder or self.name

    def normalise(self, stored: np.ndarray) -> np.ndarray:
        """Stored values ``(H, W, 1|3)`` -> float32 ``(H, W, 3)`` in ``[-1, 1]``."""
        high = self.max_value
        if high is None:
            high = 255.0 if stored.dtype == np.uint8 else 65535.0
            if self.log:
                high = math.log1p(high)
        v = stored.astype(np.float64)
        if self.log:
            v = np.log1p(np.maximum(v, 0.0))
        v = np.clip((v - self.min_value) / (high - self.min_value), 0.0, 1.0)
        if v.shape[2] == 1:
            v = np.repeat(v, 3, axis=2)
        return (v * 2.0 - 1.0).astype(np.float32)


TASKONOMY_PRESETS: dict[str, Domain] = {
    "depth_euclidean": Domain("depth_euclidean", log=True, max_value=11.1),
    "depth_zbuffer": Domain("depth_zbuffer", log=True, max_value=11.1),
    "edge_texture": Domain("edge_texture", max_value=11355.0),
    "edge_occlusion": Domain("edge_occlusion", max_value=11584.0),
}
"""The public code's per-domain constants; other domains use :class:`Domain`'s defaults."""


def resolve_domain(name: str, presets: dict[str, Domain], settings: dict | None = None) -> Domain:
    """The preset for ``name`` (or a default ``Domain``) with ``settings`` replacing fields."""
    base = presets.get(name, Domain(name))
    if not settings:
        return base
    valid = [f.name for f in fields(Domain) if f.name != "name"]
    unknown = [k for k in settings if k not in valid]
    if unknown:
        raise ValueError(
            f"domain {name!r}: unknown setting {unknown[0]!r}; valid settings: {valid}"
        )
    return replace(base, **settings)
