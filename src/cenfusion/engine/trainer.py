"""The training loop every task shares: resuming, the epoch and step loops, checkpoints, logs.

A task does not subclass the trainer; it hands it the parts (:class:`TrainingParts`): the
model, its optimisers and data sets, one function that takes an optimiser step, the hooks
that run at the start and after the end of each epoch, per-epoch probes (the exchange
statistics of :mod:`cenfusion.analysis.probes`) and a table of what to print. The fault
handling lives here once: a checkpoint after every epoch, every ``train.checkpoint_every``
steps and on SIGINT/SIGTERM, with the position inside the epoch and every process's random
state, so that a resumed run continues exactly.

Building a run takes two calls, in this order, because the seed must be set before the model
is initialised: :func:`prepare_run` (process group, batch plan, seed), then the task builds
its parts, then ``Trainer(config, run, parts)``.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import yaml
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm import tqdm

from cenfusion.config import Config
from cenfusion.engine import distributed
from cenfusion.engine.checkpoint import (
    RESUME_NAMES,
    find_resume_checkpoint,
    load_model_state,
    require_entries,
    restore_rng_state,
    rng_state,
    rotate_and_save,
)
from cenfusion.engine.convergence import last_quarter_gain
from cenfusion.engine.faults import StopRequests, TrainingInterrupted
from cenfusion.engine.loop import (
    BatchPlan,
    EpochProgress,
    StepResult,
    check_train_settings,
    deterministic_mode,
    epoch_batches,
)
from cenfusion.engine.run_log import RunLog
from cenfusion.engine.speed import SPEEDS, choose_settings, host_capabilities

StepFunction = Callable[[list[dict[str, Tensor]], int, int, "StopRequests | None"], StepResult]
"""``step(micro_batches, epoch, step, stop) -> StepResult``: one optimiser step."""

EpochHook = Callable[[int, int, dict[str, Any]], None]
"""``hook(epoch, epochs, record)`` after an epoch (0-based ``epoch``): validation, samples."""


class EpochProbe(Protocol):
    """Something measured over an epoch (see :mod:`cenfusion.analysis.probes`)."""

    def begin_epoch(self) -> None: ...

    def live(self) -> dict[str, str]:
        """Shown on the progress bar after every step."""
        ...

    def end_epoch(self) -> dict[str, Any]:
        """Entries of the epoch's record."""
        ...


@dataclass(frozen=True)
class Shown:
    """One value the trainer prints: ``label`` and the record (or step) entry ``key``,
    formatted with ``spec``."""

    label: str
    key: str
    spec: str = ".4f"

    def format(self, values: dict[str, Any]) -> str:
        return f"{values.get(self.key, float('nan')):{self.spec}}"


@dataclass(frozen=True)
class RunSetup:
    """What :func:`prepare_run` decided before the model exists."""

    device: torch.device
    main: bool
    plan: BatchPlan


@dataclass
class TrainingParts:
    """Everything task-specific a :class:`Trainer` runs.

    ``model`` is what checkpoints hold (it needs ``modalities`` and ``ensemble``);
    ``optimisers`` are saved under their keys; ``datasets["train"]`` is iterated;
    ``epochs`` is the length of the schedule. ``start_epoch(epoch)`` puts the model in
    training mode and applies the schedule, its last stage beyond its end (default:
    ``model.train()``);
    ``epoch_entries()`` adds entries (learning rates) after the step means; ``after_epoch``
    hooks run in order; ``step_shown`` and ``epoch_shown`` say what the progress bar and the
    line after each epoch print (alpha and the time always follow);
    ``validation_score(record)`` reads an epoch's validation score, larger is better (None:
    not validated), for ``train.until_converged``.
    """

    kind: str
    model: nn.Module
    optimisers: dict[str, torch.optim.Optimizer]
    datasets: dict[str, Dataset]
    step: StepFunction
    epochs: int
    start_epoch: Callable[[int], None] | None = None
    epoch_entries: Callable[[], dict[str, Any]] | None = None
    after_epoch: Sequence[EpochHook] = ()
    probes: Sequence[EpochProbe] = ()
    step_shown: Sequence[Shown] = ()
    epoch_shown: Sequence[Shown] = field(default_factory=tuple)
    validation_score: Callable[[dict[str, Any]], float | None] | None = None


def prepare_run(config: Config) -> RunSetup:
    """Join the process group, check the batch plan, resolve ``train.speed`` (``fast``: this
    host's choice of precision, channels_last and compile is written into ``config.train``)
    and seed the model's initialisation."""
    device = distributed.setup()
    plan = check_train_settings(config)
    t = config.train
    if t.speed not in SPEEDS:
        raise ValueError(f"train.speed: expected one of {SPEEDS}, got {t.speed!r}")
    if t.speed != "exact":
        settings = choose_settings("training", t.speed, host_capabilities(device))
        t.precision, t.channels_last, t.compile = (
            settings.precision,
            settings.channels_last,
            settings.compile,
        )
        if distributed.is_main():
            print(f"train.speed {t.speed}: {settings.describe()}")
    torch.manual_seed(config.train.seed)
    return RunSetup(device, distributed.is_main(), plan)


def show_bars(progress: bool) -> bool:
    """Progress bars only where someone watches them: asked for, and on a terminal (a bar
    redrawn into a log file is one endless line; the trainer prints plain lines there)."""
    return progress and sys.stderr.isatty()


def due(every: int, epoch: int, epochs: int) -> bool:
    """Whether a thing done every ``every`` epochs (0: never) runs after ``epoch`` (0-based) of
    ``epochs``; the last epoch always counts."""
    return bool(every) and ((epoch + 1) % every == 0 or epoch + 1 == epochs)


def samples_path(output_dir: str | Path, epoch: int) -> Path:
    """Where the sample grid after ``epoch`` (0-based) goes."""
    return Path(output_dir) / "samples" / f"epoch_{epoch + 1:03d}.png"


class Trainer:
    """Train ``parts`` to the end of their schedule (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        run: RunSetup,
        parts: TrainingParts,
        resume: bool | str = False,
        progress: bool = True,
    ) -> None:
        if config.train.until_converged and parts.validation_score is None:
            raise ValueError(
                f"train.until_converged: a {parts.kind} trainer without a validation score"
            )
        self.config = config
        self.parts = parts
        self.model = parts.model
        self.optimisers = parts.optimisers
        self.datasets = parts.datasets
        self.device = run.device
        self.main = run.main
        self.plan = run.plan
        self.progress = progress and self.main
        # not on a terminal: a plain line every tenth of an epoch instead of a bar
        self.bars = show_bars(self.progress)
        self.output_dir = Path(config.output_dir)
        distributed.seed_process(config.train.seed)
        self.start_epoch = 0
        self.resume_progress: EpochProgress | None = None
        self.history: list[dict[str, Any]] = []
        self.resumed = False
        if resume:
            self._resume(resume)
        self.log = RunLog(
            self.output_dir, self.model.modalities, config.train.tensorboard, self.main
        )

    def _resume(self, resume: bool | str) -> None:
        if resume is True and not any((self.output_dir / n).exists() for n in RESUME_NAMES):
            if self.main:
                warnings.warn(
                    f"--resume: no checkpoint in {str(self.output_dir)!r} yet; starting from "
                    "scratch",
                    stacklevel=3,
                )
            return
        path, payload = find_resume_checkpoint(resume, self.output_dir, self.main)
        optimisers = self.parts.optimisers
        keys = ("model", *optimisers, "epoch", "rng")
        require_entries(payload, keys, path, f"a {self.parts.kind} training checkpoint")
        load_model_state(self.model, payload["model"], path)
        for key, optimiser in optimisers.items():
            optimiser.load_state_dict(payload[key])
        self.start_epoch = int(payload["epoch"]) + 1
        if "position" in payload:
            epoch, progress = EpochProgress.from_json(payload["position"])
            if epoch == self.start_epoch:
                self.resume_progress = progress
        state = distributed.rank_rng_state(payload)
        if state is not None:
            restore_rng_state(state)
        self.history = json.loads(payload.get("history", "[]"))
        self.resumed = True
        if self.main:
            where = f"epoch {self.start_epoch + 1}"
            if self.resume_progress is not None:
                where += f", step {self.resume_progress.step + 1}"
            print(f"resumed from {path} at {where}")

    def fit(self) -> list[dict[str, Any]]:
        """Train to the end of the schedule, and on until converged with
        ``train.until_converged`` (see :meth:`continues`); returns the per-epoch records.

        Raises :class:`~cenfusion.engine.faults.NonFiniteLossError` (``train.nonfinite: stop``)
        and :class:`~cenfusion.engine.faults.TrainingInterrupted` (SIGINT/SIGTERM, after saving
        a checkpoint).
        """
        config = self.config
        epochs = self.parts.epochs
        if self.main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            config_yaml = yaml.safe_dump(config.to_dict(), sort_keys=False)
            (self.output_dir / "config.yaml").write_text(config_yaml)
            if self.resumed:  # drop records the checkpoint does not know (written after it)
                self.log.rewrite(self.history)
        deterministic = deterministic_mode(config.train.deterministic, config.train.seed)
        with deterministic, StopRequests() as stop:
            epoch = self.start_epoch
            while self.continues(epoch):
                # past the schedule every epoch is, for now, the last (validated, counted)
                shown = max(epochs, epoch + 1)
                record = self.train_epoch(epoch, shown, stop)
                start = time.perf_counter()
                for hook in self.parts.after_epoch:
                    hook(epoch, shown, record)
                record["after_epoch_seconds"] = time.perf_counter() - start  # validation, samples
                self.history.append(record)
                self.log.write(record, self.history)
                self.save(epoch)
                epoch += 1
        distributed.barrier()
        self.log.close()
        return self.history

    def continues(self, done: int) -> bool:
        """Whether another epoch trains after ``done`` epochs: the schedule's, then with
        ``train.until_converged`` N, up to N more at its last rates while the validation score
        gained ``train.converged_gain`` or more over the last quarter of the epochs done. The
        answer depends on the history only, so a resumed run takes the same decisions."""
        scheduled, t = self.parts.epochs, self.config.train
        if done < scheduled:
            return True
        score = self.parts.validation_score
        if not t.until_converged or score is None or done >= scheduled + t.until_converged:
            return False
        curve = [(r["epoch"], s) for r in self.history if (s := score(r)) is not None]
        gain = last_quarter_gain(curve, done)
        if gain is not None and gain < t.converged_gain:
            return False
        if self.main:
            shown = "not measured" if gain is None else f"{gain:+.4g}"
            print(
                f"after epoch {done}: validation gain over the last quarter {shown} (converged "
                f"below {t.converged_gain:g}): epoch {done + 1} at the last rates "
                f"({done + 1 - scheduled} of at most {t.until_converged} more)"
            )
        return True

    def train_epoch(
        self, epoch: int, epochs: int, stop: StopRequests | None = None
    ) -> dict[str, Any]:
        """One epoch (or its rest, when resuming inside it); returns its record."""
        config, parts = self.config, self.parts
        if parts.start_epoch is not None:
            parts.start_epoch(epoch)
        else:
            self.model.train()
        steps = self.plan.steps(len(self.datasets["train"]), config.train.max_steps_per_epoch)
        progress = EpochProgress()
        if epoch == self.start_epoch and self.resume_progress is not None:
            progress = self.resume_progress
        batches = epoch_batches(
            self.datasets["train"],
            self.plan,
            config.data.workers,
            config.train.seed,
            epoch,
            distributed.rank(),
            steps,
            progress.step,
            config.train.per_sample_rng,
        )
        start = time.perf_counter() - progress.seconds
        bar = tqdm(
            total=steps,
            initial=progress.step,
            desc=f"epoch {epoch + 1}/{epochs}",
            disable=not self.bars,
            leave=False,
        )
        line_every = max(1, steps // 10)
        for probe in parts.probes:
            probe.begin_epoch()
        while progress.step < steps:
            micro_batches = [next(batches) for _ in range(self.plan.accumulate_steps)]
            result = parts.step(micro_batches, epoch, progress.step, stop)
            progress.add(result)
            if not result.finite and self.main:
                reason = self._skipped_step_message(result.parts)
                print(f"epoch {epoch + 1}, step {progress.step}: {reason}")
            postfix = {shown.label: shown.format(result.parts) for shown in parts.step_shown}
            for probe in parts.probes:
                postfix.update(probe.live())
            bar.set_postfix(**postfix)
            bar.update()
            if self.progress and not self.bars and progress.step % line_every == 0:
                shown = ", ".join(f"{k} {v}" for k, v in postfix.items())
                print(f"epoch {epoch + 1}/{epochs}, step {progress.step}/{steps}: {shown}")
            progress.seconds = time.perf_counter() - start
            if result.stop:
                bar.close()
                path = self.save(epoch - 1, progress.to_json(epoch))
                raise TrainingInterrupted(
                    f"interrupted at epoch {epoch + 1}, step {progress.step}: checkpoint saved "
                    f"to {path}; continue with --resume",
                    str(path) if path else None,
                )
            every = config.train.checkpoint_every
            if every and progress.step % every == 0 and progress.step < steps:
                self.save(epoch - 1, progress.to_json(epoch))
        bar.close()
        record = {
            "epoch": epoch + 1,
            **progress.means(),
            **(parts.epoch_entries() if parts.epoch_entries is not None else {}),
            "alpha": self.model.ensemble.weights().tolist(),
        }
        for probe in parts.probes:
            record.update(probe.end_epoch())
        record["seconds"] = time.perf_counter() - start
        if progress.skipped:
            record["skipped_steps"] = progress.skipped
        if self.main:
            print(self._epoch_summary(record, epochs))
        return record

    def _skipped_step_message(self, values: dict[str, float]) -> str:
        shown = self.parts.step_shown
        if len(shown) == 1:
            what = str(values.get(shown[0].key, float("nan")))
        else:
            what = "not finite (" + ", ".join(f"{s.key} {values.get(s.key)}" for s in shown) + ")"
        return f"loss is {what}, step skipped (train.nonfinite)"

    def _epoch_summary(self, record: dict[str, Any], epochs: int) -> str:
        values = [f"{s.label} {s.format(record)}" for s in self.parts.epoch_shown]
        values.append(f"alpha {[round(a, 3) for a in record['alpha']]}")
        values.append(f"{record['seconds']:.1f} s")
        return f"epoch {record['epoch']}/{epochs}: " + ", ".join(values)

    def save(self, epoch: int, position: str | None = None) -> Path | None:
        """Checkpoint after ``epoch`` (0-based; -1: none finished) and, with ``position``, the
        steps done in the next one. Every process takes part (their RNG states are gathered);
        rank 0 writes. Returns the path on rank 0."""
        states = distributed.all_gather_objects(rng_state())
        if not self.main:
            return None
        payload = {
            "model": self.model.state_dict(),
            **{key: optimiser.state_dict() for key, optimiser in self.parts.optimisers.items()},
            "epoch": epoch,
            "rng": states[0],
            "config": json.dumps(self.config.to_dict()),
            "history": json.dumps(self.history),
        }
        if len(states) > 1:
            payload["rng_per_rank"] = states
        if position is not None:
            payload["position"] = position
        return rotate_and_save(payload, self.output_dir)
