"""``task: translation``: multimodal image-to-image translation with the CEN pix2pix U-Net
(Taskonomy: shade + texture -> RGB, and any other domains).

``config.py`` its config sections, ``training.py`` model, data, losses and the two-network
step, ``evaluation.py`` image scores and the generator's inference mode, ``prediction.py``
files in and out (and the sample grids), ``official.py`` the public code's generator
checkpoints; :class:`TranslationTask` puts them together.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
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
from cenfusion.metrics.image import (
    FID_SKIPPED_MESSAGE,
    FeatureExtractor,
    FeatureMemo,
    format_image_scores,
)
from cenfusion.nn import convert_sync_batch_norm, effective_lambda
from cenfusion.tasks.base import Column, ComparisonMetrics, EvaluateOptions, Task
from cenfusion.tasks.translation import official
from cenfusion.tasks.translation.config import TRANSLATION_SECTIONS
from cenfusion.tasks.translation.evaluation import (
    evaluate,
    generator_mode,
    inception_features,
    scores_from_record,
)
from cenfusion.tasks.translation.prediction import read_inputs, save_samples, translate_files
from cenfusion.tasks.translation.training import (
    TranslationStep,
    build_datasets,
    build_model,
    build_optimisers,
    check_image_sizes,
)


class TranslationTask(Task):
    """Translation: the paper's pix2pix recipe (see the module docstring)."""

    name = "translation"
    sections = TRANSLATION_SECTIONS
    threshold_key = "insnorm_threshold"
    prediction_noun = "translations"
    comparison = ComparisonMetrics(
        headline=Column("l1", "L1", 1, 4),
        ensemble=(
            Column("fid", "ensemble FID", 1, 1),
            Column("kid_x100", "ensemble KIDx100", 1, 2),
        ),
        sign=-1,
        unit=" L1",
    )
    backbone_ablations = False
    unet_ablations = True
    public_code = official

    def __init__(self) -> None:
        # inside shared_evaluations: the Inception file it was loaded from, the network and
        # the memo of the real images' features
        self._shared: tuple[str | None, FeatureExtractor | None, FeatureMemo] | None = None

    def build_model(self, config: Config) -> nn.Module:
        return build_model(config)

    def build_datasets(
        self, config: Config, splits: tuple[str, ...] = ("train", "val")
    ) -> dict[str, Dataset]:
        return build_datasets(config, splits)

    def trainer(self, config: Config, resume: bool | str = False, progress: bool = True) -> Trainer:
        run = prepare_run(config)
        model = build_model(config).to(run.device)
        check_image_sizes(config)
        if config.train.sync_bn:
            convert_sync_batch_norm(model)
        optimisers = build_optimisers(model, config)
        datasets = build_datasets(config)
        # fails now, not after an epoch, if the configured file is missing
        features = inception_features(config, announce=run.main)
        memo = FeatureMemo()  # the validation images' features, for every validation
        step = TranslationStep(model, optimisers, config, run.device)
        shown_progress = progress and run.main
        t = config.train

        # samples first, then validation, as before: under eval.generator_mode train both draw
        # dropout masks from the global random stream, so their order is part of a run's result
        def samples(epoch: int, epochs: int, record: dict[str, Any]) -> None:
            if run.main and due(t.sample_every, epoch, epochs):
                grid = save_samples(
                    model,
                    datasets["val"],
                    samples_path(config.output_dir, epoch),
                    t.sample_images,
                    config.eval.generator_mode,
                )
                record["samples"] = str(grid.relative_to(config.output_dir))

        def validate(epoch: int, epochs: int, record: dict[str, Any]) -> None:
            if due(t.eval_every, epoch, epochs):
                shown = features if config.eval.fid_in_training else None
                scores = evaluate(
                    model, datasets["val"], config, shown, shown_progress, real_memo=memo
                )
                record["val"] = {name: s.as_dict() for name, s in scores.items()}
                if run.main:
                    title = f"epoch {epoch + 1}/{epochs} validation"
                    note = FID_SKIPPED_MESSAGE
                    if features is not None and not config.eval.fid_in_training:
                        note = "FID/KID: not during training (eval.fid_in_training: false)"
                    print(format_image_scores(scores, title=title, fid_note=note))

        # the translation loss counts the L1 term once, whatever train.l1_per_output says
        lam = effective_lambda(t.lam, model.num_modalities, per_output=False)
        generator = model.generator
        theorem = TheoremProbe(generator, lam, config.model.insnorm_threshold, t.sparsity)
        parts = TrainingParts(
            kind=self.name,
            model=model,
            optimisers=optimisers,
            datasets=datasets,
            step=step,
            epochs=t.epochs,
            start_epoch=step.start_epoch,
            epoch_entries=step.learning_rates,
            after_epoch=(samples, validate),
            probes=(ExchangeProbe(model, config.model.insnorm_threshold), theorem),
            step_shown=(
                Shown("d", "d_loss", ".3f"),
                Shown("g", "g_loss", ".2f"),
                Shown("l1", "l1_ensemble", ".3f"),
            ),
            epoch_shown=(
                Shown("D", "d_loss", ".4f"),
                Shown("G", "g_loss", ".4f"),
                Shown("L1 ensemble", "l1_ensemble", ".4f"),
                Shown("exchanged", "exchanged", ".1%"),
            ),
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
        """With ``analysis`` and ``eval.fid_in_analyses: false``, without FID/KID."""
        if analysis and not config.eval.fid_in_analyses:
            return evaluate(model, dataset, config, None, progress)
        shared = self._shared
        if shared is not None and shared[0] == config.eval.inception_weights:
            _, features, memo = shared
            return evaluate(model, dataset, config, features, progress, real_memo=memo)
        return evaluate(model, dataset, config, inception_features(config), progress)

    @contextlib.contextmanager
    def shared_evaluations(self, config: Config) -> Iterator[None]:
        """Load the Inception once for the block's evaluations, and compute each real image's
        features once: a trained model's test scores (every branch, each input alone, each
        exchange site switched off) score the same real images again and again. The scores
        are exactly those without the block (:class:`~cenfusion.metrics.image.FeatureMemo`)."""
        outer = self._shared
        features = inception_features(config)
        self._shared = (config.eval.inception_weights, features, FeatureMemo())
        try:
            yield
        finally:
            self._shared = outer

    def evaluate_checkpoint(
        self,
        config: Config,
        checkpoint: str | Path,
        split: str,
        options: EvaluateOptions,
        progress: bool = True,
        state: Mapping[str, Tensor] | None = None,
    ) -> tuple[dict[str, Any], str]:
        if options.scales or options.flip:
            raise ValueError("--scales and --flip apply to segmentation only")
        features = inception_features(config, announce=False)  # the table says why FID is n/a
        model = options.restrict(self.model_with_weights(config, checkpoint, state))
        settings = apply_inference_speed(model, config, options.speed)
        dataset = build_datasets(options.data_config(config), (split,))[split]
        scores = evaluate(model, dataset, config, features, progress, options.save_images)
        inputs = " + ".join(model.modalities)
        title = (
            f"{split} split, {len(dataset)} images, {inputs} -> {config.model.target}, "
            f"generator in {config.eval.generator_mode} mode{options.describe()}"
        )
        if options.speed != "exact":
            title += f", speed {options.speed}: {settings.describe()}"
        return scores, title

    def format_scores(self, scores: Mapping[str, Any], title: str = "") -> str:
        return format_image_scores(scores, title=title)

    def scores_from_record(self, record: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        return scores_from_record(record)

    def read_inputs(
        self, model: nn.Module, config: Config, files: Mapping[str, Path]
    ) -> dict[str, Tensor]:
        return read_inputs(model, config, files)

    def inference_mode(self, model: nn.Module, config: Config) -> contextlib.AbstractContextManager:
        """``eval.generator_mode``, as ``cenfusion predict`` translates."""
        return generator_mode(model, config.eval.generator_mode)

    def predict_files(
        self, model: nn.Module, config: Config, files: Mapping[str, Path], output: str | Path
    ) -> dict[str, Path]:
        return translate_files(model, config, files, output)


__all__ = ["TranslationTask"]
