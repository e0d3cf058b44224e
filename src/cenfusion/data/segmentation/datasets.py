"""Segmentation data sets on disk: NYUDv2, SUN RGB-D and a folder-per-modality layout.

All three return the same sample form, the one the training engine consumes::

    dataset[i] == {"rgb": (3, H, W) float32, "depth": (1, H, W) float32, ..., "label": (H, W) int64}

with the modalities in the configured order, plus ``dataset.modalities`` (names),
``dataset.num_classes``, ``dataset.ignore_index`` and ``dataset.files(i)`` (the paths of sample
``i``). Item ``i`` is read, checked (sizes agree, labels in range), normalised per modality
(:class:`Modality`), then transformed: the paper's augmentation when ``augment`` is given
(random draws from torch's global RNG, see :mod:`.transforms`), else nothing or a fixed resize.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from cenfusion.data.io import (
    check_label_values,
    check_listed_files,
    check_root,
    read_label,
    read_list_file,
    read_modality,
    resolve_list_file,
)
from cenfusion.data.segmentation.modalities import (
    IMAGENET_RGB,
    LABEL,
    NYUDV2_DEPTH,
    SUNRGBD_DEPTH,
    Modality,
)
from cenfusion.data.segmentation.transforms import (
    AugmentSettings,
    Normalise,
    Sample,
    eval_transform,
    to_tensors,
    train_transform,
)

PathLike = str | os.PathLike[str]
Transform = Callable[[Sample], Sample]


@dataclass(frozen=True)
class _Entry:
    where: str  # "list_file:line", for error messages
    sample_id: str
    paths: dict[str, Path]  # modalities in order, then "label"


class SegmentationFiles(Dataset):
    """Common machinery of the on-disk layouts: reading, checking, normalising, transforming.

    Subclasses only turn their layout into entries (paths per sample) and call :meth:`_setup`.
    """

    def _setup(
        self,
        entries: list[_Entry],
        modalities: Sequence[Modality],
        num_classes: int,
        ignore_index: int,
        augment: AugmentSettings | None,
        resize: int | tuple[int, int] | None,
        transform: Transform | None,
        check_files: bool,
        list_file: Path,
    ) -> None:
        specs = tuple(modalities)
        if not specs:
            raise ValueError("modalities: expected at least one modality")
        names = tuple(m.name for m in specs)
        if len(set(names)) != len(names):
            raise ValueError(f"modalities must be distinct, got {names}")
        if int(num_classes) < 1:
            raise ValueError(f"num_classes: expected >= 1, got {num_classes}")
        if 0 <= ignore_index < num_classes:
            raise ValueError(
                f"ignore_index {ignore_index} is a valid class for num_classes={num_classes}"
            )
        if transform is not None and (augment is not None or resize is not None):
            raise ValueError("give either transform, or augment/resize, not both")
        self._entries = entries
        self.list_file = list_file
        self.specs = specs
        self.modalities = names
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.augment = augment
        self.normalise = Normalise(specs)
        if transform is not None:
            self.transform: Transform = transform
        elif augment is not None:
            self.transform = train_transform(
                augment, self.interpolation, self.pad_values, self.ignore_index
            )
        else:
            self.transform = eval_transform(resize, self.interpolation)
        if check_files:
            self._check_files()

    @property
    def interpolation(self) -> dict[str, str]:
        """Resize mode per key (the label is always nearest)."""
        return {m.name: m.interpolation for m in self.specs} | {LABEL: "nearest"}

    @property
    def pad_values(self) -> dict[str, float]:
        """Padding per modality, in normalised units (the label pads with ``ignore_index``)."""
        return {m.name: m.pad_value for m in self.specs}

    def _check_files(self) -> None:
        check_listed_files(self._entries, self.list_file)

    def __len__(self) -> int:
        return len(self._entries)

    def _entry(self, index: int) -> _Entry:
        n = len(self._entries)
        if not -n <= index < n:
            raise IndexError(f"sample index {index} out of range for {n} samples")
        return self._entries[index]

    def files(self, index: int) -> dict[str, Path]:
        """Paths of sample ``index``: each modality in order, then ``"label"``."""
        return dict(self._entry(index).paths)

    def sample_id(self, index: int) -> str:
        """A short name for sample ``index`` (for prediction file names)."""
        return self._entry(index).sample_id

    def read(self, index: int) -> Sample:
        """The stored arrays of sample ``index``, checked: modalities (H, W, C), label (H, W).

        Raises FileNotFoundError / ValueError naming the file and its list-file line for a
        missing or unreadable file, a size mismatch or an out-of-range label.
        """
        entry = self._entry(index)
        sample: Sample = {}
        for spec in self.specs:
            sample[spec.name] = read_modality(
                entry.paths[spec.name],
                where=entry.where,
                name=spec.name,
                channels=spec.channels,
                require_16bit=spec.require_16bit,
            )
        label_path = entry.paths[LABEL]
        sample[LABEL] = read_label(label_path, where=entry.where)
        reference = self.specs[0].name
        ref_size = sample[reference].shape[:2]
        for key, array in sample.items():
            if array.shape[:2] != ref_size:
                raise ValueError(
                    f"size mismatch in sample {index} (listed at {entry.where}): "
                    f"{entry.paths[reference]} is {ref_size[0]}x{ref_size[1]} (HxW) but "
                    f"{entry.paths[key]} is {array.shape[0]}x{array.shape[1]} (HxW)"
                )
        check_label_values(
            sample[LABEL],
            path=label_path,
            where=entry.where,
            num_classes=self.num_classes,
            ignore_index=self.ignore_index,
        )
        return sample

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return to_tensors(self.transform(self.normalise(self.read(index))))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.list_file}, {len(self)} samples, "
            f"modalities={self.modalities}, num_classes={self.num_classes}, "
            f"transform={self.transform!r})"
        )


class ListFileSegmentation(SegmentationFiles):
    """A root folder plus a list file of tab-separated paths (relative to the root) per sample.

    ``columns`` names the list file's columns in order: each modality's name, ``"label"``, and
    any others (ignored). The NYUDv2 lists of the public code are ``rgb, label, depth``. A
    modality with a ``folder`` that no column names is read from
    ``root/<folder>/<label stem>.<ext>`` (a depth encoding written beside the data set, such as
    ``cenfusion prepare --hha``).
    ``list_file`` is looked up in ``root`` first, then relative to the working directory.
    """

    def __init__(
        self,
        root: PathLike,
        list_file: PathLike,
        *,
        modalities: Sequence[Modality],
        columns: Sequence[str],
        num_classes: int,
        ignore_index: int = 255,
        augment: AugmentSettings | None = None,
        resize: int | tuple[int, int] | None = None,
        transform: Transform | None = None,
        check_files: bool = True,
    ) -> None:
        self.root = check_root(root)
        columns = tuple(columns)
        # a modality the list does not name comes from its own folder (``Modality.folder``),
        # the same file stem as the label: e.g. NYUDv2 plus ``hha/000003.png``
        beside = {m.name: m for m in modalities if m.name not in columns and m.folder}
        for name in [*(m.name for m in modalities if m.name not in beside), LABEL]:
            if columns.count(name) != 1:
                raise ValueError(
                    f"columns {columns}: expected exactly one column named {name!r} "
                    f"(one per modality, plus 'label')"
                )
        self.columns = columns
        list_path = resolve_list_file(self.root, list_file)
        keys = [*(m.name for m in modalities), LABEL]
        entries = []
        for line in read_list_file(list_path, columns):
            paths = {
                key: self.root / line.fields[columns.index(key)]
                for key in keys
                if key not in beside
            }
            stem = paths[LABEL].stem
            for name, spec in beside.items():
                paths[name] = self.root / spec.folder / f"{stem}.{spec.ext}"
            entries.append(_Entry(f"{list_path}:{line.number}", paths[LABEL].stem, paths))
        self._setup(
            entries,
            modalities,
            num_classes,
            ignore_index,
            augment,
            resize,
            transform,
            check_files,
            list_path,
        )


def _resolve(
    modalities: Sequence[str | Modality], presets: dict[str, Modality]
) -> tuple[Modality, ...]:
    """Names -> presets; Modality objects pass through unchanged."""
    specs = []
    for m in modalities if not isinstance(modalities, str) else (modalities,):
        if isinstance(m, Modality):
            specs.append(m)
        elif m in presets:
            specs.append(presets[m])
        else:
            raise ValueError(
                f"unknown modality {m!r}: known names are {', '.join(presets)}; pass a "
                f"Modality(...) for anything else"
            )
    return tuple(specs)


class NYUDv2(ListFileSegmentation):
    """NYUDv2 as the public code ships it (docs/method.md §6), and ``cenfusion synth nyudv2``.

    ``root`` holds ``rgb/``, ``masks/``, ``depth/``; each list line is
    ``rgb/000003.png<TAB>masks/000003.png<TAB>depth/000003.png``. Masks hold 0..39 and 255 =
    void. Depth is a 16-bit PNG of metres x 5000, returned as metres (``x * depth_scale``); an
    8-bit depth PNG is refused unless ``allow_8bit_depth``. RGB is ImageNet-normalised. Pass
    ``Modality`` objects in ``modalities`` to override a preset entirely (then ``depth_scale``
    and ``allow_8bit_depth`` do not apply to it).
    """

    def __init__(
        self,
        root: PathLike,
        list_file: PathLike,
        *,
        modalities: Sequence[str | Modality] = ("rgb", "depth"),
        num_classes: int = 40,
        depth_scale: float = 1.0 / 5000.0,
        allow_8bit_depth: bool = False,
        columns: Sequence[str] = ("rgb", "label", "depth"),
        ignore_index: int = 255,
        augment: AugmentSettings | None = None,
        resize: int | tuple[int, int] | None = None,
        transform: Transform | None = None,
        check_files: bool = True,
    ) -> None:
        depth = dataclasses.replace(
            NYUDV2_DEPTH, scale=depth_scale, require_16bit=not allow_8bit_depth
        )
        super().__init__(
            root,
            list_file,
            modalities=_resolve(modalities, {"rgb": IMAGENET_RGB, "depth": depth}),
            columns=columns,
            num_classes=num_classes,
            ignore_index=ignore_index,
            augment=augment,
            resize=resize,
            transform=transform,
            check_files=check_files,
        )


class SUNRGBD(ListFileSegmentation):
    """SUN RGB-D: 37 classes, the same list style as NYUDv2 (``rgb, label, depth`` columns).

    Depth defaults to the public code's per-image min-max stretch to [0, 255]
    (:data:`SUNRGBD_DEPTH`), since the sensors' units differ; give ``depth_scale`` for a fixed
    linear scale instead (e.g. 1/10000 for depth stored in 0.1 mm). List files, class count and
    columns are settings.
    """

    def __init__(
        self,
        root: PathLike,
        list_file: PathLike,
        *,
        modalities: Sequence[str | Modality] = ("rgb", "depth"),
        num_classes: int = 37,
        depth_scale: float | None = None,
        allow_8bit_depth: bool = False,
        columns: Sequence[str] = ("rgb", "label", "depth"),
        ignore_index: int = 255,
        augment: AugmentSettings | None = None,
        resize: int | tuple[int, int] | None = None,
        transform: Transform | None = None,
        check_files: bool = True,
    ) -> None:
        if depth_scale is None:
            depth = dataclasses.replace(SUNRGBD_DEPTH, require_16bit=not allow_8bit_depth)
        else:
            depth = dataclasses.replace(
                NYUDV2_DEPTH, scale=depth_scale, require_16bit=not allow_8bit_depth
            )
        super().__init__(
            root,
            list_file,
            modalities=_resolve(modalities, {"rgb": IMAGENET_RGB, "depth": depth}),
            columns=columns,
            num_classes=num_classes,
            ignore_index=ignore_index,
            augment=augment,
            resize=resize,
            transform=transform,
            check_files=check_files,
        )


class FolderSegmentation(SegmentationFiles):
    """Bring your own pair: ``root/<folder>/<id>.<ext>`` per modality, ``root/label/<id>.png``.

    The label folder and extension are settings. The list file holds one sample id per line
    (e.g. ``00042``, or ``scene1/00042``). Each :class:`Modality` says its folder (default: its
    name), extension, channel count (1 or 3) and normalisation, e.g. for RGB-thermal::

        FolderSegmentation(root, "train.txt", num_classes=9, modalities=[
            IMAGENET_RGB,
            Modality("thermal", channels=1, scale=1 / 255, interpolation="bilinear"),
        ])
    """

    def __init__(
        self,
        root: PathLike,
        list_file: PathLike,
        *,
        modalities: Sequence[Modality],
        num_classes: int,
        label_folder: str = "label",
        label_ext: str = "png",
        ignore_index: int = 255,
        augment: AugmentSettings | None = None,
        resize: int | tuple[int, int] | None = None,
        transform: Transform | None = None,
        check_files: bool = True,
    ) -> None:
        self.root = check_root(root)
        specs = tuple(modalities)
        list_path = resolve_list_file(self.root, list_file)
        entries = []
        for line in read_list_file(list_path, ("id",)):
            sample_id = line.fields[0]
            paths = {m.name: self.root / m.directory / f"{sample_id}.{m.ext}" for m in specs}
            paths[LABEL] = self.root / label_folder / f"{sample_id}.{label_ext}"
            entries.append(_Entry(f"{list_path}:{line.number}", sample_id, paths))
        self._setup(
            entries,
            specs,
            num_classes,
            ignore_index,
            augment,
            resize,
            transform,
            check_files,
            list_path,
        )
