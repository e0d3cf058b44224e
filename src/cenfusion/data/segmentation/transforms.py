"""Joint transforms over a sample dict of numpy arrays: every modality and the label move together.

A sample here is ``{name: (H, W, C) float32 array, ..., "label": (H, W) int64 array}``, already
normalised (see :class:`Normalise`), so padding with 0 means "the mean" for ImageNet-normalised
RGB and "no reading" for depth. Geometric transforms compute one output geometry per sample and
apply it to every key; only the interpolation differs per key (the label is always nearest).

Randomness: each random transform draws from ``rng`` when one is passed to ``__call__`` (a
``numpy.random.Generator``), and otherwise from **torch's global RNG**, so that
``torch.manual_seed`` makes an epoch reproducible, the training engine can save and restore the
state to resume exactly, and DataLoader workers (which reseed torch per worker) draw different
augmentations. The draws per sample are, in order: scale (1 uniform), flip (1 uniform), crop
top and left (2 integers).

Differences from the public code (``utils/transforms.py``), on purpose:

- Interpolation: the public code resizes with OpenCV, ``INTER_CUBIC`` for rgb (and every other
  non-depth input) and ``INTER_NEAREST`` for depth and masks; we default to the same kinds
  (bicubic, a = -0.75 as OpenCV, no antialiasing), but nearest uses half-pixel centres
  (``nearest-exact``: source ``floor((i + 0.5) * H / H')``) rather than OpenCV's
  ``floor(i * H / H')``, so labels and depth stay aligned with the bicubic/bilinear RGB to within
  half a source pixel instead of being shifted by up to one.
- Resizing happens after normalisation on float32, so bicubic overshoot is not clipped to
  [0, 255] and nothing is rounded back to uint8 (normalisation is affine per channel, so
  otherwise the order does not matter).
- Padding: the public code pads images with the ImageNet mean in 0..255 units (123.675, 116.28,
  103.53, cast to the uint8 values 123, 116, 103) *for every input, depth included* (depth is
  tiled to 3 channels there), and masks with 255; it pads symmetrically by
  ``ceil((size - h) / 2)`` on each side, overshooting by one pixel for odd differences. We pad
  with 0 after normalisation (exactly the mean for RGB; 0 m, i.e. "no reading", for depth
  instead of the public 123/5000 m), labels with the ignore index, centred, to exactly the size.
- Cropping: the public code silently shrinks an odd crop size by one; we crop exactly.
- The short-side floor is applied as in the public code: if ``scale * short_side`` is below the
  floor, the scale becomes ``floor / short_side`` (so the effective NYUDv2 range is ~0.73-2.0).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cenfusion.data.segmentation.modalities import INTERPOLATIONS, LABEL, Modality

Sample = dict[str, np.ndarray]
"""``{modality: (H, W, C) float32, ..., "label": (H, W) int64}``."""


def _pair(size: int | Sequence[int], what: str) -> tuple[int, int]:
    """(H, W) from an int or a pair, validated positive."""
    if isinstance(size, int | np.integer):
        height = width = int(size)
    else:
        try:
            height, width = (int(s) for s in size)
        except (TypeError, ValueError):
            raise ValueError(f"{what}: expected an int or (height, width), got {size!r}") from None
    if height < 1 or width < 1:
        raise ValueError(f"{what}: expected positive sizes, got {size!r}")
    return height, width


def sample_size(sample: Mapping[str, np.ndarray]) -> tuple[int, int]:
    """The common (H, W) of a sample's arrays; raise if they disagree."""
    sizes = {key: tuple(int(s) for s in value.shape[:2]) for key, value in sample.items()}
    if not sizes:
        raise ValueError("empty sample: expected at least one array")
    first = next(iter(sizes.values()))
    if any(size != first for size in sizes.values()):
        raise ValueError(f"sample arrays must share (H, W) before a geometric transform: {sizes}")
    return first  # type: ignore[return-value]


class _Draw:
    """Random draws from a numpy Generator when given, else from torch's global RNG."""

    def __init__(self, rng: np.random.Generator | None) -> None:
        self.rng = rng

    def uniform(self, low: float, high: float) -> float:
        if self.rng is not None:
            u = float(self.rng.random())
        else:
            u = float(torch.rand((), dtype=torch.float64).item())
        return low + (high - low) * u

    def integer(self, n: int) -> int:
        """Uniform in [0, n)."""
        if self.rng is not None:
            return int(self.rng.integers(n))
        return int(torch.randint(n, ()).item())


def resize_array(array: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """Resize an (H, W[, C]) array to ``size`` = (H', W').

    ``nearest`` picks source pixel ``floor((i + 0.5) * H / H')`` (half-pixel centres, exact for
    any dtype); ``bilinear``/``bicubic`` use torch with ``align_corners=False`` and no
    antialiasing (as OpenCV's ``INTER_LINEAR``/``INTER_CUBIC``), in float32.
    """
    if mode not in INTERPOLATIONS:
        raise ValueError(f"interpolation: expected one of {INTERPOLATIONS}, got {mode!r}")
    height, width = array.shape[:2]
    if (height, width) == tuple(size):
        return array
    if mode == "nearest":
        rows = np.minimum(
            ((np.arange(size[0]) + 0.5) * (height / size[0])).astype(np.int64), height - 1
        )
        cols = np.minimum(
            ((np.arange(size[1]) + 0.5) * (width / size[1])).astype(np.int64), width - 1
        )
        return array[rows[:, None], cols[None, :]]
    x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    x = x[None, None] if array.ndim == 2 else x.permute(2, 0, 1)[None]
    y = F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=False)[0]
    y = y[0] if array.ndim == 2 else y.permute(1, 2, 0)
    return np.ascontiguousarray(y.numpy())


class Compose:
    """Apply transforms in order, passing the same ``rng`` to each."""

    def __init__(self, transforms: Sequence[Callable[..., Sample]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        for transform in self.transforms:
            sample = transform(sample, rng)
        return sample

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"


class _Geometric:
    """Shared per-key interpolation lookup: the label is always nearest."""

    def __init__(self, interpolation: Mapping[str, str] | None, default: str) -> None:
        self.interpolation = dict(interpolation or {})
        self.default = default
        for key, mode in [*self.interpolation.items(), ("default", default)]:
            if mode not in INTERPOLATIONS:
                raise ValueError(
                    f"interpolation for {key!r}: expected one of {INTERPOLATIONS}, got {mode!r}"
                )

    def mode(self, key: str) -> str:
        return "nearest" if key == LABEL else self.interpolation.get(key, self.default)

    def resize(self, sample: Sample, size: tuple[int, int], keys: Sequence[str]) -> Sample:
        out = dict(sample)
        for key in keys:
            out[key] = resize_array(sample[key], size, self.mode(key))
        return out


class RandomScale(_Geometric):
    """Resize by a random factor in ``scale_range``, keeping the short side >= ``min_short_side``.

    As the paper's recipe (0.5-2.0, short side >= 350): when ``scale * short_side`` falls below
    the floor the factor is raised to ``min_short_side / short_side``. The output size is
    ``round(H * scale), round(W * scale)``; every key gets the same size.
    """

    def __init__(
        self,
        scale_range: tuple[float, float] = (0.5, 2.0),
        min_short_side: int = 0,
        interpolation: Mapping[str, str] | None = None,
        default_interpolation: str = "bicubic",
    ) -> None:
        super().__init__(interpolation, default_interpolation)
        low, high = (float(s) for s in scale_range)
        if not 0 < low <= high:
            raise ValueError(f"scale_range: expected 0 < low <= high, got {scale_range!r}")
        if min_short_side < 0:
            raise ValueError(f"min_short_side: expected >= 0, got {min_short_side}")
        self.scale_range = (low, high)
        self.min_short_side = int(min_short_side)

    def output_size(self, size: tuple[int, int], scale: float) -> tuple[int, int]:
        """The (H', W') for input ``size`` at ``scale``, with the short-side floor applied."""
        short = min(size)
        if short * scale < self.min_short_side:
            scale = self.min_short_side / short
        out = [max(1, round(s * scale)) for s in size]
        i = 0 if size[0] <= size[1] else 1  # rounding must not undercut the floor
        out[i] = max(out[i], self.min_short_side)
        return out[0], out[1]

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        scale = _Draw(rng).uniform(*self.scale_range)
        size = self.output_size(sample_size(sample), scale)
        return self.resize(sample, size, list(sample))

    def __repr__(self) -> str:
        return f"RandomScale(scale_range={self.scale_range}, min_short_side={self.min_short_side})"


class Resize(_Geometric):
    """Resize to a fixed (H, W), for evaluation; by default the label keeps its size.

    The public code resizes only the inputs (``ResizeInputs``) so that scores are computed at
    the label's resolution; the model's logits are upsampled to the label size.
    """

    def __init__(
        self,
        size: int | Sequence[int],
        interpolation: Mapping[str, str] | None = None,
        default_interpolation: str = "bicubic",
        include_label: bool = False,
    ) -> None:
        super().__init__(interpolation, default_interpolation)
        self.size = _pair(size, "size")
        self.include_label = include_label

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        keys = [k for k in sample if self.include_label or k != LABEL]
        sample_size({k: sample[k] for k in keys})
        return self.resize(sample, self.size, keys)

    def __repr__(self) -> str:
        return f"Resize(size={self.size}, include_label={self.include_label})"


class Pad:
    """Pad every key, centred, to at least ``size`` (H, W).

    Fill values are per key (default 0, i.e. the mean of a mean/std-normalised modality); the
    label is filled with ``label_fill`` (the ignore index) so padding never counts in the loss.
    """

    def __init__(
        self,
        size: int | Sequence[int],
        fill: Mapping[str, float] | None = None,
        label_fill: int = 255,
    ) -> None:
        self.size = _pair(size, "size")
        self.fill = dict(fill or {})
        self.label_fill = int(label_fill)

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        height, width = sample_size(sample)
        dh, dw = max(0, self.size[0] - height), max(0, self.size[1] - width)
        if dh == 0 and dw == 0:
            return sample
        pad = ((dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2))
        out = {}
        for key, array in sample.items():
            value = self.label_fill if key == LABEL else self.fill.get(key, 0.0)
            widths = pad if array.ndim == 2 else (*pad, (0, 0))
            out[key] = np.pad(array, widths, mode="constant", constant_values=value)
        return out

    def __repr__(self) -> str:
        return f"Pad(size={self.size}, label_fill={self.label_fill})"


class RandomHorizontalFlip:
    """Mirror every key left-right with probability ``p`` (one draw per sample)."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p: expected a probability in [0, 1], got {p}")
        self.p = float(p)

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        if _Draw(rng).uniform(0.0, 1.0) >= self.p:
            return sample
        return {key: np.ascontiguousarray(array[:, ::-1]) for key, array in sample.items()}

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class RandomCrop:
    """Cut the same random ``size`` (H, W) window out of every key; pad first if smaller."""

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = _pair(size, "size")

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        height, width = sample_size(sample)
        crop_h, crop_w = self.size
        if height < crop_h or width < crop_w:
            raise ValueError(
                f"RandomCrop: sample of size {height}x{width} (HxW) is smaller than the crop "
                f"{crop_h}x{crop_w}; put a Pad to the crop size before it"
            )
        draw = _Draw(rng)
        top = draw.integer(height - crop_h + 1)
        left = draw.integer(width - crop_w + 1)
        return {
            key: np.ascontiguousarray(array[top : top + crop_h, left : left + crop_w])
            for key, array in sample.items()
        }

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size})"


@dataclass(frozen=True)
class AugmentSettings:
    """The training augmentation of the paper (docs/method.md §4), every size a setting.

    Random scale in ``scale_range`` with the short side kept >= ``min_short_side``, pad to
    ``crop_size`` (labels with the ignore index), horizontal flip with ``flip_prob``, random
    ``crop_size`` (H, W) crop. A small-image config might use ``scale_range=(0.75, 1.25),
    min_short_side=0, crop_size=(96, 128)``.
    """

    scale_range: tuple[float, float] = (0.5, 2.0)
    min_short_side: int = 350
    crop_size: tuple[int, int] = (500, 500)
    flip_prob: float = 0.5


def train_transform(
    settings: AugmentSettings,
    interpolation: Mapping[str, str] | None = None,
    fill: Mapping[str, float] | None = None,
    ignore_index: int = 255,
) -> Compose:
    """Scale, pad, flip, crop, in the public code's order."""
    crop = _pair(settings.crop_size, "crop_size")
    return Compose(
        [
            RandomScale(settings.scale_range, settings.min_short_side, interpolation),
            Pad(crop, fill, label_fill=ignore_index),
            RandomHorizontalFlip(settings.flip_prob),
            RandomCrop(crop),
        ]
    )


def eval_transform(
    resize: int | Sequence[int] | None = None,
    interpolation: Mapping[str, str] | None = None,
) -> Compose:
    """No augmentation; optionally a fixed resize of the inputs (the label keeps its size)."""
    return Compose([] if resize is None else [Resize(resize, interpolation)])


class Normalise:
    """Stored values -> float32 network inputs, per modality (see :class:`Modality`).

    Runs first, before the geometric transforms, so that padding with 0 means "the mean".
    The label is cast to int64; keys without a modality pass through unchanged.
    """

    def __init__(self, modalities: Sequence[Modality]) -> None:
        self.modalities = {m.name: m for m in modalities}

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        out = dict(sample)
        for key, array in sample.items():
            if key in self.modalities:
                out[key] = self.modalities[key].normalise(array)
            elif key == LABEL:
                out[key] = array.astype(np.int64, copy=False)
        return out

    def __repr__(self) -> str:
        return f"Normalise({list(self.modalities)})"


def to_tensors(sample: Sample) -> dict[str, torch.Tensor]:
    """(H, W, C) float arrays -> (C, H, W) float32 tensors; the (H, W) label -> int64."""
    out: dict[str, torch.Tensor] = {}
    for key, array in sample.items():
        if key == LABEL:
            out[key] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64))
        else:
            chw = array[:, :, None] if array.ndim == 2 else array
            out[key] = torch.from_numpy(
                np.ascontiguousarray(chw.transpose(2, 0, 1), dtype=np.float32)
            )
    return out
