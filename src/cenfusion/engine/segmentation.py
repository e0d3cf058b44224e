"""Training and evaluation of CEN segmentation models, driven by a :class:`cenfusion.config.Config`.

The loss is the paper's: cross-entropy (ignore 255) on every branch and on the ensemble, the
logits bilinearly upsampled to the label size, summed, plus the L1 term on the exchange sites
(``train.l1_per_output`` counts it once per output, as the public code does). SGD with an
encoder and a decoder learning rate per stage of the schedule. A checkpoint after every epoch
(and every ``train.checkpoint_every`` steps, and on Ctrl-C) holds everything needed to resume
exactly (model, optimiser, position in the epoch, RNG state).

Under torchrun every process trains on its slice of each global batch and DDP averages the
gradients (:mod:`cenfusion.engine.distributed`); with several processes or accumulated
micro-batches the cross-entropies are normalised by the valid pixels of the whole global batch,
so that a step's gradient is the single-process one (exactly so when batch statistics do not
depend on the split: frozen or synchronised BN, and no dropout; see the README).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from cenfusion.config import Config
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
    TrainingInterrupted,
    restore_buffers,
    snapshot_buffers,
)
from cenfusion.engine.loop import StepResult
from cenfusion.engine.speed import apply_speed_options, prepare_inputs
from cenfusion.engine.trainer import Trainer
from cenfusion.metrics import ConfusionMatrix, SegmentationScores
from cenfusion.models import create_model
from cenfusion.models.fusion import auxiliary_loss
from cenfusion.models.segmentation import CENSegmentationModel
from cenfusion.nn import sparsity_penalty

__all__ = ["NonFiniteLossError", "SegmentationTrainer", "TrainingInterrupted", "evaluate"]


def build_model(config: Config) -> CENSegmentationModel:
    m = config.model
    if m.dropout is not None and not 0.0 <= m.dropout < 1.0:
        raise ValueError(f"model.dropout: expected a probability in [0, 1), got {m.dropout}")
    return create_model(
        task="segmentation",
        arch=m.arch,
        backbone=m.backbone,
        num_classes=m.num_classes,
        modalities=tuple(m.modalities),
        bn_threshold=m.bn_threshold,
        exchange=m.exchange,
        exchange_norms=m.exchange_norms,
        pretrained=m.pretrained,
        output_stride=m.output_stride,
        rcu_residual=m.rcu_residual,
        decoder_channels=m.decoder_channels,
        dropout=m.dropout,
        fusion=m.fusion,
        fusion_stages=m.fusion_stages,
        share_convs=m.share_convs,
        private_norms=m.private_norms,
    )


def modality_specs(config: Config) -> list[Modality]:
    """How each modality is read and normalised: the one answer for training and prediction.

    ``rgb`` and ``depth`` take the data set's presets (ImageNet-normalised RGB; NYUDv2 depth
    in metres at ``data.depth_scale``; SUN RGB-D depth min-max stretched per image, as the
    public code feeds it); any other modality, and every modality of the ``folder`` format,
    is ``Modality(name, **data.modality_settings[name])``.
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
        if name in presets:
            specs.append(presets[name])
            continue
        settings = d.modality_settings.get(name, {})
        valid = [f.name for f in dataclasses.fields(Modality) if f.name != "name"]
        unknown = [key for key in settings if key not in valid]
        if unknown:
            raise ValueError(
                f"data.modality_settings.{name}: unknown setting {unknown[0]!r}; valid "
                f"settings: {valid}"
            )
        specs.append(Modality(name, **settings))
    return specs


def build_datasets(
    config: Config, splits: tuple[str, ...] = ("train", "val")
) -> dict[str, Dataset]:
    """The configured data set's splits; training gets the paper's augmentation."""
    from cenfusion.data.segmentation import SUNRGBD, AugmentSettings, FolderSegmentation, NYUDv2

    d = config.data
    if d.format not in ("nyudv2", "sunrgbd", "folder"):
        raise ValueError(f"data.format: expected 'nyudv2', 'sunrgbd' or 'folder', got {d.format!r}")
    augment = AugmentSettings(
        scale_range=tuple(d.scale_range),
        min_short_side=d.min_short_side,
        crop_size=tuple(d.crop_size),
        flip_prob=d.flip_prob,
    )
    lists = {"train": d.train_list, "val": d.val_list}
    specs = modality_specs(config)
    others = [m for m in config.model.modalities if m not in ("rgb", "depth")]
    if d.format != "folder" and others:
        raise ValueError(
            f"model.modalities {list(config.model.modalities)}: the {d.format} format holds "
            f"rgb and depth only, not {others}; use data.format: folder for other modalities"
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


def stack_batch(batch: dict[str, Tensor], modalities: tuple[str, ...]) -> tuple[Tensor, Tensor]:
    """A collated sample dict -> (stacked ``(M*B, 3, H, W)`` inputs, ``(B, H, W)`` labels)."""
    from cenfusion.nn import stack_modalities

    return stack_modalities({m: batch[m] for m in modalities}, modalities, 3), batch["label"]


def segmentation_loss(
    model: CENSegmentationModel,
    logits: Tensor,
    label: Tensor,
    config: Config,
    valid_pixels: float | None = None,
    share: float = 1.0,
) -> tuple[Tensor, dict[str, float]]:
    """Sum of the branch and ensemble cross-entropies plus the L1 term (and the alignment
    baseline's MMD loss, ``train.align_weight`` x).

    Each cross-entropy is a mean over the labelled pixels of ``label``; with ``valid_pixels``
    it is their sum divided by ``valid_pixels`` instead (a micro-batch's or a process's part
    of the global batch's mean), and the batch-independent terms are multiplied by ``share``
    (``1 / accumulate_steps``), so that the parts of one step add up to the global loss.
    """
    ignore = config.data.ignore_index
    num = model.num_modalities
    size = label.shape[-2:]
    upsampled = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)
    ensemble = model.ensemble(upsampled)
    if valid_pixels is None:
        # one cross-entropy over the stacked branches: mean over M equal parts, times M = sum
        branches = F.cross_entropy(upsampled, label.repeat(num, 1, 1), ignore_index=ignore) * num
        ensemble_loss = F.cross_entropy(ensemble, label, ignore_index=ignore)
    else:
        repeated = label.repeat(num, 1, 1)
        branches = F.cross_entropy(upsampled, repeated, ignore_index=ignore, reduction="sum")
        branches = branches / valid_pixels
        ensemble_loss = F.cross_entropy(ensemble, label, ignore_index=ignore, reduction="sum")
        ensemble_loss = ensemble_loss / valid_pixels
    penalty = sparsity_penalty(model, config.train.lam, config.train.sparsity)
    if config.train.l1_per_output:
        penalty = penalty * (num + 1)
    alignment = config.train.align_weight * auxiliary_loss(model)
    if share != 1.0:
        penalty, alignment = penalty * share, alignment * share
    total = branches + ensemble_loss + penalty + alignment
    return total, {
        "loss": float(total.detach()),
        "ce_branches": float(branches.detach()),
        "ce_ensemble": float(ensemble_loss.detach()),
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
    stage = config.optim.stages[0]
    groups = [
        {"params": model.encoder_parameters(), "lr": stage.encoder_lr, "name": "encoder"},
        {"params": model.decoder_parameters(), "lr": stage.decoder_lr, "name": "decoder"},
    ]
    return torch.optim.SGD(
        groups, momentum=config.optim.momentum, weight_decay=config.optim.weight_decay
    )


def set_stage_learning_rates(optimiser: torch.optim.Optimizer, config: Config, epoch: int) -> None:
    stage = config.optim.stages[stage_at(config, epoch)]
    for group in optimiser.param_groups:
        group["lr"] = stage.encoder_lr if group["name"] == "encoder" else stage.decoder_lr


def autocast_context(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The one precision switch: fp32, or bf16 autocast on CPU and CUDA alike."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        if device.type == "cpu" and not _cpu_has_fast_bf16():
            warnings.warn(
                "bf16 autocast on a CPU without hardware bf16 (AVX512-BF16/AMX): convolutions "
                "fall back to a slow path, measured 10-30x slower than fp32 on an AVX2 CPU",
                stacklevel=2,
            )
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ValueError(f"train.precision: expected 'fp32' or 'bf16', got {precision!r}")


def _cpu_has_fast_bf16() -> bool:
    """Whether oneDNN runs bf16 convolutions natively on this CPU."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def freeze_batch_norm_statistics(model: nn.Module) -> None:
    """Keep running statistics fixed (the paper's recipe); gamma and beta still train."""
    from cenfusion.nn.norm import _ModalityNorm

    for module in model.modules():
        if isinstance(module, (_ModalityNorm, nn.BatchNorm2d)):
            module.eval()


class SegmentationTrainer(Trainer):
    """Train a CEN segmentation model from a config; resumable, logged, checkpointed; one
    process or several (torchrun)."""

    kind = "segmentation"

    def __init__(self, config: Config, resume: bool | str = False, progress: bool = True) -> None:
        self._begin(config, progress)
        self.model = build_model(config).to(self.device)
        if config.train.sync_bn:
            distributed.convert_sync_batch_norm(self.model)
        self.optimiser = build_optimiser(self.model, config)
        self.datasets = build_datasets(config)
        self.forward = apply_speed_options(
            distributed.StackedForward(self.model),
            config,
            wrap=functools.partial(distributed.wrap, device=self.device),
        )
        self._finish_setup(resume)

    def optimisers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimiser": self.optimiser}

    def total_epochs(self) -> int:
        return total_epochs(self.config)

    def start_epoch_training(self, epoch: int) -> None:
        self.model.train()
        if self.config.train.freeze_bn:
            freeze_batch_norm_statistics(self.model)
        set_stage_learning_rates(self.optimiser, self.config, epoch)

    def exchange_network(self) -> tuple[nn.Module, float]:
        return self.model, self.config.model.bn_threshold

    def step_postfix(self, parts: dict[str, float]) -> dict[str, str]:
        return {"loss": f"{parts['loss']:.3f}"}

    def skipped_step_message(self, parts: dict[str, float]) -> str:
        return f"loss is {parts.get('loss', float('nan'))}, step skipped (train.nonfinite)"

    def epoch_record(self) -> dict[str, Any]:
        return {
            "lr_encoder": self.optimiser.param_groups[0]["lr"],
            "lr_decoder": self.optimiser.param_groups[1]["lr"],
        }

    def epoch_summary(self, record: dict[str, Any]) -> str:
        return (
            f"epoch {record['epoch']}/{self.total_epochs()}: "
            f"loss {record.get('loss', float('nan')):.4f}, exchanged {record['exchanged']:.1%}, "
            f"alpha {[round(a, 3) for a in record['alpha']]}, {record['seconds']:.1f} s"
        )

    def after_epoch(self, epoch: int, epochs: int, record: dict[str, Any]) -> None:
        config = self.config
        if self.due(config.train.eval_every, epoch, epochs):
            scores = evaluate(self.model, self.datasets["val"], config, progress=self.progress)
            record["val"] = {name: s.as_dict() for name, s in scores.items()}
            if self.main:
                print(format_scores(scores, title=f"epoch {epoch + 1}/{epochs} validation"))
        if self.main and self.due(config.train.sample_every, epoch, epochs):
            from cenfusion.engine.samples import save_segmentation_samples

            grid = save_segmentation_samples(
                self.model,
                self.datasets["val"],
                self.samples_path(epoch),
                config.train.sample_images,
                config.data.ignore_index,
            )
            record["samples"] = str(grid.relative_to(self.output_dir))

    def train_step(
        self,
        micro_batches: list[dict[str, Tensor]],
        epoch: int,
        step: int,
        stop: StopRequests | None = None,
    ) -> StepResult:
        """One optimiser step over the micro-batches of this process (one, unless
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
            inputs, label = stack_batch(batch, model.modalities)
            inputs, label = inputs.to(self.device), label.to(self.device)
            inputs = prepare_inputs(inputs, config)
            with distributed.sync_gradients(self.forward, index == count - 1):
                with autocast_context(config.train.precision, self.device):
                    logits = self.forward(inputs)
                loss, parts = segmentation_loss(
                    model, logits, label, config, valid_pixels, 1.0 / count
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


@torch.no_grad()
def predict_probabilities(
    model: CENSegmentationModel,
    inputs: Tensor,
    size: tuple[int, int],
    scales: tuple[float, ...] = (1.0,),
    flip: bool = False,
    resize: str = "bilinear",
    precision: str = "fp32",
) -> dict[str, Tensor]:
    """``{modality: (B, K, *size), ..., "ensemble": ...}`` softmax scores at label size.

    inputs: stacked ``(M*B, 3, H, W)``. The ensemble is formed from the logits, as in the model;
    each output is resized to ``size`` (``resize``: bilinear, or bicubic as the public code
    does), turned into probabilities and averaged over ``scales`` (inputs resized bilinearly)
    and horizontal flips. Single-scale argmax equals the argmax of the resized logits.
    """
    height, width = inputs.shape[-2:]
    names = [*model.modalities, "ensemble"]
    total: dict[str, Tensor] = {}
    for scale in scales:
        scaled = inputs
        if scale != 1.0:
            target = (max(1, round(height * scale)), max(1, round(width * scale)))
            scaled = F.interpolate(inputs, size=target, mode="bilinear", align_corners=False)
        for flipped in (False, True) if flip else (False,):
            x = scaled.flip(-1) if flipped else scaled
            with autocast_context(precision, inputs.device):
                logits = model.forward_stacked(x)
            logits = logits.float()
            if flipped:
                logits = logits.flip(-1)
            outputs = [
                *logits.split(logits.shape[0] // model.num_modalities),
                model.ensemble(logits),
            ]
            for name, output in zip(names, outputs, strict=True):
                resized = F.interpolate(output, size=size, mode=resize, align_corners=False)
                probabilities = resized.softmax(dim=1)
                total[name] = total[name] + probabilities if name in total else probabilities
    return total


def evaluate(
    model: CENSegmentationModel,
    dataset: Dataset,
    config: Config,
    progress: bool = True,
) -> dict[str, SegmentationScores]:
    """Confusion matrices over the whole split for every branch and the ensemble.

    Under torchrun each process evaluates a contiguous shard and the matrices are summed over
    the processes, so every process gets the scores of the whole split.
    """
    model.eval()
    device = next(model.parameters()).device
    names = [*model.modalities, "ensemble"]
    matrices = {name: ConfusionMatrix(config.model.num_classes, device) for name in names}
    if distributed.world_size() > 1:
        dataset = Subset(dataset, distributed.shard_range(len(dataset)))
    loader = DataLoader(dataset, batch_size=config.eval.batch_size, num_workers=config.data.workers)
    for batch in tqdm(loader, desc="evaluating", disable=not progress, leave=False):
        inputs, label = stack_batch(batch, model.modalities)
        inputs, label = inputs.to(device), label.to(device)
        probabilities = predict_probabilities(
            model,
            inputs,
            tuple(label.shape[-2:]),
            tuple(config.eval.scales),
            config.eval.flip,
            config.eval.logits_resize,
            config.train.precision,
        )
        for name in names:
            matrices[name].update(probabilities[name].argmax(dim=1), label)
    for matrix in matrices.values():
        distributed.sum_tensor_(matrix.matrix)
    return {name: matrix.compute() for name, matrix in matrices.items()}


def format_scores(scores: dict[str, SegmentationScores], title: str = "") -> str:
    header = f"{'output':<12}{'pixel acc':>11}{'mean acc':>10}{'mIoU':>8}"
    lines = [title] if title else []
    lines += [header, "-" * len(header)]
    for name, s in scores.items():
        lines.append(
            f"{name:<12}{s.pixel_accuracy * 100:>10.2f}%{s.mean_accuracy * 100:>9.2f}%"
            f"{s.mean_iou * 100:>7.2f}%"
        )
    return "\n".join(lines)
