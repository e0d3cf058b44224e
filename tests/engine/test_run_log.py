"""The run's logs: JSONL and CSV per epoch, per-stage exchange, Theorem 1, samples, TensorBoard."""

import csv
import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from cenfusion.engine.run_log import flatten
from cenfusion.tasks import get_task

SEGMENTATION = get_task("segmentation")


def read_csv(path):
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_flatten_names_nested_scalars_and_alpha_by_modality():
    record = {
        "epoch": 3,
        "loss": 1.5,
        "alpha": [0.4, 0.6],
        "exchanged_per_stage": {"layer1": 0.5},
        "val": {"ensemble": {"mean_iou": 0.3, "per_class_iou": [0.1, 0.2]}},
        "samples": "runs/x/samples/epoch_003.png",
    }
    assert flatten(record, ("rgb", "depth")) == {
        "epoch": 3.0,
        "loss": 1.5,
        "alpha/rgb": 0.4,
        "alpha/depth": 0.6,
        "exchanged_per_stage/layer1": 0.5,
        "val/ensemble/mean_iou": 0.3,
    }


def test_training_logs_csv_stages_theorem_and_samples(tiny_config):
    config = tiny_config("model.exchange=false", "train.sparsity=disjoint", "train.eval_every=2")
    history = SEGMENTATION.trainer(config, progress=False).fit()
    out = Path(config.output_dir)
    rows = read_csv(out / "metrics.csv")
    assert len(rows) == len(history) == 2
    assert rows[0]["val/ensemble/mean_iou"] == ""  # validated in epoch 2 only
    assert float(rows[1]["val/ensemble/mean_iou"]) == history[1]["val"]["ensemble"]["mean_iou"]
    assert set(history[0]["exchanged_per_stage"]) == {"layer1", "layer2", "layer3", "layer4"}
    theorem = history[0]["theorem1"]
    assert 0 <= theorem["collapsed_fraction"] <= 1
    assert 0 < theorem["predicted_probability"] <= 1 and theorem["num_penalised"] > 0
    assert "theorem1/predicted_probability" in rows[0]
    assert history[-1]["samples"] == "samples/epoch_002.png"  # relative: the logs travel
    sample = Image.open(out / history[-1]["samples"])
    crop_height = 2 * 40  # two validation images of the 40x48 scenes
    assert sample.size[1] >= crop_height and sample.size[0] > 5 * 48  # 2 inputs, truth, 3 outputs
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


def test_exchanging_runs_do_not_log_theorem_1(tiny_config):
    history = SEGMENTATION.trainer(tiny_config(), progress=False).fit()
    assert "theorem1" not in history[0]


def test_tensorboard_without_the_package_is_a_clear_error(tiny_config, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    with pytest.raises(RuntimeError, match=r"cenfusion\[tensorboard\]"):
        SEGMENTATION.trainer(tiny_config("train.tensorboard=true"), progress=False)


def test_tensorboard_event_files_hold_the_scalars(tiny_config):
    pytest.importorskip(
        "tensorboard",
        reason="tensorboard is not installed (an optional extra, not in dev): "
        "pip install 'cenfusion[tensorboard]' to run this",
    )
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = tiny_config("train.tensorboard=true")
    SEGMENTATION.trainer(config, progress=False).fit()
    events = EventAccumulator(str(Path(config.output_dir) / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert "loss" in tags and "alpha/rgb" in tags and "val/ensemble/mean_iou" in tags
    assert [e.step for e in events.Scalars("loss")] == [1, 2]


def test_off_a_terminal_the_trainer_prints_lines_not_a_bar(tiny_config, capsys, monkeypatch):
    """``cenfusion train ... > log.txt 2>&1``: plain progress lines, no carriage returns."""
    monkeypatch.setattr("sys.stderr.isatty", lambda: False, raising=False)
    SEGMENTATION.trainer(tiny_config("train.eval_every=0"), progress=True).fit()
    out, err = capsys.readouterr()
    assert "epoch 1/2, step 1/2: loss" in out and "epoch 2/2, step 2/2: loss" in out
    assert "\r" not in err and "\r" not in out
