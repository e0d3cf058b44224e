"""How each modality is stored and normalised: one small frozen dataclass per modality.

The paper's values are presets (:data:`IMAGENET_RGB`, :data:`NYUDV2_DEPTH`,
:data:`SUNRGBD_DEPTH`); anything else (thermal, HHA, near-infrared) is a :class:`Modality` with
its own channel count, scale and optional mean/std, and ``dataclasses.replace`` adjusts a preset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
NORMS = ("affine", "minmax")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
LABEL = "label"
"""The key of the label map in a sample (never a modality's name)."""


@dataclass(frozen=True)
class Modality:
    """One input modality: where its files are, how many channels, how to normalise it.

    Normalisation, applied to the stored values ``x`` before any geometric transform:

    - ``norm="affine"``: ``v = x * scale``
    - ``norm="minmax"``: ``v = (x - x.min()) / (x.max() - x.min()) * scale`` (per image; 0 if flat)

    then, when ``mean``/``std`` are given (one value per channel, or one for all),
    ``v = (v - mean) / std``. ``interpolation`` is used when resizing (``nearest`` for anything
    whose values must not be blended, such as depth with holes). ``pad_value`` fills padding,
    in normalised units (0 = the mean of a mean/std-normalised modality). ``require_16bit``
    refuses 8-bit files (for depth stored at a 16-bit scale). ``folder`` and ``ext`` place the
    files in the folder-per-modality layout (``root/<folder>/<id>.<ext>``; folder defaults to the
    name); the list-file layouts (NYUDv2, SUN RGB-D) read ``rgb`` and ``depth`` from their lists
    and any further modality, such as HHA, from its ``folder`` beside them
    (``root/<folder>/<the label file's stem>.<ext>``).
    """

    name: str
    channels: int = 3
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    norm: str = "affine"
    interpolation: str = "bicubic"
    pad_value: float = 0.0
    require_16bit: bool = False
    folder: str | None = None
    ext: str = "png"

    def __post_init__(self) -> None:
        if not self.name or self.name == LABEL or "/" in self.name:
            raise ValueError(
                f"modality name: expected a non-empty name other than 'label', got {self.name!r}"
            )
        if self.channels not in (1, 3):
            raise ValueError(
                f"modality {self.name!r}: channels must be 1 or 3, got {self.channels}"
            )
        if not (np.isfinite(self.scale) and self.scale != 0):
            raise ValueError(
                f"modality {self.name!r}: scale must be finite and non-zero, got {self.scale}"
            )
        if self.norm not in NORMS:
            raise ValueError(
                f"modality {self.name!r}: norm must be one of {NORMS}, got {self.norm!r}"
            )
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"modality {self.name!r}: interpolation must be one of {INTERPOLATIONS}, "
                f"got {self.interpolation!r}"
            )
        if (self.mean is None) != (self.std is None):
            raise ValueError(f"modality {self.name!r}: give both mean and std, or neither")
        for what in ("mean", "std"):
            values = getattr(self, what)
            if values is None:
                continue
            values = tuple(float(v) for v in np.atleast_1d(values))
            if len(values) not in (1, self.channels):
                raise ValueError(
                    f"modality {self.name!r}: {what} needs 1 or {self.channels} values, "
                    f"got {len(values)}"
                )
            object.__setattr__(self, what, values)
        if self.std is not None and any(s == 0 for s in self.std):
            raise ValueError(f"modality {self.name!r}: std must be non-zero, got {self.std}")

    @property
    def directory(self) -> str:
        """The folder of this modality in the folder-per-modality layout."""
        return self.folder or self.name

    def normalise(self, x: np.ndarray) -> np.ndarray:
        """Stored values (H, W, C) -> float32 network input (H, W, C); computed in float64."""
        v = x.astype(np.float64)
        if self.norm == "minmax":
            low, high = v.min(), v.max()
            v = (v - low) / (high - low) * self.scale if high > low else np.zeros_like(v)
        else:
            v = v * self.scale
        if self.mean is not None and self.std is not None:
            v = (v - np.asarray(self.mean)) / np.asarray(self.std)
        return v.astype(np.float32)


IMAGENET_RGB = Modality(
    "rgb",
    channels=3,
    scale=1.0 / 255.0,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    interpolation="bicubic",
)
"""RGB as the paper feeds it: ``(x / 255 - mean) / std`` with ImageNet statistics, bicubic."""

NYUDV2_DEPTH = Modality(
    "depth", channels=1, scale=1.0 / 5000.0, interpolation="nearest", require_16bit=True
)
"""NYUDv2 depth: 16-bit PNG holding metres x 5000, fed as metres (no mean/std), nearest."""

SUNRGBD_DEPTH = Modality(
    "depth", channels=1, scale=255.0, norm="minmax", interpolation="nearest", require_16bit=True
)
"""SUN RGB-D depth as the public code feeds it (``Normalise`` with ``depth_scale == -2``):
min-max stretched to [0, 255] per image, no mean/std; units differ between the four sensors,
which the per-image stretch sidesteps. We stretch over the whole image before augmentation; the
public code stretches the padded crop (its padding, 123 for depth too, takes part). Use
``dataclasses.replace(NYUDV2_DEPTH, scale=...)`` for a fixed scale instead."""
