"""Train every (method, seed) cell of a comparison with the same budget; resumable.

Each cell is an ordinary training run in ``OUTPUT/cells/<method>/seed<k>/`` (config, checkpoints,
``metrics.jsonl``, ``train.log``) that ends with a ``result.json``. A rerun skips the cells
with a result and resumes a cell that was cut off from its last checkpoint, so a grid killed
half-way loses at most one epoch. A cell whose loss turns non-finite is recorded as
``diverged``, one that raises as ``failed`` (with the error): both appear in the table.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from cenfusion.analysis import exchanging_sites_by_stage, switch_exchange_off
from cenfusion.config import Config, load_config
from cenfusion.engine.checkpoint import write_text_atomic
from cenfusion.engine.convergence import has_converged, last_quarter_gain
from cenfusion.engine.faults import NonFiniteLossError
from cenfusion.engine.trainer import show_bars
from cenfusion.experiments.report import format_markdown, summarise
from cenfusion.experiments.variants import Variant, resolve_task_variants
from cenfusion.models.fusion import fusion_parameter_count
from cenfusion.tasks import get_task

STATUSES = ("ok", "diverged", "failed", "pending")


@dataclass
class CellResult:
    """The outcome of one (method, seed) training run."""

    method: str
    seed: int
    status: str
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    total_params: int = 0
    fusion_params: int = 0
    train_seconds: float = 0.0
    # the test scoring after training (the test split, each modality alone, each stage's
    # exchange off); None for runs from before it was timed
    test_seconds: float | None = None
    error: str = ""
    # validation's headline metric (the ensemble's) after each validated epoch: [epoch, value]
    val_curve: list[list[float]] = field(default_factory=list)
    # its gain over the last quarter of training: convergence asks for a small one
    last_quarter_gain: float | None = None
    # the schedule's epochs (more were trained with train.until_converged), and the headline
    # at its end, from the cell's first run: a protocol tunes on that score, so a cell trained
    # on later to converge keeps the choice it took part in
    scheduled_epochs: int | None = None
    schedule_end_score: float | None = None
    # the scores on the held-out test split, when the data set has one (data.test_list)
    test_scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    # the command that trains (or tabulates) this cell alone
    command: str = ""
    # where it trained (CPU model and capability, threads, torch, date)
    machine: dict[str, Any] = field(default_factory=dict)
    # with every modality but one missing: {present modality: scores on the test split}, for
    # the models that run on a subset (CEN and its ablations; not the fusion baselines)
    test_single_modality: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # with the exchange switched off at every site of one stage: {stage: scores on the test
    # split}, for the models that exchange; the drop is what that stage's exchange carries
    test_exchange_off: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # each epoch's training record without its validation scores: losses, alpha, and for CEN
    # the exchange monitors (``penalised_below_theta``: the share of each site's penalised
    # channels below theta, per modality), to plot the exchange over training
    epochs: list[dict[str, Any]] = field(default_factory=list)
    # the SHA-256 of each file the run started from, by its config key (``model.pretrained``):
    # runs compared with each other must have started from the same trunk
    inputs: dict[str, str] = field(default_factory=dict)


@dataclass
class Comparison:
    """A grid of methods x seeds over one base config."""

    config_path: str
    methods: Sequence[str]
    seeds: int = 3
    output_dir: str | Path | None = None
    overrides: Sequence[str] = ()
    retry_failed: bool = False
    progress: bool = True
    command: str = ""
    report_only: bool = False  # tabulate the finished runs, train nothing (others: "pending")
    # each cell's result as RESULTS/<method>/seed<k>.json (small, to commit) instead of in its
    # run folder; a grid continues from the results found there
    results_dir: str | Path | None = None
    only_seeds: Sequence[int] | None = None  # train these seeds only; the others: as found

    def base_config(self) -> Config:
        return load_config(self.config_path, list(self.overrides))

    def variants(self) -> list[Variant]:
        base = self.base_config()
        task = get_task(base.task)
        return resolve_task_variants(self.methods, base.model.modalities, task)

    def directory(self) -> Path:
        if self.output_dir is not None:
            return Path(self.output_dir)
        return Path(self.base_config().output_dir) / "compare"

    def cell_config(self, variant: Variant, seed: int) -> Config:
        base_seed = self.base_config().train.seed
        cell_dir = self.directory() / "cells" / variant.name / f"seed{seed}"
        overrides = [
            *self.overrides,
            *variant.overrides,
            f"train.seed={base_seed + seed}",
            f"output_dir={cell_dir}",
        ]
        return load_config(self.config_path, overrides)

    def run(self) -> dict[str, Any]:
        """Train what is missing, then write ``results.json`` and ``results.md``; return them."""
        base = self.base_config()
        get_task(base.task).build_datasets(base)  # a missing data set fails here, once
        variants = self.variants()
        # seed-major: a grid cut short still has every method at the first seeds
        cells = [(v, s) for s in range(self.seeds) for v in variants]
        directory = self.directory()
        results: list[CellResult] = []
        bar = tqdm(
            total=len(cells), desc="compare", disable=not show_bars(self.progress), unit="run"
        )
        for variant, seed in cells:
            bar.set_postfix_str(f"{variant.name} seed {seed}")
            train = self.only_seeds is None or seed in self.only_seeds
            results.append(self.run_cell(variant, seed, train=train))
            bar.update()
        bar.close()
        report = {
            "task": base.task,
            "config": str(self.config_path),
            "overrides": list(self.overrides),
            "command": self.command,
            "methods": [v.name for v in variants],
            "descriptions": {v.name: v.description for v in variants},
            "seeds": self.seeds,
            "modalities": list(base.model.modalities),
            "machine": machine_info(),
            "cells": [asdict(r) for r in results],
        }
        report["summary"] = summarise(report)
        directory.mkdir(parents=True, exist_ok=True)
        write_text_atomic(directory / "results.json", json.dumps(report, indent=2))
        write_text_atomic(directory / "results.md", format_markdown(report))
        return report

    def run_parallel(self, jobs: int) -> dict[str, Any]:
        """Train the missing cells ``jobs`` at a time, each in its own ``cenfusion compare``
        process (:meth:`cell_command`; on a GPU several cells share the device), then write the
        tables as :meth:`run` does. Needs ``results_dir`` or the default per-run results."""
        if jobs < 1:
            raise ValueError(f"--jobs: expected at least 1, got {jobs}")
        base = self.base_config()
        get_task(base.task).build_datasets(base)
        pending = [
            (variant, seed)
            for seed in range(self.seeds)
            for variant in self.variants()
            if (self.only_seeds is None or seed in self.only_seeds)
            and not self._finished(variant, seed)
        ]
        running: list[subprocess.Popen] = []
        failed = []
        for variant, seed in pending:
            while len(running) >= jobs:
                running = self._reap(running, failed)
            command = shlex.split(self.cell_command(variant, seed)) + ["--no-progress"]
            if self.retry_failed:
                command.append("--retry-failed")
            command[0:1] = [sys.executable, "-m", "cenfusion"]
            running.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
        while running:
            running = self._reap(running, failed)
        if failed:
            print(f"{len(failed)} cell process(es) exited with an error: {failed}")
        return dataclasses.replace(self, report_only=True).run()

    def _finished(self, variant: Variant, seed: int) -> bool:
        path = self.result_path(variant, seed)
        if not path.is_file():
            return False
        status = json.loads(path.read_text()).get("status")
        return status == "ok" or not self.retry_failed

    @staticmethod
    def _reap(running: list[subprocess.Popen], failed: list[str]) -> list[subprocess.Popen]:
        """Wait a little; the processes still running (failures noted in ``failed``)."""
        time.sleep(0.5)
        still = []
        for process in running:
            code = process.poll()
            if code is None:
                still.append(process)
            elif code != 0:
                failed.append(shlex.join(str(a) for a in process.args))
        return still

    def result_path(self, variant: Variant, seed: int) -> Path:
        """Where a cell's result is kept (see ``results_dir``)."""
        if self.results_dir is not None:
            return Path(self.results_dir) / variant.name / f"seed{seed}.json"
        return Path(self.cell_config(variant, seed).output_dir) / "result.json"

    def cell_command(self, variant: Variant, seed: int) -> str:
        """The command that trains this cell alone (and rewrites the tables)."""
        command = ["cenfusion", "compare", str(self.config_path), *self.overrides]
        command += ["--methods", variant.name, "--seeds", str(self.seeds)]
        command += ["--only-seed", str(seed)]
        if self.output_dir is not None:
            command += ["--output", str(self.output_dir)]
        if self.results_dir is not None:
            command += ["--results", str(self.results_dir)]
        return shlex.join(command)

    def run_cell(self, variant: Variant, seed: int, train: bool = True) -> CellResult:
        """One cell: reuse its result, or train (resuming) and write it (with ``train``)."""
        config = self.cell_config(variant, seed)
        cell_dir = Path(config.output_dir)
        result_path = self.result_path(variant, seed)
        previous = None
        if result_path.is_file():
            previous = CellResult(**json.loads(result_path.read_text()))
            if previous.status == "ok" and not trains_on(previous, config):
                return previous
            if previous.status != "ok" and not self.retry_failed:
                return previous
        if self.report_only or not train:
            ok = previous is not None and previous.status == "ok"
            return previous if ok else CellResult(variant.name, seed, "pending")
        cell_dir.mkdir(parents=True, exist_ok=True)
        result = train_cell(config, variant.name, seed)
        result.command = self.cell_command(variant, seed)
        if previous is not None and previous.status == "ok":  # trained on to converge
            result.schedule_end_score = schedule_end_score(previous, config)
        write_text_atomic(result_path, json.dumps(asdict(result), indent=2))
        return result


def train_cell(config: Config, method: str, seed: int) -> CellResult:
    """Train and evaluate one configured run; its console output goes to ``train.log``."""
    cell_dir = Path(config.output_dir)
    # a kill during the checkpoint rotation can leave previous.pt alone: resume from it too
    resume = any((cell_dir / name).is_file() for name in ("last.pt", "previous.pt"))
    result = CellResult(method, seed, "ok", machine=machine_info(), inputs=input_files(config))
    with (cell_dir / "train.log").open("a", buffering=1) as log, contextlib.redirect_stdout(log):
        try:
            trainer = get_task(config.task).trainer(config, resume=resume, progress=False)
            counted = getattr(trainer.model, "generator", trainer.model)
            result.total_params = sum(p.numel() for p in counted.parameters())
            result.fusion_params = fusion_parameter_count(counted)
            history = trainer.fit()
            result.train_seconds = sum(float(r.get("seconds", 0.0)) for r in history)
            if not history or "val" not in history[-1]:
                raise RuntimeError("training ended without a validation result")
            result.scores = history[-1]["val"]
            result.epochs = [{k: v for k, v in r.items() if k != "val"} for r in history]
            task = get_task(config.task)
            result.val_curve = validation_curve(history, task.comparison.headline.key)
            result.last_quarter_gain = last_quarter_gain(result.val_curve, len(history))
            result.scheduled_epochs = trainer.parts.epochs
            result.schedule_end_score = schedule_end_score(result, config)
            if (Path(config.data.root) / config.data.test_list).is_file():
                start = time.perf_counter()
                test = task.build_datasets(config, ("test",))["test"]
                with task.shared_evaluations(config):
                    scores = task.evaluate(trainer.model, test, config, progress=False)
                    result.test_scores = {name: s.as_dict() for name, s in scores.items()}
                    model = trainer.model
                    result.test_single_modality = single_modality_scores(model, test, config)
                    result.test_exchange_off = exchange_off_scores(model, test, config)
                result.test_seconds = time.perf_counter() - start
        except NonFiniteLossError as error:
            result.status, result.error = "diverged", str(error)
        except Exception as error:  # a crashing method is a result of the comparison, too
            result.status, result.error = "failed", f"{type(error).__name__}: {error}"
        if result.status != "ok":
            print(f"{method} seed {seed}: {result.status}: {result.error}")
    return result


def single_modality_scores(model: Any, dataset: Any, config: Config) -> dict[str, dict]:
    """``{modality: {output: scores}}`` of the model with only that modality present (a
    camera missing), on ``dataset``; empty for one modality or a model that needs them all."""
    modalities = list(getattr(model, "modalities", ()))
    if len(modalities) < 2 or not hasattr(model, "with_modalities"):
        return {}
    task = get_task(config.task)
    found = {}
    for name in modalities:
        try:
            alone = model.with_modalities([name])
        except ValueError:  # the fusion baselines mix every modality
            return {}
        scores = task.evaluate(alone, dataset, config, progress=False, analysis=True)
        found[name] = {output: s.as_dict() for output, s in scores.items()}
    return found


def exchange_off_scores(model: Any, dataset: Any, config: Config) -> dict[str, dict]:
    """``{stage: {output: scores}}`` of a copy of the model with the exchange switched off at
    every site of that stage (``cenfusion evaluate --exchange-off``), on ``dataset``; empty
    for a model that exchanges nowhere. ``model`` itself is left as it was."""
    task = get_task(config.task)
    found = {}
    for stage, sites in exchanging_sites_by_stage(model).items():
        knocked_out = copy.deepcopy(model)
        switch_exchange_off(knocked_out, sites)
        scores = task.evaluate(knocked_out, dataset, config, progress=False, analysis=True)
        found[stage] = {output: s.as_dict() for output, s in scores.items()}
    return found


def validation_curve(history: list[dict[str, Any]], metric: str) -> list[list[float]]:
    """``[[epoch, the ensemble's metric], ...]`` of the validated epochs of a run."""
    return [
        [int(r["epoch"]), float(r["val"]["ensemble"][metric])]
        for r in history
        if "val" in r and "ensemble" in r["val"] and r["val"]["ensemble"].get(metric) is not None
    ]


def trains_on(result: CellResult, config: Config) -> bool:
    """Whether a finished run trains on: ``train.until_converged`` asks for a converged run,
    this one has not converged (``train.converged_gain``) and has trained fewer epochs than
    its schedule and that allowance (a run from before the setting counts as all schedule)."""
    allowance = config.train.until_converged
    if result.status != "ok" or not allowance:
        return False
    trained = len(result.epochs)
    if trained >= (result.scheduled_epochs or trained) + allowance:
        return False
    sign = get_task(config.task).comparison.sign
    curve = [[epoch, sign * value] for epoch, value in result.val_curve]
    return not has_converged(curve, trained, config.train.converged_gain)


def schedule_end_score(result: CellResult, config: Config) -> float | None:
    """The ensemble's validation headline at the end of the schedule: recorded, or read from
    the validation curve (the last value at or before the scheduled epochs; a run without
    ``scheduled_epochs`` predates extensions, so its final score is the schedule's)."""
    if result.schedule_end_score is not None:
        return result.schedule_end_score
    end = result.scheduled_epochs if result.scheduled_epochs is not None else math.inf
    values = [value for epoch, value in result.val_curve if epoch <= end]
    if values:
        return float(values[-1])
    key = get_task(config.task).comparison.headline.key
    value = (result.scores or {}).get("ensemble", {}).get(key)
    return None if value is None else float(value)


def _cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else empty."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def input_files(config: Config) -> dict[str, str]:
    """``{config key: SHA-256}`` of the files a run starts from: the pretrained trunk
    (``model.pretrained``) where one is set; empty otherwise."""
    path = getattr(config.model, "pretrained", None)
    if not path:
        return {}
    digest = hashlib.sha256()
    with Path(path).open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return {"model.pretrained": digest.hexdigest()}


def machine_info() -> dict[str, Any]:
    """Where the timings come from."""
    return {
        "platform": platform.platform(),
        "processor": _cpu_model() or platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": time.strftime("%Y-%m-%d"),
    }
