"""``SyntheticScenes``: the procedural scenes as an in-memory torch ``Dataset`` (no files)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from cenfusion.data.synthetic.formats import MODALITIES, decode, validate_modalities
from cenfusion.data.synthetic.render import render
from cenfusion.data.synthetic.scene import Scene, sample_scene

DEFAULT_SIZE: tuple[int, int] = (120, 160)


def _check_index(seed: int, index: int) -> None:
    if int(seed) < 0 or int(index) < 0:
        raise ValueError(f"seed and index must be non-negative integers, got {seed}, {index}")


def scene_at(seed: int, index: int) -> Scene:
    """Scene ``index`` of the data set ``seed``: a pure function of the two (not of the size)."""
    _check_index(seed, index)
    return sample_scene(np.random.default_rng([int(seed), int(index)]))


def render_codes(
    seed: int,
    index: int,
    size: tuple[int, int] = DEFAULT_SIZE,
    modalities: Sequence[str] = MODALITIES,
    void_holes: bool = False,
) -> dict[str, np.ndarray]:
    """Stored codes of scene ``(seed, index)`` at ``size``: what the writers put in PNG files.

    The sensor noise has its own generator, ``[seed, index, 1]``, so it is deterministic too.
    """
    size = check_size(size)
    noise = np.random.default_rng([int(seed), int(index), 1])
    return render(scene_at(seed, index), size, noise, validate_modalities(modalities), void_holes)


def render_arrays(
    seed: int,
    index: int,
    size: tuple[int, int] = DEFAULT_SIZE,
    modalities: Sequence[str] = MODALITIES,
    void_holes: bool = False,
) -> dict[str, np.ndarray]:
    """Decoded float32 arrays (H, W[, C]) of scene ``(seed, index)``, plus the uint8 ``label``."""
    codes = render_codes(seed, index, size, modalities, void_holes)
    return {k: (v if k == "label" else decode(k, v)) for k, v in codes.items()}


def check_size(size: object) -> tuple[int, int]:
    """Validate an image size given as (H, W)."""
    try:
        height, width = (int(s) for s in size)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"size: expected (height, width), got {size!r}") from None
    if height < 2 or width < 2:
        raise ValueError(f"size: expected height and width >= 2, got {size!r}")
    return height, width


class SyntheticScenes(Dataset):
    """``n`` procedural indoor scenes with aligned modalities and semantic labels.

    Item ``i`` is a pure function of ``(seed, i, size)``, so workers and ordering do not matter,
    and it equals file ``i`` (1-based id ``i + 1`` for NYUDv2) written by the ``cenfusion synth``
    writers with the same seed and size. Each item is a dict of float32 tensors, only for the
    requested ``modalities``: ``rgb`` (3, H, W) in [0, 1], ``depth`` (1, H, W) in metres (0 is a
    hole), ``normal`` (3, H, W) in [-1, 1], ``reshading`` (1, H, W), ``texture`` (3, H, W),
    ``edge_occlusion`` (1, H, W), ``edge_texture`` (1, H, W); plus ``label`` (H, W) int64 with
    255 on depth holes when ``void_holes``. ``transform`` (optional) maps the dict to anything.
    """

    def __init__(
        self,
        n: int,
        modalities: Sequence[str] = ("rgb", "depth"),
        seed: int = 0,
        size: tuple[int, int] = DEFAULT_SIZE,
        void_holes: bool = False,
        transform: Callable[[dict[str, torch.Tensor]], object] | None = None,
    ) -> None:
        if int(n) < 0:
            raise ValueError(f"n: expected a non-negative number of scenes, got {n}")
        _check_index(seed, 0)
        self.n = int(n)
        self.modalities = validate_modalities(modalities)
        self.seed = int(seed)
        self.size = check_size(size)
        self.void_holes = bool(void_holes)
        self.transform = transform

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -self.n <= index < self.n:
            raise IndexError(f"scene index {index} out of range for {self.n} scenes")
        index = index % self.n
        arrays = render_arrays(self.seed, index, self.size, self.modalities, self.void_holes)
        item: dict[str, torch.Tensor] = {}
        for name in self.modalities:
            a = arrays[name]
            a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
            item[name] = torch.from_numpy(np.ascontiguousarray(a))
        item["label"] = torch.from_numpy(arrays["label"].astype(np.int64))
        return self.transform(item) if self.transform is not None else item  # type: ignore[return-value]

    def __repr__(self) -> str:
        return (
            f"SyntheticScenes(n={self.n}, modalities={self.modalities}, seed={self.seed}, "
            f"size={self.size}, void_holes={self.void_holes})"
        )
