"""The benchmark protocol: rounds of tuning on validation, the plan, commands, the report."""

import hashlib
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import yaml

import cenfusion
from cenfusion.cli import main
from cenfusion.experiments.protocol import (
    Cell,
    Choice,
    Protocol,
    _time_lines,
    class_names,
    format_protocol,
)
from cenfusion.experiments.runner import CellResult, machine_info
from cenfusion.models.backbones.pretrained import torchvision_state
from tests.experiments.tiny import write_tiny_translation

LR_B = "optim.stages=[{epochs: 1, encoder_lr: 0.02, decoder_lr: 0.02}]"


def write_protocol(tmp_path, config, **changes):
    spec = {
        "title": "tiny",
        "config": str(config),
        "results": str(tmp_path / "results"),
        "output": str(tmp_path / "runs"),
        "knobs": {
            "lr": {"a": [], "b": [LR_B]},
            "lam": {"1e-2": [], "1e-1": ["train.lam=0.1"]},
        },
        "families": {
            "unimodal-rgb": {"methods": ["unimodal-rgb"], "tune": ["lr"], "seeds": 2},
            "cen": {"methods": ["cen"], "tune": ["lam", "lr"], "seeds": 3},
            "concat": {
                "methods": ["concat-early", "concat-late"],
                "tune": ["method", "lr"],
                "seeds": 3,
                "other_seeds": 2,
            },
            "ablations": {
                "methods": ["private-bn", "private-bn-l1", "cen-modality-dropout"],
                "setting_from": "cen",
                "seeds": 2,
            },
        },
    }
    spec.update(changes)
    path = tmp_path / "protocol.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def finish(protocol, cell, value, status="ok"):
    """Write a cell's result as the runner would, with ``value`` as every mIoU."""
    scores = {name: {"mean_iou": value, "pixel_accuracy": value, "mean_accuracy": value}
              for name in ("rgb", "depth", "ensemble")}  # fmt: skip
    scores["ensemble"]["per_class_iou"] = [value, 1 - value]
    result = CellResult(cell.method, cell.seed, status, scores=scores, test_scores=scores)
    if cell.method == "cen":  # the exchange monitors: two sites, two modalities
        result.epochs = [
            {"epoch": 1, "penalised_below_theta": {"a": [0.0, 0.0], "b": [0.0, 0.0]}},
            {"epoch": 2, "penalised_below_theta": {"a": [0.5, 0.25], "b": [1.0, 0.0]}},
        ]
    if cell.method in ("cen", "cen-modality-dropout"):  # scored with one modality alone
        alone = 0.1 if cell.method == "cen" else 0.2
        result.test_single_modality = {
            name: {"ensemble": {"mean_iou": alone + (name == "depth") * 0.1}}
            for name in ("rgb", "depth")
        }
    if cell.method == "cen":  # the exchange off at one stage: layer1's carries 20 points
        result.test_exchange_off = {
            stage: {name: {"mean_iou": value - drop} for name in ("rgb", "depth", "ensemble")}
            for stage, drop in (("layer1", 0.2), ("layer2", 0.0))
        }
    if cell.method == "private-bn-l1":  # Theorem 1's monitor
        check = {"collapsed_fraction": 0.2, "predicted_probability": 0.3}
        result.epochs = [{"epoch": 1}, {"epoch": 2, "theorem1": check}]
    path = protocol.result_path(cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(result)))


def names(cells):
    return [(c.method, c.setting_name, c.seed) for c in cells]


def test_each_family_tunes_its_knobs_round_by_round_on_validation(segmentation_yaml, tmp_path):
    protocol = Protocol.load(write_protocol(tmp_path, segmentation_yaml))
    # first the defaults of every family, then the other candidates of each first round
    assert names(protocol.plan()) == [
        ("unimodal-rgb", "lra", 0), ("cen", "lam1e-2_lra", 0), ("concat-early", "lra", 0),
        ("unimodal-rgb", "lrb", 0), ("cen", "lam1e-1_lra", 0), ("concat-late", "lra", 0),
    ]  # fmt: skip
    cells = {(c.method, c.setting_name): c for c in protocol.plan()}
    finish(protocol, cells["unimodal-rgb", "lra"], 0.5)  # a family's default done: its second
    assert names(protocol.plan())[:3] == [  # candidate waits for the other families' defaults
        ("cen", "lam1e-2_lra", 0), ("concat-early", "lra", 0), ("unimodal-rgb", "lrb", 0),
    ]  # fmt: skip
    finish(protocol, cells["cen", "lam1e-2_lra"], 0.5)
    finish(protocol, cells["cen", "lam1e-1_lra"], 0.6)  # the larger lambda wins its round
    choice = protocol.choose(protocol.families["cen"])
    assert not choice.done
    assert names(choice.missing) == [("cen", "lam1e-1_lrb", 0)]  # the lr round starts from it
    finish(protocol, choice.missing[0], 0.6)  # a tie: the default (lr a) stays
    choice = protocol.choose(protocol.families["cen"])
    assert choice.done and (choice.method, choice.setting) == (
        "cen",
        (("lam", "1e-1"), ("lr", "a")),
    )
    # the ablations take CEN's choice, untuned
    ablations = protocol.choose(protocol.families["ablations"])
    assert ablations.done and ablations.setting == choice.setting
    plan = names(protocol.plan())
    assert ("cen", "lam1e-1_lra", 1) in plan and ("cen", "lam1e-1_lra", 0) not in plan  # reused
    assert ("private-bn", "lam1e-1_lra", 0) in plan


def test_the_time_section_prices_the_headline_at_each_machines_median_epoch(
    segmentation_yaml, tmp_path
):
    protocol = Protocol.load(write_protocol(tmp_path, segmentation_yaml))
    cen_setting = (("lam", "1e-2"), ("lr", "a"))
    choices = {
        "unimodal-rgb": Choice("unimodal-rgb", method="unimodal-rgb", setting=(("lr", "a"),)),
        "cen": Choice("cen", method="cen", setting=cen_setting),
        "concat": Choice("concat"),  # still tuning: not priced
        "ablations": Choice("ablations", method="private-bn", setting=cen_setting),
    }

    def run(family, method, setting, seed, seconds, processor, after=None, test=None):
        machine = {"processor": processor, "cpu_capability": "AVX2", "threads": 1}
        epochs = [{"epoch": i + 1, "seconds": s} for i, s in enumerate(seconds)]
        for epoch in epochs if after is not None else ():
            epoch["after_epoch_seconds"] = after
        result = CellResult(method, seed, "ok", train_seconds=sum(seconds), machine=machine,
                            epochs=epochs, test_seconds=test)  # fmt: skip
        path = protocol.result_path(Cell(family, method, setting, seed, "seeds"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(result)))

    # machine A: one input's epochs 3600, 3600 and a paused one (median 3600), fused 7200
    run("unimodal-rgb", "unimodal-rgb", (("lr", "a"),), 0, [3600, 3600, 99999], "A")
    run("cen", "cen", cen_setting, 0, [7200] * 4, "A")
    run("cen", "cen", cen_setting, 1, [40, 40], "B")  # machine B: fused runs only
    # machine C timed validation and scoring: one input 1800 + 720 per epoch, 3600 to score;
    # fused 3600 + 720 per epoch, 7200 to score
    run("unimodal-rgb", "unimodal-rgb", (("lr", "a"),), 1, [1800] * 3, "C", 720, 3600)
    run("ablations", "private-bn", cen_setting, 0, [3600] * 3, "C", 720, 7200)
    lines = _time_lines(protocol, {"choices": choices})
    text = "\n".join(lines)
    # 2 one-input runs (unimodal-rgb's seeds), 3 + 3 x 2 fused (CEN, the ablations' methods)
    assert "asks for 11 runs (2 with one input, 9 fused); 5 have finished" in text
    assert "(one input 3.0, fused 3.0)" in text  # mean epochs: (3 + 3) / 2, (4 + 2 + 3) / 3
    # A: (2 x 3 x 3600 + 9 x 3 x 7200) s over 2 runs at once = 30 h; no validation timings
    assert "| A (AVX2), 1 thr. | 2 | 3600.0 | 7200.0 | 30.0 h | — |" in lines
    assert "| B (AVX2), 1 thr. | 1 | — | 40.0 | — | — |" in lines  # B lacks one-input runs
    # C: training (2 x 3 x 1800 + 9 x 3 x 3600) / 2 = 15 h; with validation and scoring
    # (2 x (3 x 2520 + 3600) + 9 x (3 x 4320 + 7200)) / 2 = 101880 s = 28.3 h
    assert "| C (AVX2), 1 thr. | 2 | 1800.0 | 3600.0 | 15.0 h | 28.3 h |" in lines


def test_an_option_past_the_edge_is_tried_only_where_the_edge_wins(segmentation_yaml, tmp_path):
    lr = {
        "a": [],
        "b": [LR_B],
        "c": {"beyond": "b", "overrides": [LR_B.replace("0.02", "0.04")]},
        "d": {"beyond": "c", "overrides": [LR_B.replace("0.02", "0.08")]},
    }
    lam = {"1e-2": [], "1e-1": ["train.lam=0.1"]}
    protocol = Protocol.load(
        write_protocol(tmp_path, segmentation_yaml, knobs={"lr": lr, "lam": lam})
    )
    assert protocol.setting_overrides((("lr", "c"),)) == [LR_B.replace("0.02", "0.04")]
    assert {s for _, s, _ in names(protocol.plan())} == {"lra", "lrb", "lam1e-2_lra", "lam1e-1_lra"}

    def unimodal(option):
        return Cell("unimodal-rgb", "unimodal-rgb", (("lr", option),), 0, "tuning")

    finish(protocol, unimodal("a"), 0.6)
    finish(protocol, unimodal("b"), 0.5)  # the default wins inside the sweep: done
    assert protocol.choose(protocol.families["unimodal-rgb"]).setting == (("lr", "a"),)
    finish(protocol, unimodal("b"), 0.7)  # b, the top of the sweep, wins: c is tried next
    choice = protocol.choose(protocol.families["unimodal-rgb"])
    assert names(choice.missing) == [("unimodal-rgb", "lrc", 0)]
    assert choice.missing[0] in protocol.plan()
    finish(protocol, unimodal("c"), 0.8)  # c wins too: d is next
    assert names(protocol.choose(protocol.families["unimodal-rgb"]).missing) == [
        ("unimodal-rgb", "lrd", 0)
    ]
    finish(protocol, unimodal("d"), 0.75)  # d loses: c stays
    choice = protocol.choose(protocol.families["unimodal-rgb"])
    assert choice.done and choice.setting == (("lr", "c"),)
    assert [c.setting_name for c, _ in choice.rounds[0][1]] == ["lra", "lrb", "lrc", "lrd"]
    # another family whose sweep ends inside never runs c
    for option, value in (("a", 0.5), ("b", 0.4)):
        finish(protocol, Cell("cen", "cen", (("lam", "1e-2"), ("lr", option)), 0, "tuning"), value)
    finish(protocol, Cell("cen", "cen", (("lam", "1e-1"), ("lr", "a")), 0, "tuning"), 0.1)
    choice = protocol.choose(protocol.families["cen"])
    assert choice.done and choice.setting == (("lam", "1e-2"), ("lr", "a"))
    assert len(choice.rounds[-1][1]) == 2


def test_only_keeps_the_runs_of_the_named_families_or_methods(segmentation_yaml, tmp_path, capsys):
    path = write_protocol(tmp_path, segmentation_yaml)
    protocol = Protocol.load(path)
    assert names(protocol.plan(["cen"])) == [("cen", "lam1e-2_lra", 0), ("cen", "lam1e-1_lra", 0)]
    assert names(protocol.plan(["concat-late", "unimodal-rgb"])) == [
        ("unimodal-rgb", "lra", 0), ("unimodal-rgb", "lrb", 0), ("concat-late", "lra", 0),
    ]  # fmt: skip
    with pytest.raises(ValueError, match=r"'concat-deep' is no family or method.*private-bn"):
        protocol.plan(["concat-deep"])
    with pytest.raises(ValueError, match="'nope' is no family or method"):
        protocol.run(only=["nope"])
    assert main(["protocol", "plan", str(path), "--only", "concat"]) == 0
    out = capsys.readouterr().out
    assert "--methods concat-early" in out and "--methods cen" not in out
    assert "2 run(s) missing now" in out
    # the ablations take CEN's setting: nothing to run before CEN has chosen, and it says so
    assert main(["protocol", "plan", str(path), "--only", "ablations"]) == 0
    out = capsys.readouterr().out
    assert "0 run(s) missing now" in out and "6 run(s) outside --only are missing" in out
    assert main(["protocol", "report", str(path), "--only", "concat"]) == 2
    assert "--only: a choice of runs for run and plan" in capsys.readouterr().err


def test_diverged_candidates_lose_and_a_round_of_failures_stops_the_family(
    segmentation_yaml, tmp_path
):
    protocol = Protocol.load(write_protocol(tmp_path, segmentation_yaml))
    early, late = (Cell("concat", m, (("lr", "a"),), 0, "tuning") for m in
                   ("concat-early", "concat-late"))  # fmt: skip
    finish(protocol, early, 0.9, status="diverged")
    finish(protocol, late, 0.2)
    assert math.isnan(protocol.validation_score(early))
    choice = protocol.choose(protocol.families["concat"])
    assert names(choice.missing) == [("concat-late", "lrb", 0)]
    finish(protocol, choice.missing[0], 0.1, status="failed")
    choice = protocol.choose(protocol.families["concat"])
    assert choice.done and choice.method == "concat-late" and choice.setting == (("lr", "a"),)
    # seeds: the chosen method's first, seed by seed, then the other stage at the chosen setting
    plan = [c for c in protocol.plan() if c.family == "concat"]
    assert names(plan) == [
        ("concat-late", "lra", 1),
        ("concat-late", "lra", 2),
        ("concat-early", "lra", 1),
    ]  # fmt: skip (concat-early seed 0 at lr a exists: diverged, kept as a result)
    only = Protocol.load(write_protocol(tmp_path, segmentation_yaml))
    for cell in (early, late):
        finish(only, cell, 0.0, status="failed")
    assert "diverged or failed" in only.choose(only.families["concat"]).error


def test_seeds_of_the_chosen_settings_come_seed_major_after_every_tuning_run(
    segmentation_yaml, tmp_path
):
    page = tmp_path / "docs" / "results.md"  # a copy of the report, e.g. a page the docs link
    path = write_protocol(tmp_path, segmentation_yaml, report_copies=[str(page)])
    protocol = Protocol.load(path)
    for _ in range(10):  # answer every tuning run (the first candidate wins each round)
        tuning = [c for c in protocol.plan() if c.purpose == "tuning"]
        if not tuning:
            break
        for cell in tuning:
            finish(protocol, cell, 0.5 if cell.setting_name.endswith("lra") else 0.4)
    plan = protocol.plan()
    assert {c.purpose for c in plan} == {"seeds"}
    # the headline table (chosen methods and the ablations) seed by seed, then the other stages
    headline = [c for c in plan if c.method != "concat-late"]
    assert plan[: len(headline)] == headline
    assert [c.seed for c in headline] == sorted(c.seed for c in headline)
    ablations = ("private-bn", "private-bn-l1", "cen-modality-dropout")
    assert names(headline[:3]) == [(m, "lam1e-2_lra", 0) for m in ablations]
    assert [c.seed for c in plan[len(headline) :]] == [1]  # seed 0 ran in the method round
    for cell in plan:
        finish(protocol, cell, (0.25 if cell.method == "private-bn-l1" else 0.3) + 0.01 * cell.seed)
    assert protocol.plan() == []
    report = protocol.report()
    rows = {row["method"]: row for row in report["table"]["summary"]}
    assert rows["cen"]["ok"] == 3 and rows["concat-late"]["ok"] == 2
    assert rows["unimodal-rgb"]["split"] == "test"
    # one tuning run records where it trained: the tuning table names that machine
    early = protocol.result_path(Cell("concat", "concat-early", (("lr", "a"),), 0, "tuning"))
    recorded = json.loads(early.read_text())
    early.write_text(json.dumps({**recorded, "machine": {**machine_info(), "processor": "CPU X"}}))
    text = format_protocol(protocol, report)
    capability = torch.backends.cpu.get_cpu_capability()
    assert (
        f"| concat | method | `concat-early` `lra` | 50.00 | **best** | CPU X ({capability}) |"
        in text
    )
    assert "| concat | lr | `concat-early` `lrb` | 40.00 |  |  |" in text  # none recorded
    # every tuning run's test scores, per branch, to read before the seeds are in
    assert text.count("| cen | `cen` `lam1e-1_lra` | 50.00 | 50.00 | 50.00 | — | ok |") == 1
    assert (
        "| ablations | — | private-bn, private-bn-l1, cen-modality-dropout | — | setting of "
        "`cen`: `lam1e-2_lra` |" in text
    )
    assert "## Where CEN stands" in text and "0 run(s) are missing" in text
    # the headline first: the chosen method of each family and the ablation rows, with CEN's
    # paired difference (private-bn-l1: 25, 26 against CEN's 50, 31; t(1) = 12.706)
    headline = text[text.index("## Headline") : text.index("## Tuning")]
    assert "| `private-bn-l1` | 25.50 ± 6.35 | 25.50 ± 6.35 | 25.50 ± 6.35 | +15.00 ± 127.06: " \
        "not resolved | — | — | 2/2 ok |" in headline  # fmt: skip
    assert "| `cen` | 37.67 ± 26.56 |" in headline and "`concat-early`" in headline
    assert "| CEN minus it | gain last ¼ | rise at full rate | runs |" in headline
    assert "`concat-late`" not in headline
    # class by class: the chosen methods' ensembles, and CEN against the best other fusion
    # (the tiny data set names 10 classes, these scores 2: the classes are numbered)
    assert "| class | `unimodal-rgb` | `cen` | `concat-early` | `cen` − `concat-early` |" in text
    assert "| class 0 | 40.5 (31–50) | 37.7 (31–50) | 37.7 (31–50) | +0.00 ± 0.00 (3 paired" in text
    assert "| class 1 | 59.5 (50–69) | 62.3 (50–69) | 62.3 (50–69) | +0.00 ± 0.00 (3 paired" in text
    # the exchange of every CEN run, tuning runs included; exchange against none per branch;
    # Theorem 1 on the runs with the L1 term and no exchange
    assert "| `cen` `lam1e-1_lra` seed 0 | 75 % (50–100) | 12 % (0–25) | 2 |" in text
    assert "| `cen` `lam1e-2_lra` seed 2 | 75 % (50–100) | 12 % (0–25) | 2 |" in text
    # seed 0: 50 (CEN's tuning run) - 25, seed 1: 31 - 26; t(1) = 12.706, std 14.14
    assert "- rgb: +15.00 ± 127.06 (2 paired seeds)" in text
    assert "- ensemble: +15.00 ± 127.06 (2 paired seeds)" in text
    assert "setting `lra` (chosen)" in text and "setting `lam1e-2_lra` (chosen)" not in text
    # the report command also draws the exchange over training of each seed-0 CEN run
    assert main(["protocol", "report", str(path)]) == 0
    assert page.read_text() == (tmp_path / "results" / "README.md").read_text()
    figures = sorted(p.name for p in (tmp_path / "results" / "exchange").iterdir())
    assert figures == ["lam1e-1_lra_cen.png", "lam1e-2_lra_cen.png", "lam1e-2_lrb_cen.png"]
    assert "| `private-bn-l1` | 2 | 20.0 % ± 0.0 | 30.0 % ± 0.0 |" in text
    # a camera missing: CEN and its robust variant with one modality alone, beside each alone
    assert "| method | all present | rgb only | depth only |" in text
    assert "| `unimodal-rgb` | — | 40.50 ± 120.71 | — |" in text  # seeds 0, 1: 50, 31
    assert "| `cen` | 37.67 ± 26.56 | 10.00 ± 0.00 | 20.00 ± 0.00 |" in text  # 50, 31, 32
    assert "- `cen-modality-dropout` minus `cen`, rgb only: +10.00 ± 0.00 (2 paired seeds)" in text
    # what each stage's exchange carries: on minus off, over CEN's three seeds
    assert "| method | stage | rgb | depth | ensemble |" in text
    assert "| `cen` | layer1 | " + " | ".join(["+20.00 ± 0.00 (3 seeds)"] * 3) + " |" in text
    assert "| `cen` | layer2 | " + " | ".join(["+0.00 ± 0.00 (3 seeds)"] * 3) + " |" in text


def test_run_trains_the_missing_cells_with_the_commands_it_records(segmentation_yaml, tmp_path):
    path = write_protocol(
        tmp_path,
        segmentation_yaml,
        knobs={"lr": {"a": [], "b": [LR_B]}},
        families={"cen": {"methods": ["cen"], "tune": ["lr"], "seeds": 2}},
    )
    protocol = Protocol.load(path)
    assert protocol.run(jobs=2, threads=1) == 3  # two tuning runs, then seed 1 of the winner
    assert protocol.plan() == []
    for cell in [Cell("cen", "cen", (("lr", o),), 0, "tuning") for o in "ab"]:
        result = protocol.result(cell)
        assert result["status"] == "ok"
        assert result["command"] + " --no-progress" == shlex.join(protocol.cell_command(cell))
    assert main(["protocol", "report", str(path)]) == 0
    assert (
        "## The chosen settings, paired seeds" in (tmp_path / "results" / "README.md").read_text()
    )


def test_a_run_that_ends_without_a_result_is_not_restarted_by_the_same_call(
    segmentation_yaml, tmp_path, monkeypatch, capsys
):
    path = write_protocol(
        tmp_path,
        segmentation_yaml,
        knobs={"lr": {"a": []}},
        families={"cen": {"methods": ["cen"], "tune": ["lr"], "seeds": 1}},
    )
    protocol = Protocol.load(path)
    started = []

    def crashing(cell, env):  # a run killed from outside (or crashing) before its result
        started.append(cell)
        assert len(started) == 1, "restarted"
        return subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])

    monkeypatch.setattr(protocol, "_start", crashing)
    assert protocol.run(jobs=1) == 1  # it ends, and the call with it: no loop
    assert names(started) == [("cen", "lra", 0)]
    assert "exit code 3 without a result; not started again" in capsys.readouterr().out
    assert names(protocol.plan()) == [("cen", "lra", 0)]  # the next call tries it again


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads /proc")
def test_sigterm_stops_the_runner_and_its_runs_which_keep_a_checkpoint(segmentation_yaml, tmp_path):
    """Killing the runner must not leave its runs training on alone, as the default SIGTERM
    action did (the runner died, its children went on without it)."""
    path = write_protocol(
        tmp_path,
        segmentation_yaml,
        # long enough to be caught training: an epoch of one step, a thousand of them
        overrides=["optim.stages=[{epochs: 1000, encoder_lr: 0.01, decoder_lr: 0.01}]"],
        knobs={"lr": {"a": []}},
        families={"cen": {"methods": ["cen"], "tune": ["lr"], "seeds": 1}},
    )
    command = [sys.executable, "-m", "cenfusion", "protocol", "run", str(path), "--threads", "1"]
    log = tmp_path / "runner.log"  # a file, not a pipe, which an orphan would hold open
    with log.open("w") as stderr:
        runner = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 120
        while not list((tmp_path / "runs").rglob("last.pt")):  # a run past its first epoch
            assert runner.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=120) == 130, log.read_text()
        assert "SIGTERM: stopped with 0 run(s) finished; 1 stopped run(s) resume" in log.read_text()
        assert _processes_naming(tmp_path) == []  # the run ended with its runner
        metrics = next((tmp_path / "runs").rglob("metrics.jsonl")).read_text().splitlines()
        epochs = [record["epoch"] for record in map(json.loads, metrics) if "epoch" in record]
        assert epochs and max(epochs) < 1000  # stopped, not finished
    finally:
        runner.kill()
        for pid in _processes_naming(tmp_path):
            os.kill(pid, signal.SIGKILL)


def _processes_naming(path: Path) -> list[int]:
    """The processes whose command line contains ``path`` (Linux: read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(path) in (entry / "cmdline").read_bytes().decode():
                found.append(int(entry.name))
        except (OSError, UnicodeDecodeError):  # ended meanwhile
            continue
    return found


def test_runs_record_their_trunk_and_another_trunk_is_refused(segmentation_yaml, tmp_path):
    trunk = tmp_path / "trunk.pt"
    torch.manual_seed(0)
    torch.save(torchvision_state(cenfusion.create_backbone("resnet18", 1)), trunk)
    path = write_protocol(
        tmp_path,
        segmentation_yaml,
        overrides=[f"model.pretrained={trunk}"],
        knobs={"lr": {"a": []}},
        families={"cen": {"methods": ["cen"], "tune": ["lr"], "seeds": 1}},
    )
    protocol = Protocol.load(path)
    assert protocol.run(jobs=1, threads=1) == 1
    cell = Cell("cen", "cen", (("lr", "a"),), 0, "tuning")
    digest = hashlib.sha256(trunk.read_bytes()).hexdigest()
    assert protocol.result(cell)["inputs"] == {"model.pretrained": digest}
    protocol.check_inputs()  # the same trunk: more runs may join
    torch.manual_seed(1)  # the trunk trained again elsewhere: other weights
    torch.save(torchvision_state(cenfusion.create_backbone("resnet18", 1)), trunk)
    with pytest.raises(
        RuntimeError, match=f"seed0.json started from model.pretrained with SHA-256 {digest[:16]}"
    ):
        Protocol.load(path).run(jobs=1, threads=1)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"extra": 1}, "unknown keys ['extra']"),
        ({"families": {"x": {"methods": ["cen"], "tune": ["beta"]}}}, "tunes 'beta'"),
        ({"families": {"x": {"methods": ["cen"]}, "y": {"methods": ["cen"]}}}, "in families 'x'"),
        ({"families": {"x": {"methods": ["concat-first"]}}}, "family 'x': method 'concat-first'"),
        ({"families": {"x": {"methods": ["cen"], "setting_from": "z"}}}, "unknown family 'z'"),
        ({"knobs": {"method": {"a": []}}}, "reserved name 'method'"),
        ({"knobs": {"lr": {"a": [], "b": {"beyond": "z"}}}}, "'beyond' must lead to one of"),
        ({"knobs": {"lr": {"a": {"beyond": "b"}, "b": []}}}, "the first option (the default)"),
        ({"knobs": {"lr": {"a": [], "b": {"beyond": "c"}, "c": {"beyond": "b"}}}}, "must lead"),
        ({"knobs": {"lr": {"a": [], "b": {"past": "a"}}}}, "expected a list of overrides or"),
    ],
)
def test_a_malformed_protocol_is_refused_with_the_reason(
    segmentation_yaml, tmp_path, change, message
):
    with pytest.raises(ValueError, match="protocol.yaml") as error:
        Protocol.load(write_protocol(tmp_path, segmentation_yaml, **change))
    assert message in str(error.value)


ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "name", sorted(p.name for p in (ROOT / "experiments" / "protocols").glob("*.yaml"))
)
def test_the_shipped_protocols_read_and_plan(monkeypatch, name):
    monkeypatch.chdir(ROOT)
    protocol = Protocol.load(f"experiments/protocols/{name}")
    families = protocol.families
    # the same learning-rate sweep closes every tuned family
    assert all(f.tune[-1] == "lr" for f in families.values() if f.setting_from is None)
    assert len(protocol.knobs["lr"]) >= 3  # at least three rates, so a choice can be inside
    assert families["cen"].tune == ("lam", "theta", "lr") and families["cen"].seeds == 5
    assert {c.purpose for c in protocol.plan()} <= {"tuning", "seeds"}


@pytest.mark.parametrize(
    "name",
    sorted(p.name for p in (ROOT / "experiments" / "protocols" / "diagnostics").glob("*.yaml")),
)
def test_the_shipped_diagnostics_read_and_plan_without_a_sweep(monkeypatch, name):
    """A diagnostic reruns settings a benchmark chose: one option per knob, nothing tuned."""
    monkeypatch.chdir(ROOT)
    protocol = Protocol.load(f"experiments/protocols/diagnostics/{name}")
    assert all(len(options) == 1 for options in protocol.knobs.values())
    assert {c.purpose for c in protocol.plan()} <= {"tuning", "seeds"}


def test_preparation_steps_run_once_and_a_failing_one_stops_with_its_command(
    segmentation_yaml, tmp_path, monkeypatch
):
    data = tmp_path / "scenes"
    step = {"creates": str(data / "val.txt"),
            "command": f"cenfusion synth folder {data} --n-train 2 --n-val 1 --size 16 16 "
                       "--no-progress"}  # fmt: skip
    protocol = Protocol.load(write_protocol(tmp_path, segmentation_yaml, prepare=[step]))
    protocol.run_prepare()
    assert (data / "val.txt").is_file()

    def refuse(*args, **kwargs):
        raise AssertionError("a finished preparation step ran again")

    monkeypatch.setattr(subprocess, "run", refuse)
    protocol.run_prepare()
    monkeypatch.undo()
    broken = {"creates": str(tmp_path / "never"), "command": "cenfusion synth nowhere"}
    protocol = Protocol.load(write_protocol(tmp_path, segmentation_yaml, prepare=[broken]))
    with pytest.raises(RuntimeError, match="'cenfusion synth nowhere' failed"):
        protocol.run_prepare()


def test_a_preparation_step_runs_its_commands_in_order_with_the_threads_given(
    segmentation_yaml, tmp_path, monkeypatch
):
    seen = []

    def record(command, env):
        seen.append((command[3:], env.get("OMP_NUM_THREADS")))
        if command[3] == "export":
            (tmp_path / "trunk.pt").write_text("")
        return subprocess.CompletedProcess(command, 0)

    step = {"creates": str(tmp_path / "trunk.pt"),
            "command": ["cenfusion train a --resume", "cenfusion export b"]}  # fmt: skip
    protocol = Protocol.load(write_protocol(tmp_path, segmentation_yaml, prepare=[step]))
    monkeypatch.setattr(subprocess, "run", record)
    protocol.run_prepare(threads=3)
    assert seen == [(["train", "a", "--resume"], "3"), (["export", "b"], "3")]
    # a step whose commands all succeed but leave nothing behind is an error, named
    (tmp_path / "trunk.pt").unlink()
    step = {"creates": str(tmp_path / "trunk.pt"), "command": ["cenfusion train a"]}
    protocol = Protocol.load(write_protocol(tmp_path, segmentation_yaml, prepare=[step]))
    with pytest.raises(RuntimeError, match=r"'cenfusion train a' did not create .*trunk.pt"):
        protocol.run_prepare()
    for bad in ([], [""], "  ", 3):
        step = {"creates": str(tmp_path / "trunk.pt"), "command": bad}
        with pytest.raises(ValueError, match="a command or a list of them"):
            Protocol.load(write_protocol(tmp_path, segmentation_yaml, prepare=[step]))


def test_a_key_given_twice_is_refused(segmentation_yaml, tmp_path):
    path = write_protocol(tmp_path, segmentation_yaml)
    path.write_text(path.read_text() + f"results: {tmp_path / 'elsewhere'}\n")
    with pytest.raises(ValueError, match=r"\['results'\] given twice"):
        Protocol.load(path)


class _TinyFeatures(torch.nn.Module):
    """A stand-in for the Inception network (same file format, 48 features): FID and KID
    run their real code on it in a fraction of a second."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)


def test_a_translation_protocol_runs_and_reports_with_its_own_scores(tmp_path):
    """Tiny Shade + Texture -> RGB through the shipped translation protocol's code path:
    tuning on the validation L1, paired seeds, L1/FID/KID on test, the exchange table."""
    features = tmp_path / "features.pt"
    torch.jit.script(_TinyFeatures()).save(str(features))
    config_path = write_tiny_translation(
        tmp_path, n_test=2, inception_weights=str(features), kid_subset_size=2
    )
    path = write_protocol(
        tmp_path,
        config_path,
        knobs={"lam": {"1e-2": [], "1e-1": ["train.lam=0.1"]}},
        families={
            "unimodal-texture": {"methods": ["unimodal-texture"], "seeds": 2},
            "cen": {"methods": ["cen"], "tune": ["lam"], "seeds": 2},
            "average": {"methods": ["average-early"], "seeds": 2},
        },
    )
    protocol = Protocol.load(path)
    assert protocol.run(jobs=1, threads=1) == 7  # CEN's two lambdas, then the seeds
    assert protocol.plan() == []
    result = protocol.result(Cell("cen", "cen", (("lam", "1e-2"),), 0, "tuning"))
    ensemble = result["test_scores"]["ensemble"]
    assert all(math.isfinite(ensemble[key]) for key in ("l1", "fid", "kid_x100"))
    assert main(["protocol", "report", str(path)]) == 0
    text = (tmp_path / "results" / "README.md").read_text()
    assert "## The chosen settings, paired seeds" in text and "## What the exchange did" in text
    assert "`unimodal-texture`" in text and "`average-early`" in text


def test_with_until_converged_tuning_stops_at_the_schedule_and_the_chosen_seeds_converge(
    segmentation_yaml, tmp_path
):
    path = write_protocol(
        tmp_path,
        segmentation_yaml,
        overrides=["train.until_converged=3"],
        knobs={"lr": {"a": [], "b": [LR_B]}},
        families={"cen": {"methods": ["cen"], "tune": ["lr"], "seeds": 2}},
    )
    protocol = Protocol.load(path)
    tuning = protocol.plan()
    assert [c.purpose for c in tuning] == ["tuning", "tuning"]
    for cell in tuning:  # a tuning run compares the score at the end of the schedule
        assert "train.until_converged=0" in protocol.cell_command(cell)
        # option a: 0.5 at the schedule's end, still rising; option b: 0.45, flat
        curve = [[1, 0.3], [2, 0.5]] if cell.setting_name == "lra" else [[1, 0.45], [2, 0.45]]
        finish(protocol, cell, curve[-1][1])
        result = protocol.result(cell)
        result.update(val_curve=curve, epochs=[{"epoch": 1}, {"epoch": 2}], scheduled_epochs=2)
        protocol.result_path(cell).write_text(json.dumps(result))
    plan = protocol.plan()
    # the chosen setting's seed 0 has not converged: it trains on, as does seed 1
    assert names(plan) == [("cen", "lra", 0), ("cen", "lra", 1)]
    assert "train.until_converged=0" not in protocol.cell_command(plan[0])
    seed0 = protocol.result(plan[0])
    # trained on to converge: a higher final score, the schedule's end score kept
    seed0.update(
        val_curve=[[1, 0.3], [2, 0.5], [3, 0.6], [4, 0.6]],
        epochs=[{"epoch": e} for e in range(1, 5)],
        schedule_end_score=0.5,
        scores={**seed0["scores"], "ensemble": {"mean_iou": 0.6}},
    )
    protocol.result_path(plan[0]).write_text(json.dumps(seed0))
    assert names(protocol.plan()) == [("cen", "lra", 1)]
    assert protocol.validation_score(plan[0]) == 0.5
    choice = protocol.choose(protocol.families["cen"])
    assert choice.setting == (("lr", "a"),)
    # trained again from the start on another machine, it diverged: that seed is a diverged
    # row, and the choice it won on its first run stands
    seed0.update(status="diverged", scores={}, test_scores={})
    protocol.result_path(plan[0]).write_text(json.dumps(seed0))
    assert protocol.validation_score(plan[0]) == 0.5
    assert protocol.choose(protocol.families["cen"]).setting == (("lr", "a"),)
    assert names(protocol.plan()) == [("cen", "lra", 1)]


def test_class_names_come_from_the_data_sets_meta_file(segmentation_yaml, tmp_path):
    config = Protocol.load(write_protocol(tmp_path, segmentation_yaml)).base
    meta = json.loads((Path(config.data.root) / "meta.json").read_text())
    assert class_names(config, len(meta["classes"])) == meta["classes"]
    assert class_names(config, 2) == ["class 0", "class 1"]  # another count: numbered
    kept = tmp_path / "results" / "classes.json"
    assert class_names(config, len(meta["classes"]), kept) == meta["classes"]
    assert json.loads(kept.read_text())["classes"] == meta["classes"]
    shutil.rmtree(config.data.root)  # a clone of the results without the data
    assert class_names(config, len(meta["classes"]), kept) == meta["classes"]
    assert class_names(config, len(meta["classes"])) == [
        f"class {k}" for k in range(len(meta["classes"]))
    ]
