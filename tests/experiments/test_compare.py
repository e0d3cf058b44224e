"""The comparison runner: every method trains and evaluates; tables; resume; failures."""

import copy
import json

import pytest
import torch

from cenfusion.cli import main
from cenfusion.config import load_config
from cenfusion.experiments import Comparison
from cenfusion.experiments import runner as runner_module
from cenfusion.tasks import SegmentationTask, get_task
from cenfusion.tasks.segmentation.training import build_datasets, build_model, segmentation_loss

SEGMENTATION = get_task("segmentation")


def test_every_segmentation_method_trains_and_evaluates_through_the_runner(
    segmentation_yaml, tmp_path
):
    report = Comparison(
        str(segmentation_yaml), ["all"], seeds=1, output_dir=tmp_path, progress=False
    ).run()
    assert len(report["cells"]) == 24
    failures = {c["method"]: c["error"] for c in report["cells"] if c["status"] != "ok"}
    assert failures == {}
    rows = {row["method"]: row for row in report["summary"]}
    assert rows["unimodal-rgb"]["scores"].keys() == {"rgb", "ensemble"}
    assert rows["concat-all"]["fusion_params"] == sum(2 * c * c for c in (64, 128, 256, 512))
    assert rows["cen"]["fusion_params"] == 0
    assert rows["unshared-convs"]["total_params"] > 1.9 * rows["private-bn"]["total_params"] - 2e5
    table = (tmp_path / "results.md").read_text()
    assert "| `self-attention-all` |" in table and "## Where CEN stands" in table
    assert json.loads((tmp_path / "results.json").read_text())["summary"] == report["summary"]


def test_every_translation_method_trains_and_evaluates_through_the_runner(
    translation_yaml, tmp_path
):
    methods = ["all", "cen-first-block-norm", "concat-2"]
    report = Comparison(
        str(translation_yaml), methods, seeds=1, output_dir=tmp_path, progress=False
    ).run()
    assert len(report["cells"]) == 21  # cen, 2 unimodal, 16 baselines, the two extra rows
    assert {c["status"] for c in report["cells"]} == {"ok"}
    table = (tmp_path / "results.md").read_text()
    assert "ensemble L1" in table and "| `align-middle` |" in table
    assert "| `cen-first-block-norm` |" in table and "| `concat-2` |" in table


def test_a_translation_model_is_scored_with_the_exchange_off_per_generator_stage(
    translation_yaml,
):
    """Through the U-Net's encoder stages, on a copy: the model keeps its thresholds."""
    from cenfusion.analysis.exchange_stats import stage_of
    from cenfusion.experiments.runner import exchange_off_scores
    from cenfusion.nn import exchange_sites

    config = load_config(translation_yaml, ["model.insnorm_threshold=2.0"])
    task = get_task("translation")
    model = task.build_model(config).eval()
    torch.manual_seed(0)
    with torch.no_grad():  # gammas on both sides of theta 2, unlike the modalities'
        for _, norm in exchange_sites(model):
            norm.weight.uniform_(0.0, 4.0)
    dataset = task.build_datasets(config, ("val",))["val"]
    scores = exchange_off_scores(model, dataset, config)
    assert list(scores) == ["down2", "down3", "down4"]
    assert set(scores["down2"]) == {*config.model.modalities, "ensemble"}
    assert {norm.exchange_threshold for _, norm in exchange_sites(model)} == {2.0}
    plain = task.evaluate(model, dataset, config, progress=False)
    for stage, outputs in scores.items():
        knocked_out = copy.deepcopy(model)
        for name, norm in exchange_sites(knocked_out):
            if stage_of(name) == stage:
                norm.exchange_threshold = None
        expected = task.evaluate(knocked_out, dataset, config, progress=False)
        assert outputs == {name: s.as_dict() for name, s in expected.items()}, stage
    assert scores["down2"]["ensemble"]["l1"] != plain["ensemble"].as_dict()["l1"]


def test_finished_runs_are_not_trained_again(segmentation_yaml, tmp_path, monkeypatch):
    comparison = Comparison(
        str(segmentation_yaml), ["cen", "average-late"], seeds=2, output_dir=tmp_path,
        progress=False,
    )  # fmt: skip
    first = comparison.run()

    def refuse(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(runner_module, "train_cell", refuse)
    second = comparison.run()
    assert json.dumps(second["cells"]) == json.dumps(first["cells"])  # NaN-safe equality
    rows = {row["method"]: row for row in second["summary"]}
    assert rows["cen"]["scores"]["ensemble"]["mean_iou"]["n"] == 2
    partial = Comparison(
        str(segmentation_yaml), ["cen", "average-late"], seeds=3, output_dir=tmp_path,
        report_only=True, progress=False,
    ).run()  # fmt: skip
    assert [c["status"] for c in partial["cells"]] == ["ok"] * 4 + ["pending"] * 2
    assert "2/3 ok (1 pending)" in (tmp_path / "results.md").read_text()


def test_a_run_cut_off_after_an_epoch_resumes_to_the_uninterrupted_result(
    segmentation_yaml, tmp_path
):
    # two epochs, validation at the end only (so "killed after epoch 1" is train + save)
    schedule = ["optim.stages=[{epochs: 2, encoder_lr: 0.01, decoder_lr: 0.01}]"]
    schedule.append("train.eval_every=2")
    whole = Comparison(
        str(segmentation_yaml), ["cen"], 1, tmp_path / "whole", schedule, progress=False
    ).run()
    cut = Comparison(str(segmentation_yaml), ["cen"], 1, tmp_path / "cut", schedule, progress=False)
    (variant,) = cut.variants()
    trainer = SEGMENTATION.trainer(cut.cell_config(variant, 0), progress=False)
    trainer.history.append(trainer.train_epoch(0, 2))
    trainer.save(0)  # as if killed after the first epoch
    resumed = cut.run()
    log = (tmp_path / "cut" / "cells" / "cen" / "seed0" / "train.log").read_text()
    assert "resumed from" in log
    assert json.dumps(resumed["cells"][0]["scores"]) == json.dumps(whole["cells"][0]["scores"])


def test_diverged_and_failed_runs_are_reported_not_dropped(
    segmentation_yaml, tmp_path, monkeypatch
):
    real_trainer = SegmentationTask.trainer

    def trainer(self, config, resume=False, progress=True):
        if config.model.fusion == "concat":
            raise RuntimeError("out of memory (simulated)")
        return real_trainer(self, config, resume, progress)

    monkeypatch.setattr(SegmentationTask, "trainer", trainer)
    # lambda = NaN makes the L1 term NaN: only CEN has L1 sites, so only CEN diverges
    report = Comparison(
        str(segmentation_yaml), ["cen", "concat-early", "average-early"], 1, tmp_path,
        ["train.lam=.nan"], progress=False,
    )  # fmt: skip
    result = report.run()
    statuses = {c["method"]: c["status"] for c in result["cells"]}
    assert statuses == {"cen": "diverged", "concat-early": "failed", "average-early": "ok"}
    table = (tmp_path / "results.md").read_text()
    assert "| `cen` |" in table and "0/1 ok (1 diverged)" in table
    assert "0/1 ok (1 failed)" in table and "out of memory (simulated)" in table
    monkeypatch.setattr(SegmentationTask, "trainer", real_trainer)
    retried = Comparison(
        str(segmentation_yaml), ["concat-early"], 1, tmp_path, ["train.lam=.nan"],
        retry_failed=True, progress=False,
    ).run()  # fmt: skip
    assert retried["cells"][0]["status"] == "ok"


def test_compare_cli_writes_mean_and_std_over_seeds_and_the_command(
    segmentation_yaml, tmp_path, capsys
):
    markdown = tmp_path / "docs" / "results.md"
    code = main(
        [
            "compare", str(segmentation_yaml), "--methods", "cen", "unimodal", "--seeds", "2",
            "--output", str(tmp_path / "grid"), "--markdown", str(markdown), "--no-progress",
        ]
    )  # fmt: skip
    assert code == 0
    text = markdown.read_text()
    assert "cenfusion compare" in text and "--seeds 2" in text
    assert " ± " in text and "| `unimodal-depth` |" in text
    report = json.loads((tmp_path / "grid" / "results.json").read_text())
    assert len(report["cells"]) == 6 and report["machine"]["torch"] == torch.__version__
    assert "results.md and results.json" in capsys.readouterr().out


def test_compare_cli_refuses_a_missing_data_set_before_training(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(f"data: {{root: {tmp_path / 'nowhere'}}}\n")
    assert main(["compare", str(config), "--methods", "cen", "--no-progress"]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_the_alignment_loss_enters_the_segmentation_loss(segmentation_yaml):
    config = load_config(str(segmentation_yaml), ["model.fusion=align", "train.align_weight=2"])
    model = build_model(config).train()
    batch = torch.utils.data.default_collate([build_datasets(config)["train"][i] for i in (0, 1)])
    label = batch["label"]
    outputs = model({m: batch[m] for m in model.modalities}, label.shape[-2:], stacked=True)
    loss, parts = segmentation_loss(model, outputs, label, config)
    assert parts["align"] > 0
    without = parts["loss"] - parts["align"]
    assert without == pytest.approx(parts["ce_branches"] + parts["ce_ensemble"] + parts["l1"])


def test_the_table_reports_intervals_and_paired_differences_to_cen():
    """Two seeds, hand-made scores: CEN 0.50/0.60, concat 0.40/0.52 (differences 0.10, 0.08:
    mean 0.09, std 0.01414, half width 12.706 * 0.01414 / sqrt(2) = 0.12706)."""
    from cenfusion.experiments.report import format_markdown, summarise

    def cell(method, seed, miou):
        scores = {name: {"mean_iou": miou, "pixel_accuracy": 0.9, "mean_accuracy": 0.8}
                  for name in ("rgb", "depth", "ensemble")}  # fmt: skip
        sizes = {"total_params": 10, "fusion_params": 0, "train_seconds": 1.0, "error": ""}
        return {"method": method, "seed": seed, "status": "ok", "scores": scores, **sizes}

    report = {
        "task": "segmentation", "config": "c.yaml", "seeds": 2, "modalities": ["rgb", "depth"],
        "methods": ["cen", "concat-early"], "descriptions": {},
        "machine": {"processor": "x", "threads": 2, "torch": "2", "date": "today"},
        "cells": [cell("cen", 0, 0.50), cell("cen", 1, 0.60),
                  cell("concat-early", 0, 0.40), cell("concat-early", 1, 0.52)],
    }  # fmt: skip
    report["summary"] = summarise(report)
    paired = report["summary"][1]["paired_vs_cen"]
    assert paired["n"] == 2 and paired["mean"] == pytest.approx(-0.09)
    assert paired["half_width"] == pytest.approx(12.706 * 0.02 / 2**0.5 / 2**0.5)
    ensemble = report["summary"][0]["scores"]["ensemble"]["mean_iou"]
    assert ensemble["half_width"] == pytest.approx(12.706 * (0.1 / 2**0.5) / 2**0.5)
    text = format_markdown(report)
    assert "55.00 ± 63.53" in text  # CEN's ensemble mIoU: mean ± half width, in points
    assert "`concat-early`: +9.00 ± 12.71 mIoU points (2 paired seeds): not resolved" in text


def test_the_last_quarter_gain_is_shown_as_an_improvement_for_either_direction():
    """mIoU up 0.02 and L1 down 0.03 both still improved: +2.00 points and +0.0300."""
    from cenfusion.experiments.report import format_markdown, summarise

    def report(task, metric, modalities, change):
        scores = {name: {metric: 0.5} for name in (*modalities, "ensemble")}
        cell = {"method": "cen", "seed": 0, "status": "ok", "scores": scores, "error": "",
                "total_params": 1, "fusion_params": 0, "train_seconds": 1.0,
                "last_quarter_gain": change}  # fmt: skip
        machine = {"processor": "x", "threads": 1, "torch": "2", "date": "today"}
        return {"task": task, "config": "c.yaml", "seeds": 1, "modalities": list(modalities),
                "methods": ["cen"], "descriptions": {}, "cells": [cell],
                "machine": machine}  # fmt: skip

    segmentation = report("segmentation", "mean_iou", ("rgb", "depth"), 0.02)
    translation = report("translation", "l1", ("texture", "reshading"), -0.03)
    for payload, shown in ((segmentation, "| 2.00 |"), (translation, "| 0.0300 |")):
        payload["summary"] = summarise(payload)
        assert payload["summary"][0]["last_quarter_gain"]["mean"] > 0
        assert shown in format_markdown(payload)


def test_cells_report_the_held_out_test_split_and_their_convergence(segmentation_yaml, tmp_path):
    report = Comparison(
        str(segmentation_yaml), ["cen"], seeds=1, output_dir=tmp_path, progress=False,
        overrides=["optim.stages=[{epochs: 2, encoder_lr: 0.01, decoder_lr: 0.01}]"],
    ).run()  # fmt: skip
    (cell,) = report["cells"]
    assert set(cell["test_scores"]) == {"rgb", "depth", "ensemble"}
    assert cell["test_scores"] != cell["scores"]  # two other scenes
    assert [epoch for epoch, _ in cell["val_curve"]] == [1, 2]
    curve = dict(cell["val_curve"])
    assert cell["last_quarter_gain"] == pytest.approx(curve[2] - curve[1])
    assert "on the held-out test split" in (tmp_path / "results.md").read_text()
    # timed for the report's budget: each epoch's validation, the test scoring
    assert all(epoch["after_epoch_seconds"] > 0 for epoch in cell["epochs"])
    assert cell["test_seconds"] > 0
    # CEN also runs with one modality alone: scored on the test split as that model
    alone = cell["test_single_modality"]
    assert set(alone) == {"rgb", "depth"} and set(alone["rgb"]) == {"rgb", "ensemble"}
    assert alone["rgb"]["ensemble"]["mean_iou"] == alone["rgb"]["rgb"]["mean_iou"]
    # every epoch's training record, without its validation scores, for plots over training
    assert [record["epoch"] for record in cell["epochs"]] == [1, 2]
    assert "val" not in cell["epochs"][0] and "l1" in cell["epochs"][0]
    shares = cell["epochs"][-1]["penalised_below_theta"]
    assert shares and all(len(pair) == 2 for pair in shares.values())


def test_cells_score_the_exchange_off_one_stage_at_a_time(segmentation_yaml, tmp_path):
    """Every stage's exchanging sites switched off together: the scores that ``cenfusion
    evaluate --exchange-off`` gives from the checkpoint; the cell's own scores untouched."""
    from cenfusion.tasks import EvaluateOptions

    # theta 2 lies above every initial gamma: all channels exchange and a knockout shows
    report = Comparison(
        str(segmentation_yaml), ["cen", "average-early"], seeds=1, output_dir=tmp_path,
        progress=False, overrides=["model.bn_threshold=2.0"],
    ).run()  # fmt: skip
    cen, average = report["cells"]
    assert average["test_exchange_off"] == {}  # a fusion baseline has no exchange to switch
    off = cen["test_exchange_off"]
    assert list(off) == ["layer1", "layer2", "layer3", "layer4"]
    cell = tmp_path / "cells" / "cen" / "seed0"
    config = load_config(cell / "config.yaml")
    task = get_task("segmentation")
    for stage, scores in off.items():
        sites = [f"{stage}.0", f"{stage}.1"]  # the stage's two blocks name all its sites
        options = EvaluateOptions(exchange_off=tuple(sites))
        expected, _ = task.evaluate_checkpoint(
            config, cell / "last.pt", "test", options, progress=False
        )
        assert scores == {name: s.as_dict() for name, s in expected.items()}, stage
    plain, _ = task.evaluate_checkpoint(
        config, cell / "last.pt", "test", EvaluateOptions(), progress=False
    )
    assert cen["test_scores"] == {name: s.as_dict() for name, s in plain.items()}
    assert off["layer1"]["ensemble"] != cen["test_scores"]["ensemble"]


def test_the_last_quarter_gain_compares_with_the_last_validation_before_three_quarters():
    from cenfusion.experiments.runner import last_quarter_gain, validation_curve

    history = [{"epoch": e, "val": {"ensemble": {"mean_iou": v}}} for e, v in
               [(2, 0.1), (4, 0.3), (6, 0.35), (8, 0.36)]]  # fmt: skip
    curve = validation_curve([*history, {"epoch": 9}], "mean_iou")
    assert curve == [[2, 0.1], [4, 0.3], [6, 0.35], [8, 0.36]]
    assert last_quarter_gain(curve, 8) == pytest.approx(0.36 - 0.35)  # 3/4 of 8 = epoch 6
    assert last_quarter_gain(curve, 40) == pytest.approx(0.0)  # nothing after 30: last - last
    assert last_quarter_gain([[8, 0.36]], 8) is None  # no validation in the first 3/4


def test_results_go_to_a_folder_to_commit_and_one_cell_reruns_alone(segmentation_yaml, tmp_path):
    results = tmp_path / "results"
    grid = str(tmp_path / "grid")
    args = ["compare", str(segmentation_yaml), "--methods", "cen", "average-early", "--seeds",
            "2", "--output", grid, "--results", str(results), "--no-progress"]  # fmt: skip
    assert main([*args, "--only-seed", "1"]) == 0
    assert sorted(p.relative_to(results).as_posix() for p in results.rglob("*.json")) == [
        "average-early/seed1.json", "cen/seed1.json",
    ]  # fmt: skip
    cell = json.loads((results / "cen" / "seed1.json").read_text())
    assert cell["status"] == "ok" and "--only-seed 1" in cell["command"]
    assert "--methods cen " in cell["command"] and f"--results {results}" in cell["command"]
    table = (tmp_path / "grid" / "results.md").read_text()
    assert "1/2 ok (1 pending)" in table  # seed 0 not trained, shown as pending
    assert main(["compare", str(segmentation_yaml), "--seeds", "2", "--only-seed", "2"]) == 2


def test_jobs_train_cells_in_parallel_processes_then_tabulate(segmentation_yaml, tmp_path):
    results = tmp_path / "results"
    code = main(["compare", str(segmentation_yaml), "--methods", "cen", "unimodal-rgb",
                 "--seeds", "1", "--output", str(tmp_path / "grid"), "--results", str(results),
                 "--jobs", "2", "--no-progress"])  # fmt: skip
    assert code == 0
    report = json.loads((tmp_path / "grid" / "results.json").read_text())
    assert [c["status"] for c in report["cells"]] == ["ok", "ok"]
    assert (results / "unimodal-rgb" / "seed0.json").is_file()


def test_a_finished_run_trains_on_when_asked_to_converge_and_keeps_its_schedule_score(
    segmentation_yaml, tmp_path
):
    # one scheduled epoch: its gain over the last quarter cannot be measured, so a run asked
    # to converge within one more epoch trains that epoch
    fresh = Comparison(
        str(segmentation_yaml), ["cen"], 1, tmp_path / "fresh", ["train.until_converged=1"],
        progress=False,
    ).run()["cells"][0]  # fmt: skip
    assert len(fresh["epochs"]) == 2 and fresh["scheduled_epochs"] == 1
    assert fresh["schedule_end_score"] == fresh["val_curve"][0][1]
    first = Comparison(
        str(segmentation_yaml), ["cen"], 1, tmp_path / "later", progress=False
    ).run()["cells"][0]
    assert len(first["epochs"]) == 1
    later = Comparison(
        str(segmentation_yaml), ["cen"], 1, tmp_path / "later", ["train.until_converged=1"],
        progress=False,
    )  # fmt: skip
    (variant,) = later.variants()
    previous = runner_module.CellResult(**first)
    assert runner_module.trains_on(previous, later.cell_config(variant, 0))
    second = later.run()["cells"][0]
    log = (tmp_path / "later" / "cells" / "cen" / "seed0" / "train.log").read_text()
    assert "resumed from" in log
    assert json.dumps(second["scores"]) == json.dumps(fresh["scores"])  # resumed exactly
    assert len(second["epochs"]) == 2
    # the score its tuning round compared stays the first run's
    assert second["schedule_end_score"] == first["scores"]["ensemble"]["mean_iou"]
    assert not runner_module.trains_on(
        runner_module.CellResult(**second), later.cell_config(variant, 0)
    )
