"""NYUDv2 from its official files to the layout ``data.format: nyudv2`` reads.

The inputs are what the data set's pages offer for download:

- ``nyu_depth_v2_labeled.mat``: MATLAB v7.3, i.e. HDF5 (read with h5py). As h5py sees it,
  ``images`` is ``(N, 3, W, H)`` uint8, ``depths`` ``(N, W, H)`` float metres and ``labels``
  ``(N, W, H)`` uint16 (0 = unlabelled, 1..894 the raw classes); MATLAB stores column-major,
  so every image is transposed to ``H x W`` here. N = 1449, W x H = 640 x 480.
- ``splits.mat`` (MATLAB v5, read with SciPy): ``trainNdxs`` (795 x 1) and ``testNdxs``
  (654 x 1), 1-based indices into the labelled set.
- ``classMapping40.mat`` (Gupta et al.'s 40 classes): ``mapClass`` (1 x 894), raw class k ->
  1..40.

The output: ``rgb/%06d.png``, ``depth/%06d.png`` (16-bit, metres x 5000, as the loader
expects), ``masks/%06d.png`` (8-bit 0..39 and 255 unlabelled; with ``classes=894`` 16-bit raw
classes 0..893 and 65535 unlabelled, read with ``data.ignore_index: 65535``), named by the
1-based index, and ``train.txt`` / ``val.txt`` in the public code's form
(``rgb/000003.png<TAB>masks/000003.png<TAB>depth/000003.png``, ascending). Everything is
written into a temporary folder beside the output and renamed at the end, so a failure never
leaves half a data set.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from cenfusion.data.hha import NYUDV2_KINECT
from cenfusion.data.hha import hha as hha_encoding
from cenfusion.data.io import write_png
from cenfusion.data.prepare.common import (
    PreparedSplits,
    check_output,
    loadmat_file,
    mat_readers,
    open_hdf5,
    variable_names,
    write_staged,
)

DEPTH_SCALE = 5000  # stored value = metres x 5000, the loader's default data.depth_scale
NUM_RAW_CLASSES = 894


def prepare_nyudv2(
    labeled: str | os.PathLike[str],
    splits: str | os.PathLike[str],
    output: str | os.PathLike[str],
    mapping: str | os.PathLike[str] | None = None,
    classes: int = 40,
    progress: bool = True,
    hha: bool = False,
) -> PreparedSplits:
    """Write the NYUDv2 layout of the public code from the official files (module docstring).

    ``classes``: 40 (needs ``mapping``, ``classMapping40.mat``) or 894 (the raw classes).
    ``hha``: also write ``hha/%06d.png`` (:mod:`cenfusion.data.hha`, the NYUDv2 Kinect's
    intrinsics), a third modality read with ``data.modality_settings.hha.folder: hha``.
    """
    if classes not in (40, NUM_RAW_CLASSES):
        raise ValueError(f"--classes: expected 40 or {NUM_RAW_CLASSES}, got {classes}")
    if classes == 40 and mapping is None:
        raise ValueError("--mapping classMapping40.mat is needed for 40 classes (or --classes 894)")
    h5py, loadmat = mat_readers()
    output = Path(output)
    check_output(output)
    train_ids, val_ids = read_splits(splits, loadmat)
    to_class = _class_map(mapping, loadmat) if classes == 40 else _raw_classes
    labeled = Path(labeled)
    with open_hdf5(h5py, labeled, "--labeled") as handle:
        images, depths, labels = _datasets(handle, labeled)
        count = images.shape[0]
        outside = [i for i in (*train_ids, *val_ids) if not 1 <= i <= count]
        if outside:
            raise ValueError(
                f"--splits {str(splits)!r}: index {outside[0]} is outside 1..{count}, the samples "
                f"of {labeled.name}"
            )
        return write_staged(
            output,
            lambda folder: _write(
                folder,
                images,
                depths,
                labels,
                train_ids,
                val_ids,
                to_class,
                classes,
                progress,
                hha,
                labeled,
            ),  # fmt: skip
        )


def read_splits(path: str | os.PathLike[str], loadmat: Callable) -> tuple[list[int], list[int]]:
    """The 1-based train and test indices of ``splits.mat``, ascending."""
    data = loadmat_file(path, "--splits", loadmat)
    missing = [key for key in ("trainNdxs", "testNdxs") if key not in data]
    if missing:
        raise ValueError(
            f"--splits {str(path)!r} has no {missing[0]!r} (variables: {variable_names(data)})"
        )
    train, test = (_indices(data[k], k, path) for k in ("trainNdxs", "testNdxs"))
    overlap = sorted(set(train) & set(test))
    if overlap:
        raise ValueError(f"--splits {str(path)!r}: index {overlap[0]} is in both splits")
    return train, test


def _indices(value: Any, key: str, path: str | os.PathLike[str]) -> list[int]:
    """The 1-based indices of one split, ascending; each a whole number, each once."""
    values = np.asarray(value, dtype=np.float64).ravel()
    fractional = values[values != np.round(values)]
    if fractional.size:
        raise ValueError(f"--splits {str(path)!r}: {key} holds {fractional[0]:g}, expected "
                         "whole 1-based indices")  # fmt: skip
    indices = sorted(int(i) for i in values)
    repeated = sorted(i for i, n in Counter(indices).items() if n > 1)
    if repeated:
        raise ValueError(f"--splits {str(path)!r}: {key} lists index {repeated[0]} more than once")
    return indices


def _class_map(
    path: str | os.PathLike[str], loadmat: Callable
) -> Callable[[np.ndarray], np.ndarray]:
    """raw (0..894) -> 0..39, 255 for unlabelled, from ``mapClass``."""
    data = loadmat_file(path, "--mapping", loadmat)
    if "mapClass" not in data:
        raise ValueError(
            f"--mapping {str(path)!r} has no 'mapClass' (variables: {variable_names(data)})"
        )
    mapped = np.asarray(data["mapClass"]).ravel().astype(np.int64)
    if mapped.size != NUM_RAW_CLASSES or mapped.min() < 0 or mapped.max() > 40:
        raise ValueError(
            f"--mapping {str(path)!r}: mapClass must map {NUM_RAW_CLASSES} raw classes to 0..40, "
            f"got {mapped.size} values in {mapped.min()}..{mapped.max()}"
        )
    table = np.full(NUM_RAW_CLASSES + 1, 255, dtype=np.uint8)  # raw 0: unlabelled
    table[1:] = np.where(mapped > 0, mapped - 1, 255)

    def to_class(raw: np.ndarray) -> np.ndarray:
        return table[raw]

    return to_class


def _raw_classes(raw: np.ndarray) -> np.ndarray:
    """raw (0..894) -> 0..893 as uint16, 65535 for unlabelled."""
    return np.where(raw > 0, raw.astype(np.int64) - 1, 65535).astype(np.uint16)


def _datasets(handle: Any, path: Path) -> tuple[Any, Any, Any]:
    missing = [k for k in ("images", "depths", "labels") if k not in handle]
    if missing:
        raise ValueError(
            f"--labeled {str(path)!r} has no {missing[0]!r} (variables: {sorted(handle.keys())}); "
            "expected nyu_depth_v2_labeled.mat"
        )
    images, depths, labels = handle["images"], handle["depths"], handle["labels"]
    count = images.shape[0]
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            f"--labeled {str(path)!r}: images has shape {images.shape}, expected (N, 3, W, H)"
        )
    expected = (count, *images.shape[2:])
    for name, data in (("depths", depths), ("labels", labels)):
        if tuple(data.shape) != expected:
            raise ValueError(
                f"--labeled {str(path)!r}: {name} has shape {tuple(data.shape)}, expected "
                f"{expected} like images"
            )
    return images, depths, labels


def _write(
    root: Path,
    images: Any,
    depths: Any,
    labels: Any,
    train_ids: list[int],
    val_ids: list[int],
    to_class: Callable[[np.ndarray], np.ndarray],
    classes: int,
    progress: bool,
    with_hha: bool = False,
    source: Path = Path("nyu_depth_v2_labeled.mat"),
) -> PreparedSplits:
    for folder in ("rgb", "depth", "masks", *(("hha",) if with_hha else ())):
        (root / folder).mkdir()
    result = PreparedSplits(root, len(train_ids), len(val_ids))
    histogram: dict[int, int] = {}
    ids = sorted({*train_ids, *val_ids})
    for index in tqdm(ids, desc="prepare nyudv2", unit="image", disable=not progress):
        name = f"{index:06d}.png"
        rgb = np.ascontiguousarray(np.asarray(images[index - 1]).transpose(2, 1, 0))
        depth_m = np.asarray(depths[index - 1]).T
        depth = np.clip(np.round(depth_m * DEPTH_SCALE), 0, 65535).astype(np.uint16)
        raw = np.asarray(labels[index - 1]).T.astype(np.int64)
        if raw.size and (raw.min() < 0 or raw.max() > NUM_RAW_CLASSES):
            raise ValueError(
                f"--labeled {str(source)!r}: labels of sample {index} hold "
                f"{raw.max() if raw.max() > NUM_RAW_CLASSES else raw.min()}, outside 0..894 "
                "(0 unlabelled, 1..894 the raw classes)"
            )
        mask = to_class(raw)
        write_png(root / "rgb" / name, rgb.astype(np.uint8))
        write_png(root / "depth" / name, np.ascontiguousarray(depth))
        write_png(root / "masks" / name, np.ascontiguousarray(mask))
        if with_hha:
            write_png(root / "hha" / name, hha_encoding(depth_m.astype(np.float64), NYUDV2_KINECT))
        unlabelled = 255 if mask.dtype == np.uint8 else 65535
        values, counts = np.unique(mask, return_counts=True)
        for value, number in zip(values.tolist(), counts.tolist(), strict=True):
            if value == unlabelled:
                result.unlabelled_pixels += number
            else:
                histogram[value] = histogram.get(value, 0) + number
    result.class_pixels = histogram
    for list_name, split in (("train.txt", train_ids), ("val.txt", val_ids)):
        lines = [f"rgb/{i:06d}.png\tmasks/{i:06d}.png\tdepth/{i:06d}.png\n" for i in split]
        (root / list_name).write_text("".join(lines))
    meta = {
        "source": "nyu_depth_v2_labeled.mat",
        "depth_scale": 1 / DEPTH_SCALE,
        "classes": classes,
        "ignore_index": 255 if classes == 40 else 65535,
    }
    (root / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return result
