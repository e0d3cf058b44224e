"""Translation data sets on disk: the Taskonomy sample layout and a folder-per-modality layout.

Both return ``dataset[i] == {input domain: (3, H, W), ..., "target": (3, H, W)}``, float32 in
``[-1, 1]``, inputs in the configured order, plus ``dataset.modalities`` (the input domains),
``dataset.target`` (the target domain's name) and ``dataset.files(i)``. Each image is read,
checked (all domains of a sample share one size), normalised by its :class:`Domain`, then
augmented (training) or resized (evaluation).

Taskonomy (docs/method.md §6, and ``cenfusion synth taskonomy`` output unchanged): one folder per
domain holding ``point_{P}_view_{V}_domain_{DOMAIN}.png``; a split file with one line per sample,
``{domain}/point_407_view_2_domain_{domain}.png``, in which the reader substitutes the domain.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from cenfusion.data.io import (
    check_listed_files,
    check_root,
    read_image,
    read_list_file,
    resolve_list_file,
)
from cenfusion.data.translation.domains import TASKONOMY_PRESETS, Domain, resolve_domain
from cenfusion.data.translation.transforms import TranslationAugment, fixed_resize

PathLike = str | os.PathLike[str]
TARGET = "target"


@dataclass(frozen=True)
class _Entry:
    where: str  # "split_file:line", for error messages
    sample_id: str
    paths: dict[str, Path]  # input domains in order, then "target"


class TranslationFiles(Dataset):
    """Reading, checking, normalising and transforming; subclasses only list the files."""

    def _setup(
        self,
        entries: list[_Entry],
        inputs: Sequence[Domain],
        target: Domain,
        augment: TranslationAugment | None,
        resize: tuple[int, int] | None,
        check_files: bool,
        list_file: Path,
    ) -> None:
        names = [d.name for d in inputs]
        if not names:
            raise ValueError("modalities: expected at least one input domain")
        if len(set(names)) != len(names):
            raise ValueError(f"modalities must be distinct, got {names}")
        if target.name in names:
            raise ValueError(f"target {target.name!r} is also an input modality {names}")
        self._entries = entries
        self.list_file = list_file
        self.domains = {**{d.name: d for d in inputs}, TARGET: target}
        self.modalities = tuple(names)
        self.target = target.name
        self.augment = augment
        self.resize = tuple(resize) if resize is not None else None
        self.interpolation = {k: d.interpolation for k, d in self.domains.items()}
        if check_files:
            check_listed_files(entries, list_file)

    def __len__(self) -> int:
        return len(self._entries)

    def _entry(self, index: int) -> _Entry:
        n = len(self._entries)
        if not -n <= index < n:
            raise IndexError(f"sample index {index} out of range for {n} samples")
        return self._entries[index]

    def files(self, index: int) -> dict[str, Path]:
        """Paths of sample ``index``: each input domain in order, then ``"target"``."""
        return dict(self._entry(index).paths)

    def sample_id(self, index: int) -> str:
        return self._entry(index).sample_id

    def read(self, index: int) -> dict[str, torch.Tensor]:
        """Sample ``index`` normalised to ``(3, H, W)`` in ``[-1, 1]``, before any transform."""
        entry = self._entry(index)
        sample, sizes = {}, {}
        for key, path in entry.paths.items():
            array = read_image(path, entry.where)
            sizes[key] = array.shape[:2]
            normalised = self.domains[key].normalise(array)
            sample[key] = torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))
        first = next(iter(sizes))
        for key, size in sizes.items():
            if size != sizes[first]:
                raise ValueError(
                    f"size mismatch in sample {index} (listed at {entry.where}): "
                    f"{entry.paths[first]} is {sizes[first][0]}x{sizes[first][1]} (HxW) but "
                    f"{entry.paths[key]} is {size[0]}x{size[1]}"
                )
        return sample

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.read(index)
        if self.augment is not None:
            return self.augment(sample, self.interpolation)
        return fixed_resize(sample, self.resize, self.interpolation)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.list_file}, {len(self)} samples, "
            f"{' + '.join(self.modalities)} -> {self.target}, augment={self.augment}, "
            f"resize={self.resize})"
        )


def _domains(
    names: Sequence[str | Domain],
    presets: dict[str, Domain],
    settings: Mapping[str, Mapping] | None,
) -> list[Domain]:
    settings = settings or {}
    return [
        d if isinstance(d, Domain) else resolve_domain(d, presets, dict(settings.get(d, {})))
        for d in names
    ]


class TaskonomyTranslation(TranslationFiles):
    """The Taskonomy sample layout (``taskonomy-sample-model-1``) or ``cenfusion synth taskonomy``.

    ``modalities`` and ``target`` are domain names (folders); ``domain_settings`` replaces
    fields of a domain's preset, e.g. ``{"edge_texture": {"max_value": 65535}}``. The split file
    is looked up in ``root`` first, then relative to the working directory (the public code
    keeps ``train_domain.txt`` in its repository).
    """

    def __init__(
        self,
        root: PathLike,
        list_file: PathLike,
        *,
        modalities: Sequence[str | Domain] = ("reshading", "edge_texture"),
        target: str | Domain = "rgb",
        domain_settings: Mapping[str, Mapping] | None = None,
        augment: TranslationAugment | None = None,
        resize: tuple[int, int] | None = None,
        check_files: bool = True,
    ) -> None:
        self.root = check_root(root)
        inputs = _domains(modalities, TASKONOMY_PRESETS, domain_settings)
        (target_domain,) = _domains([target], TASKONOMY_PRESETS, domain_settings)
        list_path = resolve_list_file(self.root, list_file)
        entries = []
        for line in read_list_file(list_path, ("path",)):
            pattern = line.fields[0]
            if "{domain}" not in pattern:
                raise ValueError(
                    f"{list_path}:{line.number}: expected a path with a '{{domain}}' "
                    f"placeholder (e.g. {{domain}}/point_0_view_0_domain_{{domain}}.png), "
                    f"got {pattern!r}"
                )
            paths = {d.name: self.root / pattern.replace("{domain}", d.directory) for d in inputs}
            paths[TARGET] = self.root / pattern.replace("{domain}", target_domain.directory)
            sample_id = Path(pattern.replace("_domain_{domain}", "")).stem
            entries.append(_Entry(f"{list_path}:{line.number}", sample_id, paths))
        self._setup(entries, inputs, target_domain, augment, resize, check_files, list_path)


class FolderTranslation(TranslationFiles):
    """Bring your own: ``root/<folder>/<id>.<ext>`` per domain, a list file of sample ids.

    Every domain defaults to 8-bit (or 16-bit, by file) images mapped linearly to ``[-1, 1]``;
    ``domain_settings`` (or :class:`Domain` objects) set folders, extensions, log and ranges.
    """

    def __init__(
        self,
        root: PathLike,
        list_file: PathLike,
        *,
        modalities: Sequence[str | Domain],
        target: str | Domain,
        domain_settings: Mapping[str, Mapping] | None = None,
        augment: TranslationAugment | None = None,
        resize: tuple[int, int] | None = None,
        check_files: bool = True,
    ) -> None:
        self.root = check_root(root)
        inputs = _domains(modalities, {}, domain_settings)
        (target_domain,) = _domains([target], {}, domain_settings)
        list_path = resolve_list_file(self.root, list_file)
        entries = []
        for line in read_list_file(list_path, ("id",)):
            sample_id = line.fields[0]
            paths = {
                d.name: self.root / d.directory / f"{sample_id}.{d.ext}"
                for d in [*inputs, target_domain]
            }
            paths[TARGET] = paths.pop(target_domain.name)
            entries.append(_Entry(f"{list_path}:{line.number}", sample_id, paths))
        self._setup(entries, inputs, target_domain, augment, resize, check_files, list_path)
