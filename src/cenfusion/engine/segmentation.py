"""Training and evaluation of CEN segmentation models, driven by a :class:`cenfusion.config.Config`.

The loss is the paper's: cross-entropy (ignore 255) on every branch and on the ensemble, the
logits bilinearly upsampled to the label size, summed, plus the L1 term on the exchange sites
(``train.l1_per_output`` counts it once per output, as the public code does). SGD with an
encoder and a decoder learning rate per stage of the schedule. A checkpoint after every epoch
holds everything needed to resume exactly (model, optimiser, epoch, RNG state).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from cenfusion.analysis.exchange_stats import exchanged_fraction
from cenfusion.config import Config
from cenfusion.data.segmentation.modalities import (
    IMAGENET_RGB,
    NYUDV2_DEPTH,
    SUNRGBD_DEPTH,
    Modality,
)
from cenfusion.engine.checkpoint import (
    find_resume_checkpoint,
    restore_rng_state,
    rng_state,
    rotate_and_save,
)
from cenfusion.engine.loop import epoch_loader, steps_in_epoch
from cenfusion.metrics import ConfusionMatrix, SegmentationScores
from cenfusion.models import create_model
from cenfusion.models.fusion import auxiliary_loss
from cenfusion.models.segmentation import CENSegmentationModel
from cenfusion.nn import sparsity_penalty


class NonFiniteLossError(RuntimeError):
    pass


def build_model(config: Config) -> CENSegmentationModel:
    m = config.model
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
    return [
        presets[name] if name in presets else Modality(name, **d.modality_settings.get(name, {}))
        for name in config.model.modalities
    ]


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
) -> tuple[Tensor, dict[str, float]]:
    """Sum of the branch and ensemble cross-entropies plus the L1 term (and the alignment
    baseline's MMD loss, ``train.align_weight`` x)."""
    ignore = config.data.ignore_index
    num = model.num_modalities
    size = label.shape[-2:]
    upsampled = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)
    # one cross-entropy over the stacked branches: mean over M equal-sized parts, times M = sum
    branches = F.cross_entropy(upsampled, label.repeat(num, 1, 1), ignore_index=ignore) * num
    ensemble = model.ensemble(upsampled)
    ensemble_loss = F.cross_entropy(ensemble, label, ignore_index=ignore)
    penalty = sparsity_penalty(model, config.train.lam, config.train.sparsity)
    if config.train.l1_per_output:
        penalty = penalty * (num + 1)
    alignment = config.train.align_weight * auxiliary_loss(model)
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


class SegmentationTrainer:
    """Train a CEN segmentation model from a config; resumable, logged, checkpointed."""

    def __init__(self, config: Config, resume: bool | str = False, progress: bool = True) -> None:
        self.config = config
        self.output_dir = Path(config.output_dir)
        self.progress = progress
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        torch.manual_seed(config.train.seed)
        self.model = build_model(config).to(self.device)
        if config.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimiser = build_optimiser(self.model, config)
        self.datasets = build_datasets(config)
        self.start_epoch = 0
        self.history: list[dict[str, Any]] = []
        if resume:
            self._resume(resume)

    def _resume(self, resume: bool | str) -> None:
        path, payload = find_resume_checkpoint(resume, self.output_dir)
        load_model_state(self.model, payload["model"], path)
        self.optimiser.load_state_dict(payload["optimiser"])
        self.start_epoch = int(payload["epoch"]) + 1
        restore_rng_state(payload["rng"])
        self.history = json.loads(payload.get("history", "[]"))
        print(f"resumed from {path} at epoch {self.start_epoch}")

    def fit(self) -> list[dict[str, Any]]:
        config = self.config
        epochs = total_epochs(config)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / "config.yaml").write_text(_yaml(config.to_dict()))
        for epoch in range(self.start_epoch, epochs):
            record = self.train_epoch(epoch, epochs)
            if config.train.eval_every and (
                (epoch + 1) % config.train.eval_every == 0 or epoch + 1 == epochs
            ):
                scores = evaluate(self.model, self.datasets["val"], config, progress=self.progress)
                record["val"] = {name: s.as_dict() for name, s in scores.items()}
                print(format_scores(scores, title=f"epoch {epoch + 1}/{epochs} validation"))
            self.history.append(record)
            with (self.output_dir / "metrics.jsonl").open("a") as log:
                log.write(json.dumps(record) + "\n")
            self.save(epoch)
        return self.history

    def train_epoch(self, epoch: int, epochs: int) -> dict[str, Any]:
        config = self.config
        model = self.model
        model.train()
        if config.train.freeze_bn:
            freeze_batch_norm_statistics(model)
        set_stage_learning_rates(self.optimiser, config, epoch)
        loader = epoch_loader(
            self.datasets["train"],
            config.train.batch_size,
            config.data.workers,
            config.train.seed,
            epoch,
        )
        steps = steps_in_epoch(loader, config.train.max_steps_per_epoch)
        sums: dict[str, float] = {}
        start = time.perf_counter()
        bar = tqdm(
            total=steps, desc=f"epoch {epoch + 1}/{epochs}", disable=not self.progress, leave=False
        )
        for step, batch in zip(range(steps), loader, strict=False):
            inputs, label = stack_batch(batch, model.modalities)
            inputs, label = inputs.to(self.device), label.to(self.device)
            if config.train.channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            with autocast_context(config.train.precision, self.device):
                logits = model.forward_stacked(inputs)
            loss, parts = segmentation_loss(model, logits, label, config)
            if not math.isfinite(parts["loss"]):
                raise NonFiniteLossError(
                    f"loss is {parts['loss']} at epoch {epoch + 1}, step {step + 1}: stopping "
                    "before the weights are corrupted (lower the learning rate?)"
                )
            self.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            self.optimiser.step()
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + value
            bar.set_postfix(
                loss=f"{parts['loss']:.3f}", exchanged=f"{exchanged_fraction(model):.1%}"
            )
            bar.update()
        bar.close()
        record = {
            "epoch": epoch + 1,
            **{key: value / max(steps, 1) for key, value in sums.items()},
            "lr_encoder": self.optimiser.param_groups[0]["lr"],
            "lr_decoder": self.optimiser.param_groups[1]["lr"],
            "alpha": model.ensemble.weights().tolist(),
            "exchanged": exchanged_fraction(model),
            "seconds": time.perf_counter() - start,
        }
        print(
            f"epoch {epoch + 1}/{epochs}: loss {record.get('loss', float('nan')):.4f}, "
            f"exchanged {record['exchanged']:.1%}, alpha {[round(a, 3) for a in record['alpha']]}, "
            f"{record['seconds']:.1f} s"
        )
        return record

    def save(self, epoch: int) -> Path:
        payload = {
            "model": self.model.state_dict(),
            "optimiser": self.optimiser.state_dict(),
            "epoch": epoch,
            "rng": rng_state(),
            "config": json.dumps(self.config.to_dict()),
            "history": json.dumps(self.history),
        }
        return rotate_and_save(payload, self.output_dir)


def load_model_state(model: nn.Module, state: dict[str, Tensor], path: Path | str) -> None:
    """``load_state_dict`` with an error that names the checkpoint and what does not fit."""
    target = model.state_dict()
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    mismatched = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in target.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or mismatched:
        details = []
        if missing:
            details.append(f"missing {missing[:3]}")
        if unexpected:
            details.append(f"unexpected {unexpected[:3]}")
        if mismatched:
            details.append(f"shape mismatch {mismatched[:3]}")
        raise ValueError(
            f"checkpoint {str(path)!r} is for another architecture or number of modalities: "
            + "; ".join(details)
        )
    model.load_state_dict(state)


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
    """Confusion matrices over the whole split for every branch and the ensemble."""
    model.eval()
    device = next(model.parameters()).device
    names = [*model.modalities, "ensemble"]
    matrices = {name: ConfusionMatrix(config.model.num_classes, device) for name in names}
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


def _yaml(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)
