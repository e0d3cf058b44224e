"""What every cenfusion trainer shares: resuming, the epoch and step loops, checkpoints.

A task's trainer (:class:`~cenfusion.engine.segmentation.SegmentationTrainer`,
:class:`~cenfusion.engine.translation.TranslationTrainer`) builds its model, optimisers and data
between :meth:`Trainer._begin` and :meth:`Trainer._finish_setup`, and says how one step trains
(``train_step``), what an epoch records and prints, and what runs after an epoch (validation,
sample grids). The fault handling lives here once: a checkpoint after every epoch, every
``train.checkpoint_every`` steps and on SIGINT/SIGTERM, with the position inside the epoch and
every process's random state, so that a resumed run continues exactly.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor, nn
from tqdm import tqdm

from cenfusion.analysis.exchange_stats import exchanged_fraction, exchanged_fraction_by_stage
from cenfusion.config import Config
from cenfusion.engine import distributed
from cenfusion.engine.checkpoint import (
    find_resume_checkpoint,
    load_model_state,
    require_entries,
    restore_rng_state,
    rng_state,
    rotate_and_save,
)
from cenfusion.engine.faults import StopRequests, TrainingInterrupted
from cenfusion.engine.loop import (
    BatchPlan,
    EpochProgress,
    StepResult,
    check_train_settings,
    deterministic_mode,
    epoch_batches,
)
from cenfusion.engine.run_log import RunLog, theorem_monitor, theorem_record


class Trainer:
    """The shared skeleton; a subclass fills in the task (see the module docstring)."""

    #: "a {kind} training checkpoint" in the error for a checkpoint of something else
    kind = ""
    config: Config
    model: nn.Module
    datasets: dict[str, Any]

    def _begin(self, config: Config, progress: bool) -> None:
        """Before the model is built: the process group, the batch plan, the seed."""
        self.config = config
        self.output_dir = Path(config.output_dir)
        self.device = distributed.setup()
        self.main = distributed.is_main()
        self.progress = progress and self.main
        self.plan: BatchPlan = check_train_settings(config)
        torch.manual_seed(config.train.seed)

    def _finish_setup(self, resume: bool | str) -> None:
        """After the model, optimisers and data exist: per-process streams, resuming, the log."""
        distributed.seed_process(self.config.train.seed)
        self.start_epoch = 0
        self.resume_progress: EpochProgress | None = None
        self.history: list[dict[str, Any]] = []
        self.resumed = False
        if resume:
            self._resume(resume)
        self.log = RunLog(
            self.output_dir, self.model.modalities, self.config.train.tensorboard, self.main
        )

    # --- what a task says -----------------------------------------------------------------

    def optimisers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimisers by their checkpoint key."""
        raise NotImplementedError

    def total_epochs(self) -> int:
        raise NotImplementedError

    def start_epoch_training(self, epoch: int) -> None:
        """Train mode and whatever the schedule sets at the start of ``epoch``."""
        self.model.train()

    def train_step(
        self,
        micro_batches: list[dict[str, Tensor]],
        epoch: int,
        step: int,
        stop: StopRequests | None = None,
    ) -> StepResult:
        raise NotImplementedError

    def exchange_network(self) -> tuple[nn.Module, float]:
        """The network whose norms exchange, and its threshold (Theorem 1's monitor)."""
        raise NotImplementedError

    def step_postfix(self, parts: dict[str, float]) -> dict[str, str]:
        """What the progress bar shows after a step."""
        raise NotImplementedError

    def skipped_step_message(self, parts: dict[str, float]) -> str:
        """Why a step was skipped (``train.nonfinite: skip``), after "epoch E, step S: "."""
        raise NotImplementedError

    def epoch_record(self) -> dict[str, Any]:
        """Task-specific entries of an epoch's record (learning rates, say)."""
        return {}

    def epoch_summary(self, record: dict[str, Any]) -> str:
        """The line printed after an epoch."""
        raise NotImplementedError

    def after_epoch(self, epoch: int, epochs: int, record: dict[str, Any]) -> None:
        """Validation and sample grids, written into ``record``."""

    # --- shared ---------------------------------------------------------------------------

    @staticmethod
    def due(every: int, epoch: int, epochs: int) -> bool:
        """Whether a thing done every ``every`` epochs (0: never) runs after ``epoch``
        (0-based) of ``epochs``; the last epoch always counts."""
        return bool(every) and ((epoch + 1) % every == 0 or epoch + 1 == epochs)

    def samples_path(self, epoch: int) -> Path:
        """Where the sample grid after ``epoch`` goes."""
        return self.output_dir / "samples" / f"epoch_{epoch + 1:03d}.png"

    def _resume(self, resume: bool | str) -> None:
        path, payload = find_resume_checkpoint(resume, self.output_dir, self.main)
        optimisers = self.optimisers()
        keys = ("model", *optimisers, "epoch", "rng")
        require_entries(payload, keys, path, f"a {self.kind} training checkpoint")
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
        """Train to the end of the schedule; returns the per-epoch records.

        Raises :class:`~cenfusion.engine.faults.NonFiniteLossError` (``train.nonfinite: stop``)
        and :class:`~cenfusion.engine.faults.TrainingInterrupted` (SIGINT/SIGTERM, after saving
        a checkpoint).
        """
        config = self.config
        epochs = self.total_epochs()
        if self.main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            config_yaml = yaml.safe_dump(config.to_dict(), sort_keys=False)
            (self.output_dir / "config.yaml").write_text(config_yaml)
            if self.resumed:  # drop records the checkpoint does not know (written after it)
                self.log.rewrite(self.history)
        deterministic = deterministic_mode(config.train.deterministic, config.train.seed)
        with deterministic, StopRequests() as stop:
            for epoch in range(self.start_epoch, epochs):
                record = self.train_epoch(epoch, epochs, stop)
                self.after_epoch(epoch, epochs, record)
                self.history.append(record)
                self.log.write(record, self.history)
                self.save(epoch)
        distributed.barrier()
        self.log.close()
        return self.history

    def train_epoch(
        self, epoch: int, epochs: int, stop: StopRequests | None = None
    ) -> dict[str, Any]:
        """One epoch (or its rest, when resuming inside it); returns its record."""
        config, model = self.config, self.model
        self.start_epoch_training(epoch)
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
            disable=not self.progress,
            leave=False,
        )
        network, threshold = self.exchange_network()
        theorem = theorem_monitor(network, config)
        while progress.step < steps:
            micro_batches = [next(batches) for _ in range(self.plan.accumulate_steps)]
            result = self.train_step(micro_batches, epoch, progress.step, stop)
            progress.add(result)
            if not result.finite and self.main:
                reason = self.skipped_step_message(result.parts)
                print(f"epoch {epoch + 1}, step {progress.step}: {reason}")
            bar.set_postfix(
                **self.step_postfix(result.parts), exchanged=f"{exchanged_fraction(model):.1%}"
            )
            bar.update()
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
            **self.epoch_record(),
            "alpha": model.ensemble.weights().tolist(),
            "exchanged": exchanged_fraction(model),
            "exchanged_per_stage": exchanged_fraction_by_stage(model),
            "seconds": time.perf_counter() - start,
        }
        if theorem is not None:
            record["theorem1"] = theorem_record(network, config, theorem, threshold)
        if progress.skipped:
            record["skipped_steps"] = progress.skipped
        if self.main:
            print(self.epoch_summary(record))
        return record

    def save(self, epoch: int, position: str | None = None) -> Path | None:
        """Checkpoint after ``epoch`` (0-based; -1: none finished) and, with ``position``, the
        steps done in the next one. Every process takes part (their RNG states are gathered);
        rank 0 writes. Returns the path on rank 0."""
        states = distributed.all_gather_objects(rng_state())
        if not self.main:
            return None
        payload = {
            "model": self.model.state_dict(),
            **{key: optimiser.state_dict() for key, optimiser in self.optimisers().items()},
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
