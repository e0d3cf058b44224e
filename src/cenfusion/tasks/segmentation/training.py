"""Training a CEN segmentation model: the model and data a config describes, the loss, the step.

The loss is the paper's: cross-entropy (ignore 255) on every branch and on the ensemble, the
logits bilinearly upsampled to the label size by the model itself, summed, plus the L1 term on
the exchange sites (``train.l1_per_output`` counts it once per output, as the public code
does). SGD with an encoder and a decoder learning rate per stage of the schedule.

Under torchrun every process trains on its slice of each global batch and DDP averages the
gradients (:mod:`cenfusion.engine.distributed`); with several processes or accumulated
micro-batches the cross-entropies are normalised by the valid pixels of the whole global batch,
so that a step's gradient is the single-process one (exactly so when batch statistics do not
depend on the split: frozen or synchronised BN, and no dropout; see the README).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from cenfusion.config import Config
from cenfusion.data.segmentation import SUNRGBD, AugmentSettings, FolderSegmentation, NYUDv2
from cenfusion.data.segmentation.modalities import (
    IMAGENET_RGB,
    NYUDV2_DEPTH,
    SUNRGBD_DEPTH,
    Modality,
)
from cenfusion.engine import distributed
from cenfusion.engine.faults import (
    NonFiniteLossError,
    StopRequests,
    restore_buffers,
    snapshot_buffers,
)
from cenfusion.engine.loop import BatchPlan, StepResult
from cenfusion.engine.speed import apply_speed_options, autocast_context
from cenfusion.models import create_model
from cenfusion.models.fusion import auxiliary_loss
from cenfusion.models.segmentation import CENSegmentationModel
from cenfusion.nn import (
    ModalityNorm,
    StackedOutputs,
    absent_rows,
    exchange_sites,
    l1_term_count,
    sample_presence,
    sparsity_penalty,
)

DATA_FORMATS = ("nyudv2", "sunrgbd", "folder")


def build_model(config: Config) -> CENSegmentationModel:
    """The network ``config.model`` describes (``model.pretrained`` loaded when given)."""
    m = config.model
    if m.dropout is not None and not 0.0 <= m.dropout < 1.0:
        raise ValueError(f"model.dropout: expected a probability in [0, 1), got {m.dropout}")
    options: dict[str, Any] = {
        "backbone": m.backbone,
        "num_classes": m.num_classes,
        "modalities": tuple(m.modalities),
        "bn_threshold": m.bn_threshold,
        "exchange": m.exchange,
        "exchange_stages": m.exchange_stages,
        "exchange_norms": m.exchange_norms,
        "site_stages": m.site_stages,
        "pretrained": m.pretrained,
        "fusion": m.fusion,
        "fusion_stages": m.fusion_stages,
        "share_convs": m.share_convs,
        "private_norms": m.private_norms,
    }
    if m.dropout is not None:
        options["dropout"] = m.dropout
    if m.output_stride is not None:
        options["output_stride"] = m.output_stride
    if m.arch == "refinenet":
        options["rcu_residual"] = m.rcu_residual
    if m.stage_channels is not None:
        options["stage_channels"] = tuple(m.stage_channels)
    if m.decoder_channels is not None:  # RefineNet's (deepest, other); PSPNet's [width]
        options["decoder_channels"] = tuple(m.decoder_channels)
    return create_model("segmentation", m.arch, **options)


def modality_specs(config: Config) -> list[Modality]:
    """How each modality is read and normalised: the one answer for training and prediction.

    ``rgb`` and ``depth`` of the ``nyudv2`` and ``sunrgbd`` formats start from the data set's
    presets (ImageNet-normalised RGB; NYUDv2 depth in metres at ``data.depth_scale``; SUN
    RGB-D depth min-max stretched per image, as the public code feeds it), which
    ``data.modality_settings[name]`` amends (SUN RGB-D depth in metres, from the millimetres
    ``cenfusion prepare sunrgbd`` writes: ``{norm: affine, scale: 0.001}``); any other
    modality, and every modality of the ``folder`` format, is
    ``Modality(name, **data.modality_settings[name])``.
    """
    d = config.data
    require_16bit = not d.allow_8bit_depth
    if d.format == "sunrgbd":
        depth = dataclasses.replace(SUNRGBD_DEPTH, require_16bit=require_16bit)
    else:
        depth = dataclasses.replace(NYUDV2_DEPTH, scale=d.depth_scale, require_16bit=require_16bit)
    presets = {} if d.format == "folder" else {"rgb": IMAGENET_RGB, "depth": depth}
    specs = []
    for name in config.model.modalities:
        settings = d.modality_settings.get(name, {})
        valid = [f.name for f in dataclasses.fields(Modality) if f.name != "name"]
        unknown = [key for key in settings if key not in valid]
        if unknown:
            raise ValueError(
                f"data.modality_settings.{name}: unknown setting {unknown[0]!r}; valid "
                f"settings: {valid}"
            )
        if name in presets:
            specs.append(dataclasses.replace(presets[name], **settings))
        else:
            specs.append(Modality(name, **settings))
    return specs


def build_datasets(
    config: Config, splits: tuple[str, ...] = ("train", "val")
) -> dict[str, Dataset]:
    """The configured data set's splits; training gets the paper's augmentation."""
    d = config.data
    if d.format not in DATA_FORMATS:
        raise ValueError(f"data.format: expected 'nyudv2', 'sunrgbd' or 'folder', got {d.format!r}")
    augment = AugmentSettings(
        scale_range=tuple(d.scale_range),
        min_short_side=d.min_short_side,
        crop_size=tuple(d.crop_size),
        flip_prob=d.flip_prob,
    )
    lists = {"train": d.train_list, "val": d.val_list, "test": d.test_list}
    specs = modality_specs(config)
    placed = {name for name, setting in d.modality_settings.items() if setting.get("folder")}
    others = [m for m in config.model.modalities if m not in ("rgb", "depth", *placed)]
    if d.format != "folder" and others:
        raise ValueError(
            f"model.modalities {list(config.model.modalities)}: the {d.format} lists hold rgb "
            f"and depth only, not {others}; give each other modality its folder "
            f"(data.modality_settings.{others[0]}.folder, e.g. hha) or use data.format: folder"
        )
    datasets = {}
    for split in splits:
        common: dict[str, Any] = {
            "modalities": specs,
            "num_classes": config.model.num_classes,
            "ignore_index": d.ignore_index,
            "augment": augment if split == "train" else None,
            "resize": tuple(d.val_resize) if split != "train" and d.val_resize else None,
        }
        if d.format == "folder":
            datasets[split] = FolderSegmentation(
                d.root, lists[split], label_folder=d.label_folder, label_ext=d.label_ext, **common
            )
        else:
            layout = NYUDv2 if d.format == "nyudv2" else SUNRGBD
            datasets[split] = layout(d.root, lists[split], **common)
    return datasets


def model_inputs(batch: dict[str, Tensor], modalities: tuple[str, ...]) -> dict[str, Tensor]:
    """The model's inputs of a collated sample dict (the label stays behind)."""
    return {m: batch[m] for m in modalities}


def segmentation_loss(
    model: CENSegmentationModel,
    outputs: StackedOutputs,
    label: Tensor,
    config: Config,
    valid_pixels: float | None = None,
    share: float = 1.0,
    present: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Sum of the branch and ensemble cross-entropies plus the L1 term (and the alignment
    baseline's MMD loss, ``train.align_weight`` x).

    ``present``: the ``(M, B)`` presence mask the outputs were computed under (modality
    dropout): the branch of a modality a sample lacks is not counted (its labels are ignored).

    ``outputs``: the model's stacked outputs at label size (``model(inputs, label.shape[-2:],
    stacked=True)``). Each cross-entropy is a mean over the labelled pixels of ``label``; with
    ``valid_pixels`` it is their sum divided by ``valid_pixels`` instead (a micro-batch's or a
    process's part of the global batch's mean), and the batch-independent terms are multiplied
    by ``share`` (``1 / accumulate_steps``), so that the parts of one step add up to the global
    loss.
    """
    ignore = config.data.ignore_index
    num = model.num_modalities
    branches_logits, ensemble_logits = outputs
    repeated = label.repeat(num, 1, 1)
    if present is not None:
        repeated = repeated.masked_fill(
            absent_rows(present).to(label.device).view(-1, 1, 1), ignore
        )
    if valid_pixels is None:
        # one cross-entropy over the stacked branches: mean over M equal parts, times M = sum
        branches = F.cross_entropy(branches_logits, repeated, ignore_index=ignore) * num
        ensemble = F.cross_entropy(ensemble_logits, label, ignore_index=ignore)
    else:
        branches = F.cross_entropy(branches_logits, repeated, ignore_index=ignore, reduction="sum")
        branches = branches / valid_pixels
        ensemble = F.cross_entropy(ensemble_logits, label, ignore_index=ignore, reduction="sum")
        ensemble = ensemble / valid_pixels
    penalty = sparsity_penalty(model, config.train.lam, config.train.sparsity)
    count = l1_term_count(num, config.train.l1_per_output)
    if count != 1:
        penalty = penalty * count
    alignment = config.train.align_weight * auxiliary_loss(model)
    if share != 1.0:
        penalty, alignment = penalty * share, alignment * share
    total = branches + ensemble + penalty + alignment
    return total, {
        "loss": float(total.detach()),
        "ce_branches": float(branches.detach()),
        "ce_ensemble": float(ensemble.detach()),
        "l1": float(penalty.detach()),
        "align": float(alignment.detach()),
    }


def stage_at(config: Config, epoch: int) -> int:
    """Index of the schedule stage that ``epoch`` (0-based) falls in."""
    end = 0
    for index, stage in enumerate(config.optim.stages):
        end += stage.epochs
        if epoch < end:
            return index
    return len(config.optim.stages) - 1


def total_epochs(config: Config) -> int:
    return sum(stage.epochs for stage in config.optim.stages)


def build_optimiser(model: CENSegmentationModel, config: Config) -> torch.optim.SGD:
    """SGD over an ``encoder`` and a ``decoder`` group; with ``optim.gamma_lr_multiplier`` k != 1
    a third group ``gamma`` holds the exchange sites' scaling factors at k x the encoder's rate
    (the ablations with private norms keep their sites; the fusion baselines and the shared
    norm have none, so k changes nothing there, as ``train.lam`` does not)."""
    o = config.optim
    multiplier = o.gamma_lr_multiplier
    if not (math.isfinite(multiplier) and multiplier > 0):
        raise ValueError(f"optim.gamma_lr_multiplier: expected a positive number, got {multiplier}")
    stage = o.stages[0]
    encoder = model.encoder_parameters()
    gammas: list[nn.Parameter] = []
    if multiplier != 1.0:  # models without exchange sites (the baselines) have none to scale
        gammas = [norm.weight for _, norm in exchange_sites(model)]
        chosen = {id(p) for p in gammas}
        encoder = [p for p in encoder if id(p) not in chosen]
    groups = [
        {"params": encoder, "lr": stage.encoder_lr, "name": "encoder"},
        {"params": model.decoder_parameters(), "lr": stage.decoder_lr, "name": "decoder"},
    ]
    if gammas:
        groups.append({"params": gammas, "lr": stage.encoder_lr * multiplier, "name": "gamma"})
    return torch.optim.SGD(groups, momentum=o.momentum, weight_decay=o.weight_decay)


def set_stage_learning_rates(optimiser: torch.optim.Optimizer, config: Config, epoch: int) -> None:
    stage = config.optim.stages[stage_at(config, epoch)]
    rates = {
        "encoder": stage.encoder_lr,
        "decoder": stage.decoder_lr,
        "gamma": stage.encoder_lr * config.optim.gamma_lr_multiplier,
    }
    for group in optimiser.param_groups:
        group["lr"] = rates[group["name"]]


def freeze_batch_norm_statistics(model: nn.Module) -> None:
    """Keep running statistics fixed (the paper's recipe); gamma and beta still train."""
    for module in model.modules():
        if isinstance(module, (ModalityNorm, nn.BatchNorm2d)):
            module.eval()


def check_modality_dropout(config: Config) -> float:
    """``train.modality_dropout``, checked against what it needs: a probability in [0, 1), at
    least two modalities, CEN's private norms (no fusion baseline, no shared norm) and one
    process's own statistics (no ``train.sync_bn``)."""
    p = config.train.modality_dropout
    if not 0.0 <= p < 1.0:
        raise ValueError(f"train.modality_dropout: expected a probability in [0, 1), got {p}")
    if p == 0:
        return 0.0
    m = config.model
    problems = []
    if len(m.modalities) < 2:
        problems.append(f"model.modalities has {len(m.modalities)} (it needs two or more)")
    if m.fusion != "cen":
        problems.append(f"model.fusion is {m.fusion!r} (the baselines mix every modality)")
    if not m.private_norms:
        problems.append("model.private_norms is false (a shared norm mixes the absent rows in)")
    if config.train.sync_bn:
        problems.append("train.sync_bn is true (synchronised statistics cover every row)")
    if problems:
        raise ValueError(
            f"train.modality_dropout={p} needs CEN's private norms: " + "; ".join(problems)
        )
    return p


class SegmentationStep:
    """One optimiser step of a segmentation model over one process's micro-batches."""

    def __init__(
        self,
        model: CENSegmentationModel,
        optimiser: torch.optim.Optimizer,
        config: Config,
        plan: BatchPlan,
        device: torch.device,
    ) -> None:
        self.model = model
        self.optimiser = optimiser
        self.config = config
        self.plan = plan
        self.device = device
        self.dropout = check_modality_dropout(config)
        # what the forward pass calls: the model under channels_last/DDP/compile as configured
        self.forward = apply_speed_options(
            model, config, wrap=functools.partial(distributed.wrap, device=device)
        )

    def start_epoch(self, epoch: int) -> None:
        """Training mode, frozen statistics (``train.freeze_bn``), the stage's learning rates."""
        self.model.train()
        if self.config.train.freeze_bn:
            freeze_batch_norm_statistics(self.model)
        set_stage_learning_rates(self.optimiser, self.config, epoch)

    def learning_rates(self) -> dict[str, Any]:
        return {
            "lr_encoder": self.optimiser.param_groups[0]["lr"],
            "lr_decoder": self.optimiser.param_groups[1]["lr"],
        }

    def __call__(
        self,
        micro_batches: list[dict[str, Tensor]],
        epoch: int,
        step: int,
        stop: StopRequests | None = None,
    ) -> StepResult:
        """The step over the micro-batches of this process (one, unless
        ``train.accumulate_steps``); the gradient is that of the whole global batch."""
        config, model = self.config, self.model
        count = len(micro_batches)
        valid_pixels = None
        if not self.plan.simple:
            ignore = config.data.ignore_index
            labelled = sum(int((batch["label"] != ignore).sum()) for batch in micro_batches)
            valid_pixels = max(distributed.sum_int(labelled), 1) / self.plan.world_size
        kept = snapshot_buffers(model) if config.train.nonfinite == "skip" else None
        self.optimiser.zero_grad(set_to_none=True)
        totals: dict[str, float] = {}
        finite = True
        for index, batch in enumerate(micro_batches):
            label = batch["label"].to(self.device)
            inputs = model_inputs(batch, model.modalities)
            present = None
            if self.dropout > 0:
                present = sample_presence(model.num_modalities, len(label), self.dropout)
            with distributed.sync_gradients(self.forward, index == count - 1):
                with autocast_context(config.train.precision, self.device):
                    outputs = self.forward(inputs, label.shape[-2:], stacked=True, present=present)
                loss, parts = segmentation_loss(
                    model, outputs, label, config, valid_pixels, 1.0 / count, present
                )
                finite = finite and math.isfinite(parts["loss"])
                loss.backward()
            for key, value in parts.items():
                totals[key] = totals.get(key, 0.0) + value
        requested = stop is not None and stop.requested
        totals, (nonfinite, stop_now) = distributed.reduce_step(totals, not finite, requested)
        if nonfinite:
            if config.train.nonfinite == "stop":
                raise NonFiniteLossError(
                    f"loss is {totals['loss']} at epoch {epoch + 1}, step {step + 1}: stopping "
                    "before the weights are corrupted (lower the learning rate? or "
                    "train.nonfinite=skip)"
                )
            self.optimiser.zero_grad(set_to_none=True)
            restore_buffers(model, kept)
            return StepResult(totals, False, stop_now)
        self.optimiser.step()
        return StepResult(totals, True, stop_now)
