"""How each modality is quantised, in memory and on disk.

The renderer produces integer *codes* exactly as they are stored in PNG files, and the in-memory
dataset decodes the same codes; a writer therefore stores the very values the dataset returns,
and a reader that applies the decoding below gets them back bit for bit.

=================  =======  ===================================  ================================
modality           PNG      code -> value                        range
=================  =======  ===================================  ================================
rgb, texture       8-bit    code / 255                           [0, 1], 3 channels
reshading          8-bit    code / 255                           [0, 1]
normal             8-bit    code / 255 * 2 - 1                   [-1, 1], camera frame (x right,
                                                                 y down, z forward), facing camera
depth              16-bit   code / 5000 (NYUDv2), metres         0 = hole, < 13.1 m
edge_occlusion     16-bit   code / 65535                         {0, 1}
edge_texture       16-bit   code / 65535                         [0, 1]
label              8-bit    class index, 255 = void
=================  =======  ===================================  ================================

Taskonomy stores depth in units of 1/512 m; its writer re-encodes the metres above, so a value
read back from a Taskonomy folder is within 1/1024 m of the in-memory one.
"""

from __future__ import annotations

import numpy as np

MODALITIES: tuple[str, ...] = (
    "rgb",
    "depth",
    "normal",
    "reshading",
    "texture",
    "edge_occlusion",
    "edge_texture",
)
"""Every modality the renderer produces (the ``label`` is always produced as well)."""

CHANNELS: dict[str, int] = {
    "rgb": 3,
    "depth": 1,
    "normal": 3,
    "reshading": 1,
    "texture": 3,
    "edge_occlusion": 1,
    "edge_texture": 1,
}

NYUDV2_DEPTH_SCALE: float = 5000.0
TASKONOMY_DEPTH_SCALE: float = 512.0
MAX_DEPTH: float = 65535 / NYUDV2_DEPTH_SCALE
"""Largest depth a 16-bit NYUDv2 PNG can hold (13.1 m)."""

_UNIT8 = ("rgb", "texture", "reshading")
_UNIT16 = ("edge_occlusion", "edge_texture")


def validate_modalities(modalities: object) -> tuple[str, ...]:
    """Return ``modalities`` as a tuple, or raise a ValueError naming the valid ones."""
    if isinstance(modalities, str):
        modalities = (modalities,)
    names = tuple(modalities)  # type: ignore[arg-type]
    unknown = [m for m in names if m not in MODALITIES]
    if unknown:
        raise ValueError(
            f"unknown modality {', '.join(map(repr, unknown))}: valid modalities are "
            f"{', '.join(MODALITIES)} (the label is always returned)"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"modalities must be distinct, got {names}")
    return names


def encode(name: str, value: np.ndarray) -> np.ndarray:
    """Quantise a float modality (H, W[, C]) to the integer code stored in its PNG."""
    if name in _UNIT8:
        return np.round(np.clip(value, 0.0, 1.0) * 255.0).astype(np.uint8)
    if name == "normal":
        return np.round((np.clip(value, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
    if name in _UNIT16:
        return np.round(np.clip(value, 0.0, 1.0) * 65535.0).astype(np.uint16)
    if name == "depth":
        return encode_depth(value, NYUDV2_DEPTH_SCALE)
    raise ValueError(f"unknown modality {name!r}: valid modalities are {', '.join(MODALITIES)}")


def decode(name: str, code: np.ndarray) -> np.ndarray:
    """Turn a stored code back into the float32 value the dataset returns."""
    x = code.astype(np.float32)
    if name in _UNIT8:
        return x / np.float32(255.0)
    if name == "normal":
        return x / np.float32(255.0) * np.float32(2.0) - np.float32(1.0)
    if name in _UNIT16:
        return x / np.float32(65535.0)
    if name == "depth":
        return x / np.float32(NYUDV2_DEPTH_SCALE)
    raise ValueError(f"unknown modality {name!r}: valid modalities are {', '.join(MODALITIES)}")


def encode_depth(depth: np.ndarray, scale: float) -> np.ndarray:
    """Metres -> uint16 code ``round(depth * scale)``; 0 stays 0 (a hole)."""
    limit = 65535 / scale
    if np.any(depth > limit):
        raise ValueError(
            f"depth: expected values <= {limit:.3f} m to fit 16 bits at scale {scale}, "
            f"got max {float(depth.max()):.3f} m"
        )
    return np.round(np.maximum(depth, 0.0) * scale).astype(np.uint16)
