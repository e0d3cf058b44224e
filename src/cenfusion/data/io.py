"""Reading list files and images, with errors that name the file and the list-file line.

A data set of thousands of files fails in a worker process far from the user; every error raised
here therefore says which file, which list-file line and what was expected, so the message alone
is enough to find the culprit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

EIGHT_BIT_MODES = frozenset({"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX"})
"""PIL modes whose samples are 8-bit (or 1-bit): a depth map in one of these has lost range."""

SINGLE_CHANNEL_MODES = frozenset({"1", "L", "P", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"})


@dataclass(frozen=True)
class ListLine:
    """One sample of a list file: its 1-based line number and its tab-separated fields."""

    number: int
    fields: tuple[str, ...]


def check_root(root: str | os.PathLike[str]) -> Path:
    """Return ``root`` as a Path, or raise naming it if it is missing or not a folder."""
    path = Path(root)
    if not path.exists():
        raise FileNotFoundError(f"data root not found: {path}")
    if not path.is_dir():
        raise NotADirectoryError(f"data root is not a folder: {path}")
    return path


def resolve_list_file(root: Path, list_file: str | os.PathLike[str]) -> Path:
    """Find a list file: absolute as given, else relative to ``root`` first, then to the cwd.

    Root first because a list normally ships with its data (``cenfusion synth`` writes
    ``OUT/train.txt``); the cwd fallback covers lists kept elsewhere (the public code keeps them
    in its repository).
    """
    path = Path(list_file)
    candidates = [path] if path.is_absolute() else [root / path, path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = " or ".join(str(c) for c in dict.fromkeys(candidates))
    raise FileNotFoundError(f"list file not found: {list_file} (looked for {tried})")


def check_listed_files(entries, list_file: Path) -> None:
    """Refuse a data set whose list names missing files: count them, name the first and its line.

    ``entries`` carry ``paths`` (name -> Path) and ``where`` (``list_file:line``).
    """
    missing = [(e, p) for e in entries for p in e.paths.values() if not p.is_file()]
    if missing:
        entry, path = missing[0]
        raise FileNotFoundError(
            f"{len(missing)} file(s) listed in {list_file} not found; first: {path} "
            f"(listed at {entry.where})"
        )


def read_list_file(path: Path, columns: tuple[str, ...]) -> list[ListLine]:
    """Parse a list file of ``len(columns)`` tab-separated fields per line; skip blank lines.

    Raises ValueError naming the file and the line for a wrong column count or an empty field,
    and naming the file when it holds no sample at all.
    """
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"list file {path}: not UTF-8 text ({err})") from None
    expected = len(columns)
    lines: list[ListLine] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        fields = tuple(field.strip() for field in raw.split("\t"))
        if len(fields) != expected:
            hint = ""
            if len(fields) < expected and len(raw.split()) == expected:
                hint = " (columns must be separated by tabs, not spaces)"
            raise ValueError(
                f"{path}:{number}: expected {expected} tab-separated column(s) "
                f"({', '.join(columns)}), got {len(fields)}: {raw!r}{hint}"
            )
        if not all(fields):
            raise ValueError(f"{path}:{number}: empty column in {raw!r}")
        lines.append(ListLine(number, fields))
    if not lines:
        raise ValueError(f"list file {path} is empty: expected one sample per line")
    return lines


def _open(path: Path, where: str) -> Image.Image:
    """Open and fully decode an image, turning every failure into an error naming the file."""
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path} (listed at {where})")
    try:
        with Image.open(path) as image:
            image.load()  # decode now, so a truncated file fails here and not later
            return image
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ValueError(
            f"cannot read image {path} (listed at {where}): corrupt or truncated? "
            f"{type(err).__name__}: {err}"
        ) from None


def read_modality(
    path: Path, *, where: str, name: str, channels: int, require_16bit: bool = False
) -> np.ndarray:
    """Read one modality image as an (H, W, channels) array of its stored integers or floats.

    A single-channel file fills a 3-channel modality by tiling (as the public code does); a
    3-channel file fills a 1-channel modality only when its channels are equal (a grey image saved
    as RGB); anything else is refused. With ``require_16bit`` an 8-bit file is refused: a depth
    map quantised to 8 bits read at the 16-bit scale would be 256x too small.
    """
    image = _open(path, where)
    mode = image.mode
    if require_16bit and mode in EIGHT_BIT_MODES:
        raise ValueError(
            f"{name}: {path} (listed at {where}) is an 8-bit image (PIL mode {mode}), expected a "
            f"16-bit PNG; read at the 16-bit depth scale its values would be 256x too small. "
            f"Re-export it as 16-bit, or allow 8-bit depth and set the depth scale to match"
        )
    if mode in ("1", "CMYK", "YCbCr", "LAB", "HSV", "LA", "La", "PA", "RGBA", "RGBa", "RGBX"):
        image = image.convert("L" if mode in ("1", "LA", "La") else "RGB")
    elif mode == "P":
        image = image.convert("RGB" if channels == 3 else "L")
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[2] == channels:
        return array
    if channels == 3 and array.shape[2] == 1:
        return np.repeat(array, 3, axis=2)
    if channels == 1 and array.shape[2] == 3:
        if np.array_equal(array[:, :, 0], array[:, :, 1]) and np.array_equal(
            array[:, :, 0], array[:, :, 2]
        ):
            return array[:, :, :1]
        raise ValueError(
            f"{name}: {path} (listed at {where}) has 3 different colour channels (PIL mode "
            f"{mode}), expected a single-channel image"
        )
    raise ValueError(
        f"{name}: {path} (listed at {where}) has {array.shape[2]} channels (PIL mode {mode}), "
        f"expected {channels}"
    )


def read_label(path: Path, *, where: str) -> np.ndarray:
    """Read a mask of class indices as an (H, W) int64 array; colour-coded masks are refused."""
    image = _open(path, where)
    if image.mode not in SINGLE_CHANNEL_MODES or image.mode == "F":
        raise ValueError(
            f"label: {path} (listed at {where}) has PIL mode {image.mode}, expected a "
            f"single-channel PNG of class indices (a colour-coded mask must be converted first)"
        )
    # A palette ("P") mask stores the class index as the palette index, which asarray returns.
    return np.asarray(image).astype(np.int64)


def check_label_values(
    label: np.ndarray, *, path: Path, where: str, num_classes: int, ignore_index: int
) -> None:
    """Raise naming the file if a label holds values outside ``[0, num_classes)`` and ignore."""
    if label.size == 0 or (label.min() >= 0 and label.max() < num_classes):
        return
    bad_mask = ((label < 0) | (label >= num_classes)) & (label != ignore_index)
    if not bad_mask.any():
        return
    bad = np.unique(label[bad_mask])
    shown = ", ".join(str(int(v)) for v in bad[:10]) + (", ..." if len(bad) > 10 else "")
    raise ValueError(
        f"label: {path} (listed at {where}) holds value(s) {shown} outside 0..{num_classes - 1} "
        f"(num_classes={num_classes}; {ignore_index} = ignore is allowed)"
    )


def read_image(path: Path, where: str) -> np.ndarray:
    """Read an image as ``(H, W, 1|3)`` stored values; errors name the file and its line."""
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path} (listed at {where})")
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("RGBA", "P", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
                image = image.convert("RGB")
            elif image.mode in ("1", "LA", "La"):
                image = image.convert("L")
            array = np.asarray(image)
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ValueError(
            f"cannot read image {path} (listed at {where}): corrupt or truncated? "
            f"{type(err).__name__}: {err}"
        ) from None
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[2] not in (1, 3):
        raise ValueError(
            f"{path} (listed at {where}) has {array.shape[2]} channels, expected 1 or 3"
        )
    return array


def modality_files(
    modalities: Sequence[str], files: Mapping[str, str | os.PathLike[str]]
) -> dict[str, Path]:
    """``files`` (one per modality, e.g. from ``--rgb a.png --depth b.png``) in the order of
    ``modalities``, after checking that each modality has exactly one existing file."""
    missing = [m for m in modalities if m not in files]
    extra = [m for m in files if m not in modalities]
    if missing or extra:
        raise ValueError(
            f"this model takes modalities {list(modalities)} (one --<modality> PATH each); "
            f"missing {missing}, unexpected {extra}"
        )
    ordered = {name: Path(files[name]) for name in modalities}
    for name, path in ordered.items():
        if not path.is_file():
            raise FileNotFoundError(f"--{name}: {str(path)!r} does not exist")
    return ordered


def write_png(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Save a uint8 ``(H, W[, 3])`` or uint16 ``(H, W)`` array as a PNG, losslessly."""
    if array.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{path}: expected a uint8 or uint16 array, got {array.dtype}")
    Image.fromarray(array).save(path, compress_level=1)  # L, RGB or I;16
