"""The paper's translation augmentation, on a sample dict of ``(3, H, W)`` tensors.

Training: resize every image to ``load_size`` (286x286), cut the same random ``crop_size``
(256x256) window out of all of them, flip all horizontally with probability ``flip_prob``.
Evaluation: an optional fixed resize (256x256). Draws come from torch's global RNG, in the order
crop top, crop left, flip, so ``torch.manual_seed`` makes an epoch reproducible and the engine
resumes it exactly. Resizing is bilinear with antialiasing (as PIL's, which the public code
uses) on float values.

Difference on purpose: the public code draws the crop corner from ``0..286 - 256 + 1``
inclusive, one past the last valid corner, so PIL pads a zero row or column now and then;
ours stays inside the image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

Sample = dict[str, Tensor]


def _pair(size: int | Sequence[int], what: str) -> tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    height, width = (int(s) for s in size)
    if height < 1 or width < 1:
        raise ValueError(f"{what}: expected positive (height, width), got {size!r}")
    return height, width


def resize_image(image: Tensor, size: tuple[int, int], mode: str = "bilinear") -> Tensor:
    """``(C, H, W)`` -> ``(C, *size)``; bilinear/bicubic with antialiasing when shrinking."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    if mode == "nearest":
        return F.interpolate(image[None], size=size, mode="nearest-exact")[0]
    return F.interpolate(image[None], size=size, mode=mode, align_corners=False, antialias=True)[0]


@dataclass(frozen=True)
class TranslationAugment:
    """Resize to ``load_size``, random ``crop_size`` crop, horizontal flip (docs/method.md §4)."""

    load_size: tuple[int, int] = (286, 286)
    crop_size: tuple[int, int] = (256, 256)
    flip_prob: float = 0.5

    def __post_init__(self) -> None:
        load = _pair(self.load_size, "load_size")
        crop = _pair(self.crop_size, "crop_size")
        if crop[0] > load[0] or crop[1] > load[1]:
            raise ValueError(f"crop_size {crop} must fit inside load_size {load}")
        if not 0.0 <= self.flip_prob <= 1.0:
            raise ValueError(f"flip_prob: expected a probability, got {self.flip_prob}")
        object.__setattr__(self, "load_size", load)
        object.__setattr__(self, "crop_size", crop)

    def __call__(self, sample: Sample, interpolation: Mapping[str, str] | None = None) -> Sample:
        modes = interpolation or {}
        resized = {
            k: resize_image(v, self.load_size, modes.get(k, "bilinear")) for k, v in sample.items()
        }
        (load_h, load_w), (crop_h, crop_w) = self.load_size, self.crop_size
        top = int(torch.randint(load_h - crop_h + 1, ()).item())
        left = int(torch.randint(load_w - crop_w + 1, ()).item())
        flip = float(torch.rand(()).item()) < self.flip_prob
        out = {}
        for key, image in resized.items():
            image = image[:, top : top + crop_h, left : left + crop_w]
            out[key] = (image.flip(-1) if flip else image).contiguous()
        return out


def fixed_resize(
    sample: Sample, size: tuple[int, int] | None, interpolation: Mapping[str, str] | None = None
) -> Sample:
    """Evaluation: every image to ``size`` (or unchanged when None)."""
    if size is None:
        return sample
    modes = interpolation or {}
    return {k: resize_image(v, size, modes.get(k, "bilinear")) for k, v in sample.items()}
