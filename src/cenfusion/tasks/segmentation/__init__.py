"""``task: segmentation``: RGB-D (or any modalities') semantic segmentation with RefineNet or
PSPNet on a CEN ResNet.

``config.py`` its config sections, ``training.py`` model, data, loss and optimiser step,
``evaluation.py`` scores, ``prediction.py`` files in and out (and the sample grids),
``official.py`` the public code's checkpoints; :class:`SegmentationTask` puts them together.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn
from torch.utils.data import Dataset

from cenfusion.analysis.probes import ExchangeProbe, TheoremProbe
from cenfusion.config import Config
from cenfusion.engine.speed import apply_inference_speed
from cenfusion.engine.trainer import (
    Shown,
    Trainer,
    TrainingParts,
    due,
    prepare_run,
    samples_path,
)
from cenfusion.nn import convert_sync_batch_norm, effective_lambda
from cenfusion.tasks.base import Column, ComparisonMetrics, EvaluateOptions, Task
from cenfusion.tasks.segmentation import official
from cenfusion.tasks.segmentation.config import SEGMENTATION_SECTIONS
from cenfusion.tasks.segmentation.evaluation import evaluate, format_scores, scores_from_record
from cenfusion.tasks.segmentation.prediction import predict_files, read_inputs, save_samples
from cenfusion.tasks.segmentation.training import (
    SegmentationStep,
    build_datasets,
    build_model,
    build_optimiser,
    total_epochs,
)


class SegmentationTask(Task):
    """Segmentation: the paper's RGB-D recipe (see the module docstring)."""

    name = "segmentation"
    sections = SEGMENTATION_SECTIONS
    threshold_key = "bn_threshold"
    prediction_noun = "predictions"
    comparison = ComparisonMetrics(
        headline=Column("mean_iou", "mIoU", 100, 2),
        ensemble=(
            Column("pixel_accuracy", "pixel acc", 100, 2),
            Column("mean_accuracy", "mean acc", 100, 2),
        ),
        sign=1,
        unit=" mIoU points",
    )
    preprocessing_keys = ("data.modality_settings", "data.depth_scale", "data.format")
    backbone_ablations = True
    modality_dropout = True
    public_code = official

    def build_model(self, config: Config) -> nn.Module:
        return build_model(config)

    def build_datasets(
        self, config: Config, splits: tuple[str, ...] = ("train", "val")
    ) -> dict[str, Dataset]:
        return build_datasets(config, splits)

    def trainer(self, config: Config, resume: bool | str = False, progress: bool = True) -> Trainer:
        run = prepare_run(config)
        model = build_model(config).to(run.device)
        if config.train.sync_bn:
            convert_sync_batch_norm(model)
        optimiser = build_optimiser(model, config)
        datasets = build_datasets(config)
        step = SegmentationStep(model, optimiser, config, run.plan, run.device)
        shown_progress = progress and run.main
        t = config.train

        def validate(epoch: int, epochs: int, record: dict[str, Any]) -> None:
            if due(t.eval_every, epoch, epochs):
                scores = evaluate(model, datasets["val"], config, progress=shown_progress)
                record["val"] = {name: s.as_dict() for name, s in scores.items()}
                if run.main:
                    print(format_scores(scores, title=f"epoch {epoch + 1}/{epochs} validation"))

        def samples(epoch: int, epochs: int, record: dict[str, Any]) -> None:
            if run.main and due(t.sample_every, epoch, epochs):
                grid = save_samples(
                    model,
                    datasets["val"],
                    samples_path(config.output_dir, epoch),
                    t.sample_images,
                    config.data.ignore_index,
                )
                record["samples"] = str(grid.relative_to(config.output_dir))

        lam = effective_lambda(t.lam, model.num_modalities, t.l1_per_output)
        parts = TrainingParts(
            kind=self.name,
            model=model,
            optimisers={"optimiser": optimiser},
            datasets=datasets,
            step=step,
            epochs=total_epochs(config),
            start_epoch=step.start_epoch,
            epoch_entries=step.learning_rates,
            after_epoch=(validate, samples),
            probes=(
                ExchangeProbe(model, config.model.bn_threshold),
                TheoremProbe(model, lam, config.model.bn_threshold, t.sparsity),
            ),
            step_shown=(Shown("loss", "loss", ".3f"),),
            epoch_shown=(Shown("loss", "loss", ".4f"), Shown("exchanged", "exchanged", ".1%")),
            validation_score=self.validation_score,
        )
        return Trainer(config, run, parts, resume=resume, progress=progress)

    def evaluate(
        self,
        model: nn.Module,
        dataset: Dataset,
        config: Config,
        progress: bool = True,
        analysis: bool = False,
    ) -> dict[str, Any]:
        return evaluate(model, dataset, config, progress)  # every metric is cheap

    def evaluate_checkpoint(
        self,
        config: Config,
        checkpoint: str | Path,
        split: str,
        options: EvaluateOptions,
        progress: bool = True,
        state: Mapping[str, Tensor] | None = None,
    ) -> tuple[dict[str, Any], str]:
        if options.save_images is not None:
            raise ValueError("--save-images applies to translation only")
        if options.scales:
            config.eval.scales = list(options.scales)
        if options.flip:
            config.eval.flip = True
        model = options.restrict(self.model_with_weights(config, checkpoint, state))
        settings = apply_inference_speed(model, config, options.speed)
        dataset = build_datasets(options.data_config(config), (split,))[split]
        scores = evaluate(model, dataset, config, progress=progress)
        scales = ", ".join(f"{s:g}" for s in config.eval.scales)
        title = f"{split} split, {len(dataset)} images, scales [{scales}]"
        title += (", flip" if config.eval.flip else "") + options.describe()
        title += (
            f", speed {options.speed}: {settings.describe()}" if options.speed != "exact" else ""
        )
        return scores, title

    def format_scores(self, scores: Mapping[str, Any], title: str = "") -> str:
        return format_scores(scores, title)

    def scores_from_record(self, record: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        return scores_from_record(record)

    def model_with_weights(
        self,
        config: Config,
        checkpoint: str | Path,
        state: Mapping[str, Tensor] | None = None,
    ) -> nn.Module:
        config.model.pretrained = None  # every weight comes from the checkpoint
        return super().model_with_weights(config, checkpoint, state)

    def read_inputs(
        self, model: nn.Module, config: Config, files: Mapping[str, Path]
    ) -> dict[str, Tensor]:
        return read_inputs(model, config, files)

    def predict_files(
        self, model: nn.Module, config: Config, files: Mapping[str, Path], output: str | Path
    ) -> dict[str, Path]:
        return predict_files(model, config, files, output)


__all__ = ["SegmentationTask"]
