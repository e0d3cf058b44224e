"""What a task is: the one object that owns everything that differs between tasks.

The CLI, the comparison runner, export, ``inspect`` and the public-code import look a task up
by its name (:func:`cenfusion.tasks.get_task`) and call these methods; no module outside
:mod:`cenfusion.tasks` asks which task it is dealing with. A new task (depth estimation, say)
is a new subclass in its own folder with the same layout as the two here: ``config.py`` (its
config sections), ``training.py`` (model, data, losses, the trainer's parts), ``evaluation.py``
(scores and their table) and ``prediction.py`` (files in, files out).
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import Tensor, nn
from torch.utils.data import Dataset

from cenfusion.analysis import switch_exchange_off
from cenfusion.config import Config, TaskSections
from cenfusion.engine.checkpoint import checkpoint_config, load_checkpoint, load_model_state
from cenfusion.engine.trainer import Trainer


@dataclass(frozen=True)
class Column:
    """One score in a comparison table: its key in the scores, label, factor and digits."""

    key: str
    label: str
    scale: float = 1.0
    digits: int = 2


@dataclass(frozen=True)
class ComparisonMetrics:
    """How ``cenfusion compare`` tabulates a task's runs.

    ``headline`` is shown for every branch and the ensemble and decides the verdicts (``sign``
    +1 when larger is better, differences in ``unit``); ``ensemble`` are further columns of the
    ensemble's scores.
    """

    headline: Column
    ensemble: tuple[Column, ...]
    sign: int
    unit: str

    @property
    def metrics(self) -> tuple[str, ...]:
        return (self.headline.key, *(column.key for column in self.ensemble))


@dataclass(frozen=True)
class EvaluateOptions:
    """``cenfusion evaluate``'s switches; a task refuses the ones it has no use for."""

    scales: tuple[float, ...] | None = None
    flip: bool = False
    save_images: Path | None = None
    drop: tuple[str, ...] = ()  # modalities left out (a camera missing)
    speed: str = "exact"  # exact | fast (the host's choice for inference)
    # exchange sites (or dotted parts of their names, e.g. a stage) whose exchange is off
    exchange_off: tuple[str, ...] = ()

    def restrict(self, model: Any) -> Any:
        """``model`` without the dropped modalities (itself when none are dropped), with the
        exchange off at the ``exchange_off`` sites (in place)."""
        if self.drop:
            names = " ".join(model.modalities)
            unknown = [m for m in self.drop if m not in model.modalities]
            if unknown:
                raise ValueError(f"--drop {unknown[0]}: the model's modalities are {names}")
            kept = [m for m in model.modalities if m not in self.drop]
            if not kept:
                raise ValueError(f"--drop {' '.join(self.drop)}: that leaves none of the model's "
                                 f"modalities ({names}); keep at least one")  # fmt: skip
            model = model.with_modalities(kept)
        if self.exchange_off:
            switch_exchange_off(model, self.exchange_off)
        return model

    def data_config(self, config: Config) -> Config:
        """``config`` reading only the modalities kept: a dropped camera's files need not
        exist."""
        if not self.drop:
            return config
        kept = copy.deepcopy(config)
        kept.model.modalities = [m for m in config.model.modalities if m not in self.drop]
        return kept

    def describe(self) -> str:
        text = f", without {' and '.join(self.drop)}" if self.drop else ""
        if self.exchange_off:
            text += f", exchange off at {', '.join(self.exchange_off)}"
        return text

    def file_suffix(self) -> str:
        """What tells these scores' default file apart from the plain evaluation's
        (``scores_val_without_depth.json``), so that one never overwrites the other."""
        text = "".join(f"_without_{m}" for m in self.drop)
        text += "".join(f"_exchange_off_{site}" for site in self.exchange_off)
        return text + ("" if self.speed == "exact" else f"_{self.speed}")


class Task:
    """The interface every task implements (see the module docstring)."""

    #: the ``task:`` of configs
    name: str = ""
    #: its config sections
    sections: TaskSections
    #: ``model.<key>``: the exchange threshold θ a model without exchange is inspected at
    threshold_key: str = ""
    #: what ``cenfusion predict`` writes ("predictions", "translations")
    prediction_noun: str = "predictions"
    #: how ``cenfusion compare`` tabulates its runs
    comparison: ComparisonMetrics
    #: whether the backbone ablations of :mod:`cenfusion.experiments.variants` apply
    backbone_ablations: bool = False
    #: whether its training has ``train.modality_dropout`` (a comparison's robustness variant)
    modality_dropout: bool = False
    #: whether the U-Net ablations of :mod:`cenfusion.experiments.variants` apply
    unet_ablations: bool = False
    #: the module that reads and writes the public code's checkpoints of this task
    #: (``recognises_official``, ``import_official``, ``export_official``)
    public_code: ModuleType

    # --- building ---------------------------------------------------------------------------

    def build_model(self, config: Config) -> nn.Module:
        raise NotImplementedError

    def build_datasets(
        self, config: Config, splits: tuple[str, ...] = ("train", "val")
    ) -> dict[str, Dataset]:
        raise NotImplementedError

    def trainer(self, config: Config, resume: bool | str = False, progress: bool = True) -> Trainer:
        """A :class:`~cenfusion.engine.trainer.Trainer` for ``config``, seeded and ready."""
        raise NotImplementedError

    # --- scores -------------------------------------------------------------------------------

    def evaluate(
        self,
        model: nn.Module,
        dataset: Dataset,
        config: Config,
        progress: bool = True,
        analysis: bool = False,
    ) -> dict[str, Any]:
        """``{output: scores}`` of every branch and the ensemble on ``dataset``. ``analysis``:
        one of a trained model's extra evaluations (an input missing, an exchange switched
        off), which a task may score without its costly metrics where its config says so."""
        raise NotImplementedError

    def shared_evaluations(self, config: Config) -> contextlib.AbstractContextManager:
        """A block in which :meth:`evaluate` calls with ``config`` may share what does not
        change between them (a loaded feature network, the real images' features), scores
        unchanged; by default nothing."""
        return contextlib.nullcontext()

    def evaluate_checkpoint(
        self,
        config: Config,
        checkpoint: str | Path,
        split: str,
        options: EvaluateOptions,
        progress: bool = True,
        state: Mapping[str, Tensor] | None = None,
    ) -> tuple[dict[str, Any], str]:
        """``cenfusion evaluate``: the scores of ``checkpoint`` on ``split`` and a title
        (``state``: its ``model`` entry, where already read)."""
        raise NotImplementedError

    def format_scores(self, scores: Mapping[str, Any], title: str = "") -> str:
        raise NotImplementedError

    def validation_score(self, record: Mapping[str, Any]) -> float | None:
        """An epoch record's validation score of the ensemble, the comparison's headline with
        its sign (larger is better); None for an epoch not validated."""
        value = (record.get("val") or {}).get("ensemble", {}).get(self.comparison.headline.key)
        return None if value is None else self.comparison.sign * float(value)

    def scores_from_record(self, record: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """The scores a metrics record's ``val`` entry holds, as :meth:`evaluate` returns them."""
        raise NotImplementedError

    # --- trained models -----------------------------------------------------------------------

    def model_with_weights(
        self,
        config: Config,
        checkpoint: str | Path,
        state: Mapping[str, Tensor] | None = None,
    ) -> nn.Module:
        """The model ``config`` describes with ``checkpoint``'s weights (``state``: its
        ``model`` entry, already read)."""
        model = self.build_model(config)
        if state is None:
            payload = load_checkpoint(checkpoint)
            state = payload["model"]
            if "config" in payload:
                self.warn_if_trained_otherwise(config, checkpoint_config(payload, checkpoint),
                                               checkpoint)  # fmt: skip
        load_model_state(model, state, checkpoint)
        return model

    #: config keys besides ``model.*`` that change what a trained model sees
    preprocessing_keys: tuple[str, ...] = ("data.modality_settings",)

    def warn_if_trained_otherwise(
        self, config: Config, trained: Config, checkpoint: str | Path
    ) -> list[str]:
        """Warn, naming each setting, where ``config`` differs from the one ``checkpoint`` was
        trained with in the model or its inputs' preprocessing (``preprocessing_keys``; where
        the files lie is left out); returns those differences."""
        here, then = config.to_dict(), trained.to_dict()
        differences = []
        for key in ("model", *self.preprocessing_keys):
            found = _differences(_at(then, key), _at(here, key))
            differences += [f"{key}{sub}: {a!r} in training, {b!r} here" for sub, a, b in found]
        if differences:
            warnings.warn(
                f"the config here differs from the one {str(checkpoint)!r} was trained with "
                "(the scores use the values here; `cenfusion evaluate` without a config takes "
                "the training's): " + "; ".join(differences),
                stacklevel=3,
            )
        return differences

    def load_trained(
        self, checkpoint: str | Path, config: Config, state: Mapping[str, Tensor]
    ) -> nn.Module:
        """The model ``config`` describes with the checkpoint's weights, in evaluation mode."""
        return self.model_with_weights(config, checkpoint, state).eval()

    def read_inputs(
        self, model: nn.Module, config: Config, files: Mapping[str, Path]
    ) -> dict[str, Tensor]:
        """``{modality: (C, H, W)}`` read from ``files`` as the model was trained to see them."""
        raise NotImplementedError

    def inference_mode(self, model: nn.Module, config: Config) -> contextlib.AbstractContextManager:
        """The mode predictions are made in (default: ``model.eval()``)."""
        model.eval()
        return contextlib.nullcontext()

    def predict_files(
        self, model: nn.Module, config: Config, files: Mapping[str, Path], output: str | Path
    ) -> dict[str, Path]:
        """Predict one input set ``{modality: file}``; returns ``{what: path written}``."""
        raise NotImplementedError

    # --- the public code's checkpoints ----------------------------------------------------------

    def recognises_official(self, official: Mapping[str, Tensor]) -> bool:
        """Whether a public-code state dict is one of this task's networks."""
        return self.public_code.recognises_official(official)

    def import_official(
        self, official: Mapping[str, Tensor], modalities: list[str] | None
    ) -> tuple[dict[str, Any], str]:
        """A cenfusion checkpoint payload from a public-code state dict, and a description."""
        return self.public_code.import_official(official, modalities)

    def export_official(
        self, payload: Mapping[str, Any], official: dict[str, Tensor]
    ) -> tuple[Any, str]:
        """What to save for the public code (``official``: the converted state dict)."""
        return self.public_code.export_official(payload, official)


# where a modality's files lie, and the ImageNet file a backbone started from: not what a
# trained model sees
_LOCATION = {"folder", "ext", "pretrained"}


def _at(data: Any, key: str) -> Any:
    """The value at dotted ``key`` of nested dicts (None where a part is missing)."""
    for part in key.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _differences(before: Any, after: Any, where: str = "") -> list[tuple[str, Any, Any]]:
    """``(".sub.key", before, after)`` for each leaf that differs, location keys left out."""
    if isinstance(before, dict) and isinstance(after, dict):
        found = []
        for name in sorted({*before, *after} - _LOCATION):
            found += _differences(before.get(name), after.get(name), f"{where}.{name}")
        return found
    return [] if before == after else [(where, before, after)]
