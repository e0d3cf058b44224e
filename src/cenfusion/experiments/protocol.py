"""A benchmark protocol: the same tuning sweep for every method family on validation, then
paired seeds of the chosen settings, reported on the held-out test split.

A protocol file (YAML, e.g. ``experiments/protocols/bench_rgb_normal.yaml``) names a base
config, *knobs* (each a few named options, every option a list of config overrides, the first
the default) and *families* of methods. A family tunes its knobs one round at a time, in the
order of its ``tune`` list, each round with seed 0 on the validation split:

- the round ``method`` tries each of the family's methods (a fusion family's stages) with the
  settings chosen so far;
- a knob's round tries each option of that knob for the method chosen so far. An option
  written ``{beyond: OTHER, overrides: [...]}`` lies past the sweep's edge at OTHER: it is
  tried only where OTHER wins the other options (a learning rate chosen at the top of its
  sweep gets the next rate up), and where it wins in turn, an option beyond it is tried, so no
  family ends its sweep on an edge the protocol could have crossed. The rule is the same for
  every family; it costs runs only where a choice lands on an edge.

The best validation score (the task's headline metric of the ensemble) wins a round, the
default on ties; the next round starts from it, so a family's sweep costs the sum of its
knobs' option counts (minus the repeats, which are reused). A family with ``setting_from``
(the ablations of CEN) takes another family's chosen setting untuned. Once a family has chosen,
its chosen method trains ``seeds`` seeds and its other methods ``other_seeds`` at the chosen
setting. Seed k is the same initialisation rule and data order for every method (the compare
runner's pairing).

Every run is one ``cenfusion compare`` cell, kept as ``RESULTS/<setting>/<method>/seed<k>.json``
with the command that reruns it, where ``<setting>`` spells the knob options (``lam3e-2_lr5e-3``).
The results folder is the protocol's state: a later call (on any machine) trains what is
missing and the report is rewritten from what is there: ``RESULTS/README.md``, and the same
text at each path of ``report_copies`` (a page the docs link as the benchmark's result).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

import yaml

from cenfusion.config import Config, load_config
from cenfusion.engine.faults import StopRequests, TrainingInterrupted
from cenfusion.experiments.report import (
    cen_minus,
    format_markdown,
    improvement,
    machine_label,
    reported_scores,
    runs_text,
    stats_text,
    summarise,
)
from cenfusion.experiments.runner import CellResult, input_files, machine_info, trains_on
from cenfusion.experiments.statistics import Interval, mean_interval, paired_difference
from cenfusion.experiments.variants import resolve_task_variants, unimodal_modality
from cenfusion.tasks import get_task

METHOD_ROUND = "method"


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice (plain YAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        repeated = sorted({str(k) for k in keys if keys.count(k) > 1})
        if repeated:
            raise yaml.constructor.ConstructorError(
                None, None, f"key(s) {repeated} given twice", node.start_mark
            )
        return super().construct_mapping(node, deep=deep)


@dataclass(frozen=True)
class Family:
    """Methods tuned together: their knobs (``tune``, in round order), the seeds of the chosen
    method and of the others, or the family whose choice they take (``setting_from``)."""

    name: str
    methods: tuple[str, ...]
    tune: tuple[str, ...] = ()
    seeds: int = 3
    other_seeds: int = 3
    setting_from: str | None = None


@dataclass(frozen=True)
class Cell:
    """One training run of the protocol."""

    family: str
    method: str
    setting: tuple[tuple[str, str], ...]  # ((knob, option), ...) in the family's round order
    seed: int
    purpose: str  # "tuning" or "seeds"

    @property
    def setting_name(self) -> str:
        return setting_name(self.setting)


def setting_name(setting: tuple[tuple[str, str], ...]) -> str:
    """``lam3e-2_lr5e-3``; ``default`` for a family without knobs."""
    return "_".join(f"{knob}{option}" for knob, option in setting) or "default"


@dataclass
class Choice:
    """Where a family's sweep stands: the candidates of each round with their validation
    score (None: not run yet; nan: diverged or failed), the winner when every round is done."""

    family: str
    rounds: list[tuple[str, list[tuple[Cell, float | None]]]] = field(default_factory=list)
    method: str | None = None
    setting: tuple[tuple[str, str], ...] | None = None
    missing: list[Cell] = field(default_factory=list)
    error: str = ""

    @property
    def done(self) -> bool:
        return self.method is not None


@dataclass(frozen=True)
class PrepareStep:
    """Commands run once, in order, until ``creates`` exists (a data set, a pre-trained trunk).

    Only the last command should write ``creates``, so that a step cut short runs again; a
    training command in it takes ``--resume`` to continue where it was cut."""

    creates: str
    commands: tuple[str, ...]


@dataclass
class Protocol:
    """A protocol file, read (see the module docstring)."""

    path: Path
    config: str
    overrides: tuple[str, ...]
    results: Path
    output: Path
    knobs: dict[str, dict[str, tuple[str, ...]]]
    families: dict[str, Family]
    beyond: dict[str, dict[str, str]] = field(default_factory=dict)  # knob: {option: edge}
    prepare: tuple[PrepareStep, ...] = ()
    title: str = ""
    report_copies: tuple[Path, ...] = ()  # the report is also written here
    base: Config | None = None  # the base config with the protocol's overrides
    _configs: dict[tuple[tuple[str, str], ...], Config] = field(default_factory=dict, repr=False)

    # -- reading ---------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> Protocol:
        path = Path(path)
        try:
            raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 (safe)
        except (OSError, yaml.YAMLError) as error:
            raise ValueError(f"{path}: cannot read the protocol: {error}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        known = {"title", "config", "overrides", "results", "output", "knobs", "families"}
        known |= {"prepare", "report_copies"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{path}: unknown keys {unknown}; expected {sorted(known)}")
        for key in ("config", "results", "output", "families"):
            if key not in raw:
                raise ValueError(f"{path}: missing {key!r}")
        knobs, beyond = {}, {}
        for knob, options in (raw.get("knobs") or {}).items():
            if knob == METHOD_ROUND or not isinstance(options, dict) or not options:
                raise ValueError(
                    f"{path}: knob {knob!r}: expected a non-empty mapping option -> overrides "
                    f"(and not the reserved name {METHOD_ROUND!r})"
                )
            knobs[str(knob)], beyond[str(knob)] = _knob_options(path, str(knob), options)
        families = {}
        for name, spec in raw["families"].items():
            spec = dict(spec or {})
            allowed = {"methods", "tune", "seeds", "other_seeds", "setting_from"}
            if set(spec) - allowed or "methods" not in spec:
                raise ValueError(
                    f"{path}: family {name!r}: expected keys {sorted(allowed)} with 'methods', "
                    f"got {sorted(spec)}"
                )
            family = Family(
                name=str(name),
                methods=tuple(spec["methods"]),
                tune=tuple(spec.get("tune") or ()),
                seeds=int(spec.get("seeds", 3)),
                other_seeds=int(spec.get("other_seeds", spec.get("seeds", 3))),
                setting_from=spec.get("setting_from"),
            )
            for knob in family.tune:
                if knob != METHOD_ROUND and knob not in knobs:
                    raise ValueError(
                        f"{path}: family {name!r} tunes {knob!r}, which is not a knob "
                        f"({sorted(knobs)}) nor {METHOD_ROUND!r}"
                    )
            if family.setting_from is not None and family.tune:
                raise ValueError(f"{path}: family {name!r}: 'tune' and 'setting_from' exclude")
            families[family.name] = family
        for family in families.values():
            if family.setting_from is not None and family.setting_from not in families:
                raise ValueError(
                    f"{path}: family {family.name!r} takes its setting from unknown family "
                    f"{family.setting_from!r}"
                )
        protocol = cls(
            path=path,
            config=str(raw["config"]),
            overrides=tuple(str(o) for o in raw.get("overrides") or ()),
            results=Path(raw["results"]),
            output=Path(raw["output"]),
            knobs=knobs,
            families=families,
            beyond={knob: edges for knob, edges in beyond.items() if edges},
            prepare=tuple(_prepare_step(path, p) for p in raw.get("prepare") or ()),
            title=str(raw.get("title", "")),
            report_copies=tuple(Path(c) for c in raw.get("report_copies") or ()),
        )
        protocol.base = load_config(protocol.config, list(protocol.overrides))
        protocol.check_methods()
        return protocol

    @property
    def task(self) -> str:
        assert self.base is not None
        return self.base.task

    @property
    def modalities(self) -> list[str]:
        assert self.base is not None
        return list(self.base.model.modalities)

    def check_methods(self) -> None:
        """Every method name is one the compare runner knows for the config's modalities,
        and belongs to one family only (the table has one row per method)."""
        task = get_task(self.task)
        seen: dict[str, str] = {}
        for family in self.families.values():
            try:
                resolve_task_variants(family.methods, self.modalities, task)
            except ValueError as error:
                raise ValueError(f"{self.path}: family {family.name!r}: {error}") from None
            for method in family.methods:
                if method in seen:
                    raise ValueError(
                        f"{self.path}: method {method!r} is in families {seen[method]!r} and "
                        f"{family.name!r}; each method belongs to one family"
                    )
                seen[method] = family.name

    # -- state -----------------------------------------------------------------------------
    @property
    def max_seeds(self) -> int:
        return max(max(f.seeds, f.other_seeds) for f in self.families.values())

    def setting_overrides(self, setting: tuple[tuple[str, str], ...]) -> list[str]:
        return [o for knob, option in setting for o in self.knobs[knob][option]]

    def result_path(self, cell: Cell) -> Path:
        return self.results / cell.setting_name / cell.method / f"seed{cell.seed}.json"

    def result(self, cell: Cell) -> dict[str, Any] | None:
        path = self.result_path(cell)
        return json.loads(path.read_text()) if path.is_file() else None

    def validation_score(self, cell: Cell) -> float | None:
        """The ensemble's headline metric on validation at the end of the schedule, as the
        cell's first run scored it (sign-adjusted: higher is better); nan for a run that
        diverged or failed before the schedule's end, None for one not run. (A run trained on
        again to converge that then diverges keeps its first score: the choice it won stands,
        and its seed is a diverged row of the table.)"""
        result = self.result(cell)
        if result is None:
            return None
        task = get_task(self.task)
        key, sign = task.comparison.headline.key, task.comparison.sign
        value = result.get("schedule_end_score")
        if value is None and result.get("status") == "ok":  # a run from before extensions:
            value = (result.get("scores") or {}).get("ensemble", {}).get(key)  # the schedule's
        return float("nan") if value is None else sign * float(value)

    def cell_config(self, cell: Cell) -> Config:
        """The config a cell trains with: the base, the protocol's and its setting's overrides."""
        key = cell.setting
        if key not in self._configs:
            overrides = [*self.overrides, *self.setting_overrides(cell.setting)]
            self._configs[key] = load_config(self.config, overrides)
        return self._configs[key]

    def missing(self, cell: Cell) -> bool:
        """Whether a cell still has to train: not run yet, or, among the seeds, run but not
        converged where ``train.until_converged`` asks it to be (tuning compares the score at
        the end of the schedule, which a run has either way)."""
        result = self.result(cell)
        if result is None:
            return True
        if cell.purpose != "seeds" or result.get("status") != "ok":
            return False
        return trains_on(CellResult(**result), self.cell_config(cell))

    def default_setting(self, family: Family) -> dict[str, str]:
        return {k: next(iter(self.knobs[k])) for k in family.tune if k != METHOD_ROUND}

    def choose(self, family: Family) -> Choice:
        """Walk the family's rounds as far as the finished runs allow."""
        choice = Choice(family.name)
        if family.setting_from is not None:
            source = self.choose(self.families[family.setting_from])
            if source.done:
                choice.method, choice.setting = family.methods[0], source.setting
            else:
                choice.error = f"waits for {family.setting_from!r}"
            return choice
        method, setting = family.methods[0], self.default_setting(family)
        knobs = [k for k in family.tune if k != METHOD_ROUND]

        def cell(m: str, s: dict[str, str]) -> Cell:
            return Cell(family.name, m, tuple((k, s[k]) for k in knobs), 0, "tuning")

        for round_name in family.tune:
            edges = self.beyond.get(round_name, {})
            options = [o for o in self.knobs.get(round_name, ()) if o not in edges]
            while True:  # once more for each option past an edge that won
                if round_name == METHOD_ROUND:
                    candidates = [cell(m, setting) for m in family.methods]
                else:
                    candidates = [cell(method, {**setting, round_name: o}) for o in options]
                scored = [(c, self.validation_score(c)) for c in candidates]
                finite = [(c, s) for c, s in scored if s == s]  # drop nan (and keep None)
                if any(s is None for _, s in scored) or not finite:
                    break
                best = max(finite, key=lambda cs: cs[1])[0]  # first on ties: the default
                won = dict(best.setting).get(round_name)
                past = [o for o, edge in edges.items() if edge == won and o not in options]
                if not past:
                    break
                options += past
            choice.rounds.append((round_name, scored))
            missing = [c for c, score in scored if score is None]
            if missing:
                choice.missing = missing
                return choice
            if not finite:
                choice.error = f"every candidate of round {round_name!r} diverged or failed"
                return choice
            method, setting = best.method, dict(best.setting)
        choice.method = method
        choice.setting = tuple((k, setting[k]) for k in knobs)
        return choice

    def plan(self, only: Sequence[str] = ()) -> list[Cell]:
        """The runs missing now, in the order they should train: the tuning runs the finished
        ones allow, then seed by seed the headline table (each family's chosen method and the
        untuned families such as the ablations), then the other methods' seeds. ``only``:
        names of families or methods; the plan keeps their runs alone (one grid split over
        several machines, or one row trained first)."""
        self.check_names(only)
        choices = {name: self.choose(f) for name, f in self.families.items()}
        tuning = [c for choice in choices.values() for c in choice.missing]
        headline = self.headline_cells(choices)
        others = []
        for name, family in self.families.items():
            choice = choices[name]
            if choice.done and family.setting_from is None:
                others += [
                    Cell(name, m, choice.setting, s, "seeds")
                    for m in family.methods
                    if m != choice.method
                    for s in range(family.other_seeds)
                ]
        # by the candidates' places in their rounds: every family's first candidate (its
        # defaults) before any family's second, so that early results compare the families
        # at one setting
        place = {cell: index for choice in choices.values() if choice.rounds
                 for index, (cell, _) in enumerate(choice.rounds[-1][1])}  # fmt: skip
        tuning = sorted(tuning, key=lambda c: place[c])
        by_seed = sorted(headline, key=lambda c: c.seed) + sorted(others, key=lambda c: c.seed)
        wanted = set(only)
        return [
            c
            for c in tuning + by_seed
            if self.missing(c) and (not wanted or {c.family, c.method} & wanted)
        ]

    def headline_cells(self, choices: dict[str, Choice]) -> list[Cell]:
        """The seeds of the headline table, family by family: each chosen method's, and every
        method's of a family that takes another's setting (the ablations)."""
        cells = []
        for name, family in self.families.items():
            choice = choices[name]
            if not choice.done:
                continue
            assert choice.setting is not None
            methods = family.methods if family.setting_from is not None else (choice.method,)
            cells += [
                Cell(name, method, choice.setting, seed, "seeds")
                for method in methods
                for seed in range(family.seeds)
            ]
        return cells

    def check_names(self, names: Sequence[str]) -> None:
        """Refuse a name that is neither a family nor a method of this protocol."""
        known = [*self.families, *(m for f in self.families.values() for m in f.methods)]
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ValueError(
                f"{self.path}: {', '.join(map(repr, unknown))} is no family or method of this "
                f"protocol; it has {', '.join(dict.fromkeys(known))}"
            )

    # -- running ---------------------------------------------------------------------------
    def cell_command(self, cell: Cell) -> list[str]:
        """The ``cenfusion compare`` call that trains one cell (as its result records it).
        A tuning run stops at the end of the schedule even where ``train.until_converged``
        is set: its round compares that score, and a chosen one trains on among the seeds."""
        assert self.base is not None
        stop = cell.purpose == "tuning" and self.base.train.until_converged > 0
        return [
            "cenfusion",
            "compare",
            self.config,
            *self.overrides,
            *self.setting_overrides(cell.setting),
            *(["train.until_converged=0"] if stop else []),
            "--methods",
            cell.method,
            "--seeds",
            str(self.max_seeds),
            "--only-seed",
            str(cell.seed),
            "--output",
            str(self.output / cell.setting_name),
            "--results",
            str(self.results / cell.setting_name),
            "--no-progress",
        ]

    def run_prepare(self, threads: int | None = None) -> None:
        """The protocol's preparation steps (data, pre-training) whose output is missing, each
        a list of commands run in order (``threads``: torch threads of each)."""
        env = _thread_env(threads)
        for step in self.prepare:
            if Path(step.creates).exists():
                continue
            for text in step.commands:
                command = shlex.split(text)
                if command[0] == "cenfusion":
                    command[0:1] = [sys.executable, "-m", "cenfusion"]
                print(f"prepare: {text}", flush=True)
                code = subprocess.run(command, env=env).returncode
                if code != 0:
                    raise RuntimeError(
                        f"{self.path}: preparation step {text!r} failed (exit code {code})"
                    )
            if not Path(step.creates).exists():
                raise RuntimeError(
                    f"{self.path}: preparation step {step.commands[-1]!r} did not create "
                    f"{step.creates}"
                )

    def check_inputs(self) -> None:
        """Refuse to train more runs from another trunk than the finished ones started from
        (a trunk trained again on another host differs, and runs are compared seed by seed)."""
        assert self.base is not None
        current = input_files(self.base)
        for path in sorted(self.results.glob("*/*/seed*.json")):
            recorded = json.loads(path.read_text()).get("inputs") or {}
            for key, digest in recorded.items():
                if current.get(key) != digest:
                    now = current.get(key, "nothing")
                    raise RuntimeError(
                        f"{self.path}: {path} started from {key} with SHA-256 {digest[:16]}..., "
                        f"but {key} here is {getattr(self.base.model, 'pretrained', None)} with "
                        f"{now[:16]}...; put the file those runs started from back, or move "
                        f"{self.results} away to start the protocol over"
                    )

    def run(
        self,
        jobs: int = 1,
        threads: int | None = None,
        limit_s: float | None = None,
        only: Sequence[str] = (),
    ) -> int:
        """Train what is missing, ``jobs`` runs at a time (each ``threads`` threads), until
        nothing is left or ``limit_s`` has passed (running cells are stopped; they resume
        from their last epoch next time); ``only`` as for :meth:`plan`. Returns the number of
        runs finished.

        SIGINT or SIGTERM stops it the same way: the running cells get SIGTERM (each saves a
        checkpoint after its current step) and are waited for, so none is left training
        without the runner, then :class:`TrainingInterrupted` says how many finished. A run
        that ends without writing its result (killed from outside, or crashed before it could)
        is not started again by this call, so a run that keeps crashing does not loop."""
        if jobs < 1:
            raise ValueError(f"--jobs: expected at least 1, got {jobs}")
        self.check_names(only)
        self.run_prepare(threads=None if threads is None else threads * jobs)
        self.check_inputs()
        start = time.monotonic()
        env = _thread_env(threads)
        running: dict[Cell, subprocess.Popen] = {}
        left_alone: set[Cell] = set()  # ended without a result: not restarted by this call
        finished = 0
        stop_message = "stopping the running runs (each saves a checkpoint after its step)"
        with StopRequests(stop_message) as stops:
            try:
                while not stops.requested:
                    finished += self._collect_finished(running, left_alone)
                    if limit_s is not None and time.monotonic() - start > limit_s:
                        print("time limit reached", flush=True)
                        break
                    pending = [
                        c for c in self.plan(only) if c not in running and c not in left_alone
                    ]
                    if not pending and not running:
                        break
                    for cell in pending[: jobs - len(running)]:
                        running[cell] = self._start(cell, env)
                    time.sleep(2.0)
            finally:
                for process in running.values():
                    process.terminate()
                for process in running.values():
                    process.wait()
        if stops.signal is not None:
            name = signal.Signals(stops.signal).name
            raise TrainingInterrupted(
                f"{name}: stopped with {finished} run(s) finished; {len(running)} stopped "
                "run(s) resume from their checkpoints at the next `protocol run`"
            )
        return finished

    def _start(self, cell: Cell, env: dict[str, str]) -> subprocess.Popen:
        """Start a cell's ``cenfusion compare`` with this interpreter."""
        command = self.cell_command(cell)
        command[0:1] = [sys.executable, "-m", "cenfusion"]
        print(f"start: {cell.method} {cell.setting_name} seed {cell.seed} ({cell.purpose})",
              flush=True)  # fmt: skip
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env)

    def _collect_finished(
        self, running: dict[Cell, subprocess.Popen], left_alone: set[Cell]
    ) -> int:
        """Drop the runs that have ended from ``running`` and say how each ended; those that
        wrote no result join ``left_alone``. Returns how many ended."""
        codes = {cell: process.poll() for cell, process in running.items()}
        ended = [(cell, code) for cell, code in codes.items() if code is not None]
        for cell, code in ended:
            del running[cell]
            result = self.result(cell)
            if result is None:
                left_alone.add(cell)
                status = (f"exit code {code} without a result; not started again before the "
                          "next `protocol run`")  # fmt: skip
            else:
                status = result.get("status", "?")
            print(f"done: {cell.method} {cell.setting_name} seed {cell.seed}: {status}", flush=True)
        return len(ended)

    # -- reporting -------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        """The tuning rounds and the chosen methods' table (see :func:`format_protocol`)."""
        choices = {name: self.choose(f) for name, f in self.families.items()}
        cells: list[dict[str, Any]] = []
        methods: list[str] = []
        descriptions: dict[str, str] = {}
        chosen_setting: dict[str, str] = {}
        modalities = self.modalities
        task = get_task(self.task)
        for name, family in self.families.items():
            choice = choices[name]
            if not choice.done:
                continue
            assert choice.setting is not None
            variants = {v.name: v for v in resolve_task_variants(family.methods, modalities, task)}
            for method in family.methods:
                seeds = family.seeds if method == choice.method else family.other_seeds
                found = []
                for seed in range(seeds):
                    cell = Cell(name, method, choice.setting, seed, "seeds")
                    result = self.result(cell)
                    found.append(result or {"method": method, "seed": seed, "status": "pending",
                                             "scores": {}, "total_params": 0, "fusion_params": 0,
                                             "train_seconds": 0.0, "error": ""})  # fmt: skip
                cells += found
                methods.append(method)
                chosen_setting[method] = setting_name(choice.setting)
                tuned_method = METHOD_ROUND in family.tune
                mark = " (chosen)" if method == choice.method and tuned_method else ""
                descriptions[method] = (
                    f"{variants[method].description}; setting `{setting_name(choice.setting)}`"
                    f"{mark}"
                )
        table = {
            "task": self.task,
            "config": self.config,
            "overrides": list(self.overrides),
            "command": f"cenfusion protocol report {self.path}",
            "methods": methods,
            "descriptions": descriptions,
            "seeds": self.max_seeds,
            "modalities": modalities,
            "machine": machine_info(),
            "cells": cells,
        }
        table["summary"] = summarise(table) if cells else []
        return {
            "title": self.title,
            "choices": choices,
            "table": table,
            "chosen_setting": chosen_setting,
            "remaining": len(self.plan()),
        }


def format_protocol(protocol: Protocol, report: dict[str, Any]) -> str:
    """The protocol's state as Markdown: the tuning rounds of each family (seed 0, validation),
    then the comparison of the chosen settings (:func:`format_markdown`)."""
    task = get_task(report["table"]["task"])
    headline = task.comparison.headline
    lines = [f"# {report['title'] or protocol.config}", ""]
    lines += [
        f"Protocol `{protocol.path}`: every family tunes its knobs one round at a time on the "
        f"validation split (seed 0, the ensemble's {headline.label}); the chosen settings then "
        "train paired seeds, reported below on the held-out test split. Continue it with "
        f"`cenfusion protocol run {protocol.path}`; {report['remaining']} run(s) are missing "
        "now.",
        "",
        *_headline_lines(protocol, report),
        *_time_lines(protocol, report),
        "## Tuning (seed 0, validation)",
        "",
        "`machine`: where each run trained. The same run on another kind of CPU lands about a "
        "seed's noise away (its kernels round differently and training carries that along), so "
        "candidates compared across machines are compared less tightly.",
        "",
        f"| family | round | candidate | validation {headline.label} | | machine |",
        "|---|---|---|---|---|---|",
    ]
    for name, choice in report["choices"].items():
        family = protocol.families[name]
        if family.setting_from is not None:
            status = (
                f"setting of `{family.setting_from}`: `{setting_name(choice.setting)}`"
                if choice.done
                else choice.error
            )
            lines.append(f"| {name} | — | {', '.join(family.methods)} | — | {status} | |")
            continue
        for round_name, scored in choice.rounds:
            finite = [s for _, s in scored if s is not None and s == s]
            best = max(finite) if finite and len(finite) == len(scored) else None
            for cell, score in scored:
                result = protocol.result(cell) or {}
                machine = machine_label(result.get("machine") or {})
                if score is None:
                    shown, mark = "pending", ""
                elif score != score:
                    shown, mark = result.get("status", "failed"), ""
                else:
                    value = task.comparison.sign * score * headline.scale
                    shown = f"{value:.{headline.digits}f}"
                    mark = "**best**" if best is not None and score == best else ""
                candidate = f"`{cell.method}` `{cell.setting_name}`"
                lines.append(
                    f"| {name} | {round_name} | {candidate} | {shown} | {mark} | {machine} |"
                )
        if choice.error and family.setting_from is None:
            lines.append(f"| {name} | | | | {choice.error} | |")
    lines.append("")
    lines += _tuning_test_lines(protocol, report)
    lines += _exchange_lines(protocol, report)
    if report["table"]["cells"]:
        body = format_markdown(report["table"])
        lines += ["## The chosen settings, paired seeds", ""]
        lines += body.split("\n", 2)[2].splitlines()  # drop format_markdown's own title
        lines += ["", *_class_lines(protocol, report), *_branch_lines(report)]
        lines += _robustness_lines(report)
        lines += _exchange_off_lines(report)
        lines += _theorem_lines(report)
    else:
        lines += ["No family has finished tuning yet.", ""]
    return "\n".join(lines).rstrip() + "\n"


def _headline_lines(protocol: Protocol, report: dict[str, Any]) -> list[str]:
    """The answer first: CEN, each family at the method its tuning chose and the methods that
    take another family's setting (the sharing ablation), on the test split, each with CEN's
    paired difference; the full tables follow in the report."""
    table = report["table"]
    if not table["cells"]:
        return []
    comparison = get_task(table["task"]).comparison
    headline = comparison.headline
    shown = []
    for name, choice in report["choices"].items():
        family = protocol.families[name]
        if choice.done:
            shown += family.methods if family.setting_from is not None else [choice.method]
    rows = {row["method"]: row for row in table["summary"]}
    outputs = [*table["modalities"], "ensemble"]
    header = ["method", *(f"{o} {headline.label}" for o in outputs), "CEN minus it"]
    header += ["gain last ¼", "rise at full rate", "runs"]
    lines = [
        "## Headline",
        "",
        f"Test {headline.label} of each branch and the ensemble, mean ± half width of the 95 % "
        "interval over the seeds that finished: CEN, each family at the method its tuning "
        "chose, and the rows that take another family's setting untuned; `CEN minus it`: how "
        "much better CEN's ensemble scores than the method's, seed by seed, with the 95 % "
        "interval of the mean (negative: CEN worse; `ahead` or `behind` only where the "
        "interval excludes zero); `gain last ¼`: the validation score gained over the last "
        "quarter of training (converged: little); `rise at full rate`: how much it still rose "
        "per epoch over the last three epochs at the full learning rate (large: the schedule's "
        "lower rates, not the task, ended the climb). Every run, and every other stage of each "
        "family, is in the tables below.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for method in shown:
        row = rows.get(method)
        if row is None:
            continue
        scores = row["scores"]
        values = [
            stats_text(scores.get(o, {}).get(headline.key), headline.scale, headline.digits)
            for o in outputs
        ]
        paired = row.get("paired_vs_cen")
        if method == "cen":
            versus = "—"
        elif paired is None:
            versus = "no paired seed yet"
        else:
            difference, verdict = cen_minus(paired, comparison)
            versus = f"{difference}: {verdict.removeprefix('CEN ')}"
        gain = stats_text(row.get("last_quarter_gain"), headline.scale, headline.digits)
        rise = stats_text(row.get("rise_at_full_rate"), headline.scale, headline.digits)
        values += [versus, gain, rise, runs_text(row)]
        lines.append(f"| `{method}` | " + " | ".join(values) + " |")
    return [*lines, ""]


ONE_INPUT, FUSED = "one input", "fused"


def _time_lines(protocol: Protocol, report: dict[str, Any], cores: int = 2) -> list[str]:
    """What the headline costs on each machine its runs trained on: its runs (one input and
    fused apart) times their mean epochs so far times that machine's median epoch, plus the
    validation after each epoch and the test scoring after training where the runs timed
    them, over ``cores`` runs at once (one thread each)."""
    planned = {ONE_INPUT: 0, FUSED: 0}
    finished: list[tuple[str, dict[str, Any]]] = []
    for cell in protocol.headline_cells(report["choices"]):
        kind = FUSED if unimodal_modality(cell.method) is None else ONE_INPUT
        planned[kind] += 1
        result = protocol.result(cell)
        if result and result.get("status") == "ok" and result.get("epochs"):
            finished.append((kind, result))
    if not finished:
        return []
    epochs = {k: [len(r["epochs"]) for kind, r in finished if kind == k] for k in planned}
    mean_epochs = {k: sum(v) / len(v) for k, v in epochs.items() if v}
    runs: dict[str, int] = {}  # machine: finished runs
    # (machine, kind, what): each epoch's training, each epoch's validation, each run's scoring
    timed: dict[tuple[str, str, str], list[float]] = {}
    for kind, result in finished:
        machine = result.get("machine") or {}
        label = f"{machine_label(machine) or 'not recorded'}, {machine.get('threads', '?')} thr."
        runs[label] = runs.get(label, 0) + 1
        for what, key in (("train", "seconds"), ("after", "after_epoch_seconds")):
            values = [float(e[key]) for e in result["epochs"] if key in e]
            timed.setdefault((label, kind, what), []).extend(values)
        if result.get("test_seconds") is not None:
            timed.setdefault((label, kind, "test"), []).append(float(result["test_seconds"]))
    needed = [k for k in planned if planned[k]]

    def hours(label: str, parts: tuple[str, ...]) -> str:
        """The headline's cost on ``label``: per epoch ``train`` (and ``after``), per run
        ``test``, as ``parts`` asks."""
        found = {(k, w): median(v) for (m, k, w), v in timed.items() if m == label and v}
        if any((k, w) not in found for k in needed for w in parts):
            return "—"  # a kind of run, or a timing, this machine has not recorded
        total = 0.0
        for k in needed:
            per_epoch = sum(found[k, w] for w in parts if w != "test")
            per_run = found[k, "test"] if "test" in parts else 0.0
            total += planned[k] * (mean_epochs[k] * per_epoch + per_run)
        return f"{total / cores / 3600:.1f} h"

    header = " | ".join(f"s/epoch, {kind}" for kind in planned)
    lines = [
        "## Time",
        "",
        f"The headline asks for {sum(planned.values())} runs ({planned[ONE_INPUT]} with one "
        f"input, {planned[FUSED]} fused); {len(finished)} have finished. Per machine they ran "
        "on: the median epoch's training steps (a run paused with its machine counts the "
        "pause in that epoch, hence the median), and the headline's cost at that speed with "
        f"{cores} runs at once: its runs times their mean epochs so far (one input "
        + ", fused ".join(f"{mean_epochs[k]:.1f}" if k in mean_epochs else "—" for k in planned)
        + f") times the median epoch, over {cores}; then the same with the validation after "
        "each epoch and the test scoring after training added, where the runs timed them "
        "(runs from before that lack the timings).",
        "",
        f"| machine | runs | {header} | headline's training | with validation and scoring |",
        "|---|---|" + "---|" * len(planned) + "---|---|",
    ]
    for label in sorted(runs):
        speeds = " | ".join(
            f"{median(timed[label, k, 'train']):.1f}" if timed.get((label, k, "train")) else "—"
            for k in planned
        )
        full = hours(label, ("train", "after", "test"))
        lines.append(
            f"| {label} | {runs[label]} | {speeds} | {hours(label, ('train',))} | {full} |"
        )
    return [*lines, ""]


def _tuning_test_lines(protocol: Protocol, report: dict[str, Any]) -> list[str]:
    """Every finished tuning run's test scores, per branch and ensemble, with its
    convergence: to read while the seeds are missing, never to choose by (one seed each)."""
    comparison = get_task(report["table"]["task"]).comparison
    headline = comparison.headline
    modalities = report["table"]["modalities"]
    rows, listed = [], set()
    for name, choice in report["choices"].items():
        for _, scored in choice.rounds:
            for cell, score in scored:
                result = protocol.result(cell) if score is not None else None
                if result is not None and cell not in listed:  # a round's winner runs on
                    listed.add(cell)
                    rows.append((name, cell, result))
    if not rows:
        return []

    def shown(value: float | None) -> str:
        return "—" if value is None else f"{value * headline.scale:.{headline.digits}f}"

    lines = [
        "## Tuning runs on the test split",
        "",
        f"The test {headline.label} of every finished tuning run (seed 0), to read while the "
        "seeds are missing; one seed each, so no interval, and never used to choose. A "
        "single-modality method's one branch is also its ensemble. A chosen setting's run "
        "is also its seed 0: once trained on to converge, its row shows the final scores.",
        "",
        "| family | run | " + " | ".join(modalities) + " | ensemble | gain last ¼ | status |",
        "|---|---|" + "---|" * (len(modalities) + 3),
    ]
    for name, cell, result in rows:
        scores = result.get("test_scores") or {}
        values = [shown(scores.get(m, {}).get(headline.key)) for m in modalities]
        values.append(shown(scores.get("ensemble", {}).get(headline.key)))
        values.append(shown(improvement(result.get("last_quarter_gain"), comparison.sign)))
        run = f"`{cell.method}` `{cell.setting_name}`"
        lines.append(f"| {name} | {run} | " + " | ".join(values) + f" | {result['status']} |")
    return [*lines, ""]


def exchange_cells(protocol: Protocol) -> list[tuple[str, dict[str, Any]]]:
    """``(setting name, result)`` of every finished run of an exchanging method (tuning and
    seeds) whose epoch records carry ``penalised_below_theta``."""
    found = []
    for path in sorted(protocol.results.glob("*/*/seed*.json")):
        result = json.loads(path.read_text())
        epochs = result.get("epochs") or []
        if result.get("status") == "ok" and any(e.get("penalised_below_theta") for e in epochs):
            found.append((path.parent.parent.name, result))
    return found


def _shares(result: dict[str, Any]) -> list[tuple[int, dict[str, list[float]]]]:
    return [(int(e["epoch"]), e["penalised_below_theta"])
            for e in result.get("epochs") or [] if e.get("penalised_below_theta")]  # fmt: skip


def _exchange_lines(protocol: Protocol, report: dict[str, Any]) -> list[str]:
    """Per exchanging run: the share of each modality's penalised channels below θ at the end
    (over all sites, and the least and most of one site), and the epoch the first crossed."""
    cells = exchange_cells(protocol)
    if not cells:
        return []
    modalities = report["table"]["modalities"]
    lines = [
        "## What the exchange did",
        "",
        "Per run of an exchanging method: the share of each modality's penalised channels "
        "(the L1-pushed chunk) below θ after the last epoch, over every exchange site, with "
        "the smallest and largest share of a single site, and the first epoch any crossed. "
        "A learned exchange differs between sites; a forced one sends every site to 100 % at "
        "once.",
        "",
        "| run | "
        + " | ".join(f"{m}: all sites (min–max)" for m in modalities)
        + " | first crossing |",
        "|---|" + "---|" * (len(modalities) + 1),
    ]
    for setting, result in cells:
        history = _shares(result)
        _, final = history[-1]
        columns = []
        for m in range(len(modalities)):
            values = [v[m] for v in final.values()]
            columns.append(
                f"{100 * sum(values) / len(values):.0f} % ({100 * min(values):.0f}–"
                f"{100 * max(values):.0f})"
            )
        crossed = [e for e, shares in history if any(x > 0 for v in shares.values() for x in v)]
        first = str(crossed[0]) if crossed else "never"
        name = f"`{result['method']}` `{setting}` seed {result['seed']}"
        lines.append(f"| {name} | " + " | ".join(columns) + f" | {first} |")
    return [*lines, ""]


def class_names(config: Config, count: int, kept: Path | None = None) -> list[str]:
    """The data set's class names from ``meta.json`` in its root (written by ``cenfusion
    synth`` and ``cenfusion prepare``), else ``class k``. With ``kept`` (a results folder's
    ``classes.json``) names read from the data are written there and read back where the data
    is absent, so a clone of the results alone still names the classes."""
    names = _names_in(Path(config.data.root) / "meta.json", count)
    if names is not None and kept is not None and _names_in(kept, count) != names:
        kept.parent.mkdir(parents=True, exist_ok=True)
        kept.write_text(json.dumps({"classes": names}, indent=2) + "\n")
    if names is None and kept is not None:
        names = _names_in(kept, count)
    return names if names is not None else [f"class {k}" for k in range(count)]


def _names_in(path: Path, count: int) -> list[str] | None:
    """The ``classes`` list of the JSON file ``path`` where it has ``count`` of them."""
    try:
        names = json.loads(path.read_text()).get("classes")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(names, list) and len(names) == count:
        return [str(name) for name in names]
    return None


def _class_lines(protocol: Protocol, report: dict[str, Any]) -> list[str]:
    """Where each family's chosen method wins and loses, class by class: the ensemble's test
    IoU per class (mean over the seeds) and CEN's paired difference to the best of the
    others; for scores with a per-class list (segmentation) only."""
    table = report["table"]
    chosen = [
        choice.method
        for name, choice in report["choices"].items()
        if choice.done and protocol.families[name].setting_from is None
    ]
    per_seed: dict[str, dict[int, list[float]]] = {}
    for cell in table["cells"]:
        values = reported_scores(cell).get("ensemble", {}).get("per_class_iou")
        if cell.get("status") == "ok" and cell["method"] in chosen and values:
            per_seed.setdefault(cell["method"], {})[int(cell["seed"])] = values
    methods = [m for m in chosen if m in per_seed]
    if "cen" not in per_seed or len(methods) < 2:
        return []
    comparison = get_task(table["task"]).comparison
    key = comparison.headline.key
    summary = {row["method"]: row for row in table["summary"]}

    def mean_score(method: str) -> float:
        return summary[method]["scores"]["ensemble"][key]["mean"]

    fusions = [m for m in methods if m != "cen" and unimodal_modality(m) is None]
    best = max(fusions, key=mean_score) if fusions else None
    count = len(next(iter(per_seed["cen"].values())))
    assert protocol.base is not None
    names = class_names(protocol.base, count, protocol.results / "classes.json")
    header = [*(f"`{m}`" for m in methods)] + ([f"`cen` − `{best}`"] if best else [])
    lines = [
        "## Class by class",
        "",
        "Test IoU of each family's chosen method's ensemble per class: the mean over its seeds "
        "and, in brackets, the lowest and highest seed (where the seeds part, the class is "
        "learnt by some runs and not by others)"
        + (
            f"; and CEN's paired difference to the best other fusion, `{best}`, with the 95 % "
            "interval over the seeds both have."
            if best
            else "."
        ),
        "",
        "| class | " + " | ".join(header) + " |",
        "|---|" + "---|" * len(header),
    ]
    for k, name in enumerate(names):
        values = [_mean_and_range([v[k] for v in per_seed[m].values()]) for m in methods]
        if best:
            cen = {s: v[k] for s, v in per_seed["cen"].items()}
            other = {s: v[k] for s, v in per_seed[best].items()}
            difference = paired_difference(cen, other)
            values.append("—" if difference is None else _interval_text(difference, 100))
        lines.append(f"| {name} | " + " | ".join(values) + " |")
    return [*lines, ""]


def _mean_and_range(values: list[float]) -> str:
    """``mean (lowest–highest)`` in percent; the mean alone for one value."""
    text = f"{100 * sum(values) / len(values):.1f}"
    if len(values) > 1:
        text += f" ({100 * min(values):.0f}–{100 * max(values):.0f})"
    return text


def _branch_lines(report: dict[str, Any]) -> list[str]:
    """Exchange against no exchange on the same model, branch by branch: ``cen`` minus
    ``private-bn-l1`` (the paper: +3.7 mIoU for RGB, +7.0 for depth on NYUDv2)."""
    table = report["table"]
    by_method: dict[str, dict[int, dict[str, Any]]] = {}
    for cell in table["cells"]:
        if cell.get("status") == "ok":
            by_method.setdefault(cell["method"], {})[int(cell["seed"])] = reported_scores(cell)
    if "cen" not in by_method or "private-bn-l1" not in by_method:
        return []
    key = get_task(table["task"]).comparison.headline.key
    scale = get_task(table["task"]).comparison.headline.scale
    lines = [
        "## Exchange against no exchange, per branch",
        "",
        "`cen` minus `private-bn-l1` (the same shared convolutions, private norms and L1 term, "
        "without the exchange), seed by seed, with the 95 % interval of the mean difference:",
        "",
    ]
    for output in [*table["modalities"], "ensemble"]:
        values = {s: float(v[output][key]) for s, v in by_method["cen"].items() if output in v}
        reference = {s: float(v[output][key])
                     for s, v in by_method["private-bn-l1"].items() if output in v}  # fmt: skip
        difference = paired_difference(values, reference)
        if difference is not None:
            lines.append(f"- {output}: {_interval_text(difference, scale)}")
    return [*lines, ""]


def _robustness_lines(report: dict[str, Any]) -> list[str]:
    """A camera missing: each model that runs on a subset, scored on the test split with every
    modality and with one alone, beside each modality's own model; and what training for it
    (``cen-modality-dropout``) costs CEN with everything present."""
    table = report["table"]
    comparison = get_task(table["task"]).comparison
    key, scale, digits = (
        comparison.headline.key,
        comparison.headline.scale,
        comparison.headline.digits,
    )
    modalities = table["modalities"]
    rows: dict[str, dict[str, dict[int, float]]] = {}
    for cell in table["cells"]:
        if cell.get("status") != "ok":
            continue
        seed, scores = int(cell["seed"]), reported_scores(cell)
        method = cell["method"]
        single = cell.get("test_single_modality") or {}
        if single:
            columns = rows.setdefault(method, {})
            columns.setdefault("all", {})[seed] = float(scores["ensemble"][key])
            for name, outputs in single.items():
                columns.setdefault(name, {})[seed] = float(outputs["ensemble"][key])
        elif (name := unimodal_modality(method)) in modalities:
            rows.setdefault(method, {}).setdefault(name, {})[seed] = float(scores["ensemble"][key])
    if not any(len(columns) > 1 for columns in rows.values()):
        return []
    lines = [
        "## A camera missing",
        "",
        f"Test {comparison.headline.label} of the ensemble with every modality present and with "
        "one modality alone (the model of that modality's rows: `with_modalities`), beside "
        "each modality's own model; mean ± half width of the 95 % interval over the seeds.",
        "",
        "| method | all present | " + " | ".join(f"{m} only" for m in modalities) + " |",
        "|---|---|" + "---|" * len(modalities),
    ]

    def shown(values: dict[int, float] | None) -> str:
        if not values:
            return "—"
        interval = mean_interval(list(values.values()))
        text = f"{interval.mean * scale:.{digits}f}"
        if interval.half_width is not None:
            text += f" ± {interval.half_width * scale:.{digits}f}"
        return text

    for method, columns in rows.items():
        values = [shown(columns.get("all")), *(shown(columns.get(m)) for m in modalities)]
        lines.append(f"| `{method}` | " + " | ".join(values) + " |")
    lines.append("")
    robust, plain = rows.get("cen-modality-dropout"), rows.get("cen")
    if robust and plain:
        for column in ["all", *modalities]:
            difference = paired_difference(robust.get(column, {}), plain.get(column, {}))
            if difference is not None:
                label = "everything present" if column == "all" else f"{column} only"
                lines.append(
                    f"- `cen-modality-dropout` minus `cen`, {label}: "
                    f"{_interval_text(difference, scale)}"
                )
        lines.append("")
    return lines


def _exchange_off_lines(report: dict[str, Any]) -> list[str]:
    """What each stage's exchange carries: per exchanging method and stage, the test score
    with the exchange on minus with it off at that stage's sites (``test_exchange_off``),
    per branch and ensemble, seed by seed, with the 95 % interval of the mean."""
    table = report["table"]
    comparison = get_task(table["task"]).comparison
    headline = comparison.headline
    outputs = [*table["modalities"], "ensemble"]
    # method -> stage -> output -> {seed: on - off, signed so that positive: the exchange helps}
    drops: dict[str, dict[str, dict[str, dict[int, float]]]] = {}
    for cell in table["cells"]:
        if cell.get("status") != "ok" or not cell.get("test_exchange_off"):
            continue
        seed, on = int(cell["seed"]), reported_scores(cell)
        stages = drops.setdefault(cell["method"], {})
        for stage, off in cell["test_exchange_off"].items():
            for output in outputs:
                if output in on and output in off:
                    change = float(on[output][headline.key]) - float(off[output][headline.key])
                    row = stages.setdefault(stage, {}).setdefault(output, {})
                    row[seed] = comparison.sign * change
    if not drops:
        return []
    lines = [
        "## What each stage's exchange carries",
        "",
        f"Test {headline.label} with the exchange on minus with it switched off at every site "
        "of one stage (the trained model otherwise unchanged: `cenfusion evaluate "
        "--exchange-off`), seed by seed, with the 95 % interval of the mean; positive: the "
        "stage's exchange helps. Near zero means the channels given away there carry nothing "
        "the network uses: they are pruned, not traded.",
        "",
        "| method | stage | " + " | ".join(outputs) + " |",
        "|---|---|" + "---|" * len(outputs),
    ]
    for method, stages in drops.items():
        for stage, row in stages.items():
            shown = []
            for output in outputs:
                values = row.get(output)
                interval = mean_interval(list(values.values())) if values else None
                shown.append(
                    "—" if interval is None
                    else _interval_text(interval, headline.scale, headline.digits, "seed")
                )  # fmt: skip
            lines.append(f"| `{method}` | {stage} | " + " | ".join(shown) + " |")
    return [*lines, ""]


def _interval_text(
    interval: Interval, scale: float, digits: int = 2, unit: str = "paired seed"
) -> str:
    text = f"{interval.mean * scale:+.{digits}f}"
    if interval.half_width is not None:
        text += f" ± {interval.half_width * scale:.{digits}f}"
    return text + f" ({interval.n} {unit}{'s' if interval.n != 1 else ''})"


def _theorem_lines(report: dict[str, Any]) -> list[str]:
    """Theorem 1 on the runs trained with the L1 term at sites that do not exchange (every site
    without exchange, the sites a partial exchange leaves alone): the observed share of their
    penalised scaling factors below θ against the predicted ``2 Phi(lam / |dL/dy|) - 1``."""
    rows = []
    for cell in report["table"]["cells"]:
        epochs = cell.get("epochs") or []
        checks = [e["theorem1"] for e in epochs if e.get("theorem1")]
        if cell.get("status") == "ok" and checks:
            rows.append((cell["method"], int(cell["seed"]), checks[-1]))
    if not rows:
        return []
    lines = [
        "## Theorem 1 where nothing is exchanged",
        "",
        "At the end of training, the share of penalised scaling factors below θ (observed) "
        "against Theorem 1's probability that L1 attracts them to zero (predicted, from each "
        "channel's mean |dL/dy| over the last epoch), at the sites that do not exchange: every "
        "site of a run without exchange, the sites outside `model.exchange_stages` of a partial "
        "exchange:",
        "",
        "| method | seeds | observed | predicted |",
        "|---|---|---|---|",
    ]
    for method in dict.fromkeys(m for m, _, _ in rows):
        checks = [c for m, _, c in rows if m == method]
        observed = mean_interval([float(c["collapsed_fraction"]) for c in checks])
        predicted = mean_interval([float(c["predicted_probability"]) for c in checks])
        lines.append(f"| `{method}` | {len(checks)} | {_share(observed)} | {_share(predicted)} |")
    return [*lines, ""]


def _share(interval: Interval) -> str:
    text = f"{100 * interval.mean:.1f} %"
    if interval.half_width is not None:
        text += f" ± {100 * interval.half_width:.1f}"
    return text


def _knob_options(
    path: Path, knob: str, options: dict
) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """A knob's options (name: overrides) and, for those past an edge, the option each lies
    beyond: ``name: [overrides]`` or ``name: {beyond: other, overrides: [...]}``."""
    overrides: dict[str, tuple[str, ...]] = {}
    edges: dict[str, str] = {}
    for name, spec in options.items():
        name = str(name)
        if isinstance(spec, dict):
            if set(spec) - {"beyond", "overrides"} or "beyond" not in spec:
                raise ValueError(
                    f"{path}: knob {knob!r}, option {name!r}: expected a list of overrides or "
                    f"{{beyond: OPTION, overrides: [...]}}, got keys {sorted(spec)}"
                )
            edges[name] = str(spec["beyond"])
            spec = spec.get("overrides")
        overrides[name] = tuple(str(v) for v in (spec or ()))
    if next(iter(overrides)) in edges:
        raise ValueError(f"{path}: knob {knob!r}: the first option (the default) lies beyond none")
    for name, edge in edges.items():
        seen = {name}
        while edge in edges and edge not in seen:  # follow the chain down to a plain option
            seen.add(edge)
            edge = edges[edge]
        if edge not in overrides or edge in seen:
            raise ValueError(
                f"{path}: knob {knob!r}, option {name!r}: 'beyond' must lead to one of the "
                f"knob's plain options {sorted(set(overrides) - set(edges))}"
            )
    return overrides, edges


def _thread_env(threads: int | None) -> dict[str, str]:
    """This process's environment, with ``threads`` torch threads for a child when given."""
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def _prepare_step(path: Path, step: object) -> PrepareStep:
    expected = "entries with 'creates' (a path) and 'command' (a command or a list of them)"
    if not isinstance(step, dict) or set(step) != {"creates", "command"}:
        raise ValueError(f"{path}: prepare: expected {expected}, got {step!r}")
    commands = step["command"]
    if isinstance(commands, str):
        commands = [commands]
    if (
        not isinstance(commands, list)
        or not commands
        or not all(isinstance(c, str) and c.strip() for c in commands)
    ):
        raise ValueError(f"{path}: prepare: expected {expected}, got {step!r}")
    return PrepareStep(str(step["creates"]), tuple(commands))
