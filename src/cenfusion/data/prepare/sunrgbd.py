"""SUN RGB-D from its official downloads to the layout ``data.format: sunrgbd`` reads.

The inputs are the two archives of the data set's page, extracted:

- ``SUNRGBD/``: one folder per sample under its sensor (``kv1/NYUdata/NYU0001/``,
  ``kv2/kinect2data/...``, ``realsense/...``, ``xtion/...``), holding ``image/<rgbname>``
  (JPEG) and ``depth_bfx/<depthname>`` (the refined depth, 16-bit PNG), among others.
- ``SUNRGBDtoolbox/``:

  - ``Metadata/SUNRGBDMeta.mat`` (MATLAB v5, SciPy): ``SUNRGBDMeta``, 10335 entries with
    ``rgbpath``, ``rgbname``, ``depthname``, ``K`` (the 3 x 3 intrinsics of the sample's
    camera, four sensors), ...; the paths are absolute paths of the authors'
    machine (``/n/fs/sun3d/data/SUNRGBD/kv2/kinect2data/<sample>/image/0000103.jpg``, some
    with ``//`` before ``image``): a sample is the part after the last ``/SUNRGBD/``, without
    ``image/<name>``.
  - ``Metadata/SUNRGBD2Dseg.mat`` (MATLAB v7.3 = HDF5, h5py; read one map at a time, it does
    not fit in memory whole): ``SUNRGBD2Dseg/seglabel``, one object reference per entry of
    ``SUNRGBDMeta`` (same order) to a ``(W, H)`` map, column-major like every MATLAB array,
    with 0 = unlabelled and 1..37 the classes of ``seg37list``.
  - ``Metadata/seg37list.mat`` (v5): ``seg37list``, the 37 class names.
  - ``traintestSUNRGBD/allsplit.mat`` (v5): ``alltrain`` (5285) and ``alltest`` (5050), sample
    folders as absolute paths (two thirds with a trailing ``/``).

Depth follows the toolbox's reading of ``depth_bfx`` (``read3dPoints.m``): the stored 16 bits
rotated right by 3 are millimetres, clamped at 8 m. The output: ``rgb/%06d.jpg`` (the JPEG as it
is), ``depth/%06d.png`` (16-bit millimetres), ``masks/%06d.png`` (8-bit 0..36, 255 unlabelled),
named by the 1-based index into ``SUNRGBDMeta``; ``train.txt`` (5285) and ``test.txt`` (5050),
``rgb/000001.jpg<TAB>masks/000001.png<TAB>depth/000001.png`` per line, ascending; ``meta.json``
with the class names; with ``hha``, ``hha/%06d.png`` from the depth in metres and each
sample's own ``K`` (:mod:`cenfusion.data.hha`). Written into a temporary folder beside the
output and renamed at the end, so a failure never leaves half a data set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from cenfusion.data.hha import Intrinsics
from cenfusion.data.hha import hha as hha_encoding
from cenfusion.data.io import write_png
from cenfusion.data.prepare.common import (
    PreparedSplits,
    check_output,
    mat_readers,
    open_hdf5,
    require_file,
    variable_names,
    write_staged,
)

NUM_CLASSES = 37
MAX_DEPTH_MM = 8000  # the toolbox clamps depth at 8 m
META = Path("Metadata") / "SUNRGBDMeta.mat"
SEGMENTATION = Path("Metadata") / "SUNRGBD2Dseg.mat"
CLASS_LIST = Path("Metadata") / "seg37list.mat"
SPLITS = Path("traintestSUNRGBD") / "allsplit.mat"


@dataclass(frozen=True)
class Sample:
    """One entry of ``SUNRGBDMeta``: its 1-based index, folder (relative to ``SUNRGBD/``),
    the names of its colour and depth files, and its camera (read where HHA needs it)."""

    index: int
    folder: str
    rgbname: str
    depthname: str
    camera: Intrinsics | None = None


def sample_folder(path: str) -> str:
    """The sample folder relative to ``SUNRGBD/``: what follows the last ``/SUNRGBD/``, with
    doubled slashes and a trailing slash removed (``kv1/NYUdata/NYU0001``)."""
    text = str(path).replace("\\", "/")
    if "/SUNRGBD/" in text:
        text = text.rsplit("/SUNRGBD/", 1)[1]
    return re.sub("/+", "/", text).strip("/")


def decode_depth(stored: np.ndarray) -> np.ndarray:
    """``depth_bfx`` PNG values -> millimetres (uint16): rotate the 16 bits right by 3, clamp
    at 8 m, as the toolbox's ``read3dPoints.m`` does."""
    value = stored.astype(np.uint32)
    millimetres = ((value >> 3) | (value << 13)) & 0xFFFF
    return np.minimum(millimetres, MAX_DEPTH_MM).astype(np.uint16)


def prepare_sunrgbd(
    sunrgbd: str | os.PathLike[str],
    toolbox: str | os.PathLike[str],
    output: str | os.PathLike[str],
    progress: bool = True,
    hha: bool = False,
) -> PreparedSplits:
    """Write the SUN RGB-D layout (module docstring) from the extracted ``SUNRGBD`` and
    ``SUNRGBDtoolbox`` folders; ``hha``: also ``hha/`` (a third modality, read with
    ``data.modality_settings.hha.folder: hha``)."""
    h5py, loadmat = mat_readers()
    sunrgbd, toolbox, output = Path(sunrgbd), Path(toolbox), Path(output)
    if not sunrgbd.is_dir():
        raise FileNotFoundError(f"--sunrgbd {str(sunrgbd)!r} is not a folder (the SUNRGBD data)")
    check_output(output)
    samples = read_meta(toolbox / META, loadmat, cameras=hha)
    train, test = read_split(toolbox / SPLITS, loadmat, samples)
    names = read_class_names(toolbox / CLASS_LIST, loadmat)
    labels_path = toolbox / SEGMENTATION
    with open_hdf5(h5py, labels_path, "--toolbox") as handle:
        references = _label_references(handle, labels_path, len(samples))
        return write_staged(
            output,
            lambda folder: _write(
                folder,
                sunrgbd,
                samples,
                train,
                test,
                names,
                handle,
                references,
                labels_path,
                progress,
                hha,
            ),  # fmt: skip
        )


def read_meta(path: Path, loadmat: Callable, cameras: bool = False) -> list[Sample]:
    """The entries of ``SUNRGBDMeta`` as :class:`Sample` s, in the file's order (``cameras``:
    with each entry's intrinsics ``K``)."""
    data = _load(path, loadmat)
    if "SUNRGBDMeta" not in data:
        raise ValueError(
            f"{str(path)!r} has no 'SUNRGBDMeta' (variables: {variable_names(data)}); expected "
            "SUNRGBDtoolbox/Metadata/SUNRGBDMeta.mat"
        )
    entries = np.atleast_1d(data["SUNRGBDMeta"]).ravel()
    samples = []
    for index, entry in enumerate(entries, start=1):
        try:
            values = {key: str(getattr(entry, key)) for key in ("rgbpath", "rgbname", "depthname")}
        except AttributeError as error:
            raise ValueError(f"{str(path)!r}: entry {index} lacks a field: {error}") from None
        folder = sample_folder(values["rgbpath"]).rsplit("/", 2)[0]  # without image/<name>
        camera = _camera(entry, index, path) if cameras else None
        samples.append(Sample(index, folder, values["rgbname"], values["depthname"], camera))
    return samples


def _camera(entry: Any, index: int, path: Path) -> Intrinsics:
    """An entry's ``K`` (``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``) as :class:`Intrinsics`."""
    try:
        matrix = np.asarray(entry.K, dtype=np.float64)
    except (AttributeError, TypeError, ValueError):
        matrix = np.empty(0)
    if (
        matrix.shape != (3, 3)
        or not np.all(np.isfinite(matrix))
        or min(matrix[0, 0], matrix[1, 1]) <= 0
    ):
        raise ValueError(
            f"{str(path)!r}: entry {index} has no 3 x 3 camera matrix K with positive focal "
            "lengths, which --hha needs"
        )
    fx, fy, cx, cy = (float(matrix[i, j]) for i, j in ((0, 0), (1, 1), (0, 2), (1, 2)))
    return Intrinsics(fx=fx, fy=fy, cx=cx, cy=cy)


def read_split(
    path: Path, loadmat: Callable, samples: list[Sample]
) -> tuple[list[Sample], list[Sample]]:
    """The samples of ``alltrain`` and ``alltest``, matched to ``SUNRGBDMeta`` by folder; every
    sample must be in exactly one of them."""
    data = _load(path, loadmat)
    missing = [key for key in ("alltrain", "alltest") if key not in data]
    if missing:
        raise ValueError(
            f"{str(path)!r} has no {missing[0]!r} (variables: {variable_names(data)}); expected "
            "SUNRGBDtoolbox/traintestSUNRGBD/allsplit.mat"
        )
    by_folder: dict[str, Sample] = {}
    for sample in samples:
        if sample.folder in by_folder:
            raise ValueError(f"SUNRGBDMeta: sample folder {sample.folder!r} appears twice")
        by_folder[sample.folder] = sample
    splits = []
    for key in ("alltrain", "alltest"):
        folders = [sample_folder(text) for text in _strings(data[key])]
        unknown = [f for f in folders if f not in by_folder]
        if unknown:
            raise ValueError(
                f"{str(path)!r}: {key} names {len(unknown)} folder(s) SUNRGBDMeta lacks, e.g. "
                f"{unknown[0]!r}"
            )
        splits.append(sorted((by_folder[f] for f in folders), key=lambda s: s.index))
    train, test = splits
    both = {s.index for s in train} & {s.index for s in test}
    if both:
        raise ValueError(f"{str(path)!r}: sample {min(both)} is in alltrain and alltest")
    left = [s for s in samples if s.index not in {x.index for x in (*train, *test)}]
    if left:
        raise ValueError(
            f"{str(path)!r}: {len(left)} sample(s) of SUNRGBDMeta are in neither split, e.g. "
            f"{left[0].folder!r}"
        )
    return train, test


def read_class_names(path: Path, loadmat: Callable) -> list[str]:
    """The 37 names of ``seg37list``: label value k is ``names[k - 1]``."""
    data = _load(path, loadmat)
    if "seg37list" not in data:
        raise ValueError(f"{str(path)!r} has no 'seg37list' (variables: {variable_names(data)})")
    names = _strings(data["seg37list"])
    if len(names) != NUM_CLASSES:
        raise ValueError(f"{str(path)!r}: seg37list has {len(names)} names, expected 37")
    return names


def _load(path: Path, loadmat: Callable) -> dict[str, Any]:
    require_file(path, "--toolbox")
    try:
        return loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except (ValueError, NotImplementedError, TypeError) as error:
        raise ValueError(f"{str(path)!r} is not a MATLAB v5 file: {error}") from None


def _strings(value: Any) -> list[str]:
    """The strings of a MATLAB cell array, however SciPy nested them."""
    if isinstance(value, str):
        return [value]
    found: list[str] = []
    for item in np.asarray(value, dtype=object).ravel():
        found += _strings(item)
    return found


def _label_references(handle: Any, path: Path, count: int) -> list[Any]:
    group = handle.get("SUNRGBD2Dseg")
    if group is None or "seglabel" not in group:
        raise ValueError(
            f"{str(path)!r} has no SUNRGBD2Dseg/seglabel (variables: {sorted(handle.keys())}); "
            "expected SUNRGBDtoolbox/Metadata/SUNRGBD2Dseg.mat"
        )
    references = list(np.asarray(group["seglabel"]).ravel())
    if len(references) != count:
        raise ValueError(
            f"{str(path)!r}: seglabel has {len(references)} entries, SUNRGBDMeta {count}"
        )
    return references


def _label(handle: Any, references: list[Any], sample: Sample, path: Path) -> np.ndarray:
    """Sample's 37-class map as ``(H, W)`` uint8 0..36 and 255 unlabelled."""
    raw = np.asarray(handle[references[sample.index - 1]][()]).T
    if raw.size and (raw.min() < 0 or raw.max() > NUM_CLASSES or not np.all(raw == np.round(raw))):
        raise ValueError(
            f"{str(path)!r}: seglabel of sample {sample.index} ({sample.folder}) holds values "
            f"outside the integers 0..37"
        )
    raw = raw.astype(np.int64)
    return np.where(raw > 0, raw - 1, 255).astype(np.uint8)


def _write(
    root: Path,
    sunrgbd: Path,
    samples: list[Sample],
    train: list[Sample],
    test: list[Sample],
    names: list[str],
    handle: Any,
    references: list[Any],
    labels_path: Path,
    progress: bool,
    with_hha: bool = False,
) -> PreparedSplits:
    for folder in ("rgb", "depth", "masks", *(("hha",) if with_hha else ())):
        (root / folder).mkdir()
    result = PreparedSplits(root, len(train), len(test), dataset="SUN RGB-D", val_name="test")
    histogram: dict[int, int] = {}
    for sample in tqdm(samples, desc="prepare sunrgbd", unit="image", disable=not progress):
        folder = sunrgbd / sample.folder
        rgb_path, depth_path = (
            folder / "image" / sample.rgbname,
            folder / "depth_bfx" / sample.depthname,
        )
        for path in (rgb_path, depth_path):
            if not path.is_file():
                raise FileNotFoundError(f"sample {sample.index}: {str(path)!r} does not exist")
        with Image.open(rgb_path) as image:
            size = image.size  # (W, H)
        with Image.open(depth_path) as image:
            stored = np.asarray(image)
        if stored.dtype != np.uint16 and not (stored.dtype == np.int32 and stored.max() < 65536):
            raise ValueError(f"{str(depth_path)!r}: expected a 16-bit PNG, got {stored.dtype}")
        mask = _label(handle, references, sample, labels_path)
        for what, shape in (("depth_bfx", stored.shape), ("seglabel", mask.shape)):
            if shape != (size[1], size[0]):
                raise ValueError(
                    f"sample {sample.index} ({sample.folder}): {what} is {shape[1]}x{shape[0]}, "
                    f"the colour image {size[0]}x{size[1]}"
                )
        name = f"{sample.index:06d}"
        shutil.copyfile(rgb_path, root / "rgb" / f"{name}.jpg")
        millimetres = decode_depth(stored)
        write_png(root / "depth" / f"{name}.png", millimetres)
        write_png(root / "masks" / f"{name}.png", mask)
        if with_hha:
            assert sample.camera is not None  # read_meta(cameras=True)
            depth_m = millimetres.astype(np.float64) / 1000
            write_png(root / "hha" / f"{name}.png", hha_encoding(depth_m, sample.camera))
        _count(mask, result, histogram)
    result.class_pixels = histogram
    for list_name, split in (("train.txt", train), ("test.txt", test)):
        (root / list_name).write_text("".join(_lines(split)))
    meta = {
        "source": "SUNRGBD + SUNRGBDtoolbox",
        "depth": "millimetres (depth_bfx rotated right by 3 bits, clamped at 8 m)",
        "classes": names,
        "ignore_index": 255,
    }
    (root / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return result


def _lines(split: Iterable[Sample]) -> list[str]:
    return [f"rgb/{s.index:06d}.jpg\tmasks/{s.index:06d}.png\tdepth/{s.index:06d}.png\n"
            for s in split]  # fmt: skip


def _count(mask: np.ndarray, result: PreparedSplits, histogram: dict[int, int]) -> None:
    values, counts = np.unique(mask, return_counts=True)
    for value, number in zip(values.tolist(), counts.tolist(), strict=True):
        if value == 255:
            result.unlabelled_pixels += number
        else:
            histogram[value] = histogram.get(value, 0) + number
