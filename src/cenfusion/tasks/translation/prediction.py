"""Translation of image files and the sample grids of a run.

Each input is read with the training data's per-domain preprocessing and resized to what the
U-Net takes; the ensemble's translation goes to the output PNG and each branch's to
``*_<modality>.png``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from cenfusion.config import Config
from cenfusion.data.io import modality_files, read_image
from cenfusion.data.translation import TASKONOMY_PRESETS, Domain, fixed_resize, resolve_domain
from cenfusion.engine.samples import write_grid
from cenfusion.engine.speed import autocast_context
from cenfusion.models.translation import CENPix2Pix
from cenfusion.tasks.translation.evaluation import generator_mode, to_uint8


def input_domains(config: Config) -> dict[str, Domain]:
    """Each input modality's :class:`~cenfusion.data.translation.Domain`, as the data set reads
    it (the Taskonomy presets for ``data.format: taskonomy``, plus ``data.modality_settings``)."""
    presets = TASKONOMY_PRESETS if config.data.format == "taskonomy" else {}
    settings = config.data.modality_settings or {}
    return {
        name: resolve_domain(name, presets, dict(settings.get(name, {})))
        for name in config.model.modalities
    }


def prediction_size(config: Config, size: tuple[int, int]) -> tuple[int, int] | None:
    """The size the generator sees: ``data.val_resize`` if set; else the images' own size when
    the U-Net can take it (a multiple of ``2 ** num_downs``), else ``data.crop_size``."""
    if config.data.val_resize:
        return tuple(config.data.val_resize)
    step = 2**config.model.num_downs
    if size[0] % step == 0 and size[1] % step == 0:
        return None
    return tuple(config.data.crop_size)


def read_inputs(
    model: CENPix2Pix, config: Config, files: Mapping[str, str | Path]
) -> dict[str, Tensor]:
    """``{modality: (C, H, W)}`` read from ``files`` as the model was trained to see them
    (each domain's normalisation, resized for the U-Net)."""
    ordered = modality_files(model.modalities, files)
    domains = input_domains(config)
    sample, sizes = {}, {}
    for name, path in ordered.items():
        array = read_image(path, "command line")
        sizes[name] = array.shape[:2]
        normalised = domains[name].normalise(array)
        sample[name] = torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))
    if len(set(sizes.values())) > 1:
        named = {k: str(ordered[k]) for k in sizes}
        raise ValueError(f"modalities differ in size: {named} {sizes}")
    size = prediction_size(config, next(iter(sizes.values())))
    sample = fixed_resize(sample, size, {k: d.interpolation for k, d in domains.items()})
    return {name: tensor.float() for name, tensor in sample.items()}


@torch.no_grad()
def translate_files(
    model: CENPix2Pix, config: Config, files: Mapping[str, str | Path], output: str | Path
) -> dict[str, Path]:
    """Translate one input set ``{modality: file}``: the ensemble to ``output`` and each
    branch to ``<output stem>_<modality>.png``; returns ``{output name: path}``."""
    sample = read_inputs(model, config, files)
    device = next(model.parameters()).device
    mode = generator_mode(model, config.eval.generator_mode)
    with mode, autocast_context(config.train.precision, device):
        outputs = model({m: sample[m][None] for m in model.modalities})
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    paths = {"ensemble": output}
    paths.update({m: output.with_name(f"{output.stem}_{m}.png") for m in model.modalities})
    for name, path in paths.items():
        Image.fromarray(to_uint8(outputs[name][0])).save(path)
    return paths


@torch.no_grad()
def save_samples(
    model: CENPix2Pix,
    dataset: Dataset,
    path: str | Path,
    count: int = 4,
    mode: str = "eval",
) -> Path:
    """A PNG: one row per validation image; titled columns: the inputs, each branch's
    translation, the ensemble, the real target."""
    rows = []
    with generator_mode(model, mode):
        for index in range(min(count, len(dataset))):
            sample = dataset[index]
            outputs = model({m: sample[m][None] for m in model.modalities})
            columns = [sample[m] for m in model.modalities]
            columns += [outputs[name][0] for name in [*model.modalities, "ensemble"]]
            columns.append(sample["target"])
            rows.append([to_uint8(c) for c in columns])
    titles = [*(f"input\n{m}" for m in model.modalities)]
    titles += [*(f"branch\n{m}" for m in model.modalities), "ensemble"]
    titles.append(f"target\n{model.target or ''}")
    return write_grid(rows, titles, path)
