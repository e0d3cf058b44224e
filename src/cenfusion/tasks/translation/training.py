"""Training a CEN pix2pix model: the model and data a config describes, the losses, the step.

The losses are the paper's (docs/method.md), with one shared conditional discriminator ``D``:

- ``D``: ``sum_m 1/2 [BCE(D(x_m, y), 1) + BCE(D(x_m, G_m), 0)]``;
- ``G``: ``sum_m BCE(D(x_m, G_m), 1) + l1_weight * sum_{outputs, ensemble incl.} L1(out, y)``
  plus the L1 sparsity term ``lam * sum |gamma|`` on the exchange sites (counted once).

Each step runs the generator once: ``D`` is updated on the detached translations, then ``G``
against the updated ``D`` (the public code runs ``G`` a second time for its step, drawing new
dropout masks and updating the running statistics twice; the losses are the same). Adam with
betas (0.5, 0.999) for both. Under torchrun both networks are wrapped in DDP; every loss is a
mean over equal shards, so the averaged gradients are those of the global batch (dropout masks
aside).
"""

from __future__ import annotations

import copy
import functools
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from cenfusion.config import Config
from cenfusion.data.translation import FolderTranslation, TaskonomyTranslation, TranslationAugment
from cenfusion.engine import distributed
from cenfusion.engine.checkpoint import restore_rng_state, rng_state
from cenfusion.engine.faults import (
    NonFiniteLossError,
    StopRequests,
    restore_buffers,
    snapshot_buffers,
)
from cenfusion.engine.loop import StepResult
from cenfusion.engine.speed import apply_speed_options, autocast_context
from cenfusion.models import create_model
from cenfusion.models.fusion import auxiliary_loss
from cenfusion.models.translation import CENPix2Pix
from cenfusion.nn import StackedOutputs, sparsity_penalty

DATA_FORMATS = {"taskonomy": TaskonomyTranslation, "folder": FolderTranslation}


def build_model(config: Config) -> CENPix2Pix:
    """The generator and discriminator ``config.model`` describes."""
    m = config.model
    options: dict[str, Any] = {
        "modalities": tuple(m.modalities),
        "target": m.target,
        "ngf": m.ngf,
        "ndf": m.ndf,
        "num_downs": m.num_downs,
        "insnorm_threshold": m.insnorm_threshold,
        "exchange": m.exchange,
        "exchange_stages": m.exchange_stages,
        "first_block_norm": m.first_block_norm,
        "first_block_site": m.first_block_site,
        "fusion": m.fusion,
        "fusion_stages": m.fusion_stages,
    }
    if m.dropout is not None:
        options["dropout"] = m.dropout
    return create_model("translation", m.arch, **options)


def build_datasets(
    config: Config, splits: tuple[str, ...] = ("train", "val")
) -> dict[str, Dataset]:
    """The configured splits; training gets the paper's resize-crop-flip augmentation."""
    d = config.data
    if config.model.target is None:
        raise ValueError("model.target: expected the output domain (e.g. rgb), got nothing")
    augment = TranslationAugment(tuple(d.load_size), tuple(d.crop_size), d.flip_prob)
    lists = {"train": d.train_list, "val": d.val_list, "test": d.test_list}
    if d.format not in DATA_FORMATS:
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
        datasets[split] = DATA_FORMATS[d.format](
            d.root,
            lists[split],
            modalities=tuple(config.model.modalities),
            target=config.model.target,
            domain_settings=d.modality_settings,
            augment=augment if split == "train" else None,
            resize=tuple(d.val_resize) if split != "train" and d.val_resize else None,
        )
    return datasets


def check_image_sizes(config: Config) -> None:
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


def build_optimisers(model: CENPix2Pix, config: Config) -> dict[str, torch.optim.Optimizer]:
    """Adam for the generator and for the discriminator, by their checkpoint keys."""
    o = config.optim
    betas = tuple(o.betas)
    if len(betas) != 2:
        raise ValueError(f"optim.betas: expected two numbers, got {o.betas}")
    return {
        "g_optimiser": torch.optim.Adam(
            model.generator.parameters(), lr=o.generator_lr, betas=betas
        ),
        "d_optimiser": torch.optim.Adam(
            model.discriminator.parameters(), lr=o.discriminator_lr, betas=betas
        ),
    }


def rate_factor(config: Config, epoch: int) -> float:
    """The factor of both learning rates in ``epoch`` (0-based): 1, then linearly down over
    the last ``optim.decay_epochs`` of ``train.epochs``; an epoch after them keeps the last."""
    decay, epochs = config.optim.decay_epochs, config.train.epochs
    if not 0 <= decay <= epochs:
        raise ValueError(f"optim.decay_epochs: expected 0..train.epochs ({epochs}), got {decay}")
    into_decay = min(epoch, epochs - 1) - (epochs - decay) + 1
    return 1.0 - max(0, into_decay) / (decay + 1)


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
    model: CENPix2Pix, x: Tensor, y: Tensor, outputs: StackedOutputs, config: Config
) -> tuple[Tensor, dict[str, float]]:
    """Adversarial + ``l1_weight`` x L1 of every branch and the ensemble + sparsity term (+ the
    alignment baseline's MMD loss, ``align_weight`` x). ``outputs``: the generator's stacked
    translations and their ensemble."""
    num = model.num_modalities
    fake, ensemble_output = outputs
    logits = model.discriminator(x, fake).float()
    adversarial = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits)) * num
    target = y.float()
    branches = F.l1_loss(fake, target.repeat(num, 1, 1, 1)) * num
    ensemble = F.l1_loss(ensemble_output, target)
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


class TranslationStep:
    """One discriminator update, then one generator update, on one global batch."""

    def __init__(
        self,
        model: CENPix2Pix,
        optimisers: dict[str, torch.optim.Optimizer],
        config: Config,
        device: torch.device,
    ) -> None:
        self.model = model
        self.g_optimiser = optimisers["g_optimiser"]
        self.d_optimiser = optimisers["d_optimiser"]
        self.config = config
        self.device = device
        wrap = functools.partial(distributed.wrap, device=device)
        # the generator under channels_last/DDP/compile as configured; D under DDP
        self.generate = apply_speed_options(model.generator, config, wrap=wrap)
        self.discriminate = distributed.wrap(model.discriminator, device)
        rate_factor(config, 0)  # refuses a bad optim.decay_epochs before training

    def start_epoch(self, epoch: int) -> None:
        """Training mode and the epoch's learning rates (``optim.decay_epochs``)."""
        self.model.train()
        factor = rate_factor(self.config, epoch)
        o = self.config.optim
        rates = ((self.g_optimiser, o.generator_lr), (self.d_optimiser, o.discriminator_lr))
        for optimiser, rate in rates:
            for group in optimiser.param_groups:
                group["lr"] = rate * factor

    def learning_rates(self) -> dict[str, Any]:
        return {
            "lr_generator": self.g_optimiser.param_groups[0]["lr"],
            "lr_discriminator": self.d_optimiser.param_groups[0]["lr"],
        }

    def __call__(
        self,
        micro_batches: list[dict[str, Tensor]],
        epoch: int = 0,
        step: int = 0,
        stop: StopRequests | None = None,
    ) -> StepResult:
        """With ``train.accumulate_steps`` > 1 the discriminator's gradient is accumulated over
        the micro-batches' translations (made without a graph), then the generator is run again
        on each micro-batch, with the random state it had the first time (the same dropout
        masks), against the updated discriminator: the step of one large batch, at the cost of
        one more generator forward per micro-batch.
        """
        config, model = self.config, self.model
        generator, disc = model.generator, model.discriminator
        precision = config.train.precision
        count = len(micro_batches)
        scale = 1.0 / count
        requested = stop is not None and stop.requested
        kept = None
        if config.train.nonfinite == "skip":
            kept = (
                snapshot_buffers(generator),
                copy.deepcopy(disc.state_dict()),
                copy.deepcopy(self.d_optimiser.state_dict()),
            )
        pairs = []
        for batch in micro_batches:
            x = generator.stack({m: batch[m] for m in model.modalities})
            pairs.append((x, batch["target"].to(self.device)))
        states: list[dict[str, Any]] = []
        if count == 1:
            with autocast_context(precision, self.device):
                outputs = [self.generate(pairs[0][0], stacked=True)]
        else:
            buffers = snapshot_buffers(generator)
            outputs = []
            for x, _ in pairs:
                states.append(rng_state())
                with torch.no_grad(), autocast_context(precision, self.device):
                    outputs.append(generator(x, stacked=True))
            restore_buffers(generator, buffers)  # the second pass updates them once
        disc.requires_grad_(True)
        self.d_optimiser.zero_grad(set_to_none=True)
        d_total, finite = 0.0, True
        for index, ((x, y), output) in enumerate(zip(pairs, outputs, strict=True)):
            with distributed.sync_gradients(self.discriminate, index == count - 1):
                with autocast_context(precision, self.device):
                    d_loss = discriminator_loss(self.discriminate, x, y, output.branches)
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
        for index, ((x, y), output) in enumerate(zip(pairs, outputs, strict=True)):
            with distributed.sync_gradients(self.generate, index == count - 1):
                if count > 1:
                    restore_rng_state(states[index])
                    with autocast_context(precision, self.device):
                        output = self.generate(x, stacked=True)
                with autocast_context(precision, self.device):
                    g_loss, parts = generator_loss(model, x, y, output, config)
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
