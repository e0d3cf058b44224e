"""A camera missing at inference: predict from the modalities given, score without one."""

import json
import shutil

import pytest
import torch

from cenfusion.cli import main
from cenfusion.tasks import get_task

torch_load = torch.load


def test_predict_and_evaluate_without_depth(segmentation_config, synthetic_nyudv2, tmp_path,
                                            capsys):  # fmt: skip
    config = segmentation_config("optim.stages=[{epochs: 1}]", "train.eval_every=0")
    get_task("segmentation").trainer(config, progress=False).fit()
    checkpoint = str(tmp_path / "run" / "last.pt")
    rgb = synthetic_nyudv2 / "rgb" / "000001.png"
    assert main(["predict", "--checkpoint", checkpoint, "--rgb", str(rgb), "-o",
                 str(tmp_path / "pred.png")]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "no --depth: predicting from rgb only" in err
    assert (tmp_path / "pred.png").is_file() and (tmp_path / "pred_labels.png").is_file()
    scores = tmp_path / "scores.json"
    run_config = str(tmp_path / "run" / "config.yaml")  # what the run was trained with
    assert main(["evaluate", run_config, "--checkpoint", checkpoint, "--drop", "depth",
                 "--json", str(scores), "--no-progress"]) == 0  # fmt: skip
    assert "without depth" in capsys.readouterr().out
    assert sorted(json.loads(scores.read_text())) == ["ensemble", "rgb"]


@pytest.fixture
def trained(segmentation_config, tmp_path):
    """A tiny RGB-D run: its checkpoint and the config it was trained with."""
    config = segmentation_config("optim.stages=[{epochs: 1}]", "train.eval_every=0")
    get_task("segmentation").trainer(config, progress=False).fit()
    return tmp_path / "run" / "last.pt", tmp_path / "run" / "config.yaml"


def test_scoring_without_depth_needs_no_depth_files_and_keeps_the_full_scores(
    trained, synthetic_nyudv2, tmp_path, capsys, monkeypatch
):
    checkpoint, run_config = trained
    no_depth = tmp_path / "no-depth"
    shutil.copytree(synthetic_nyudv2, no_depth)
    shutil.rmtree(no_depth / "depth")  # the depth camera's files are gone
    reads = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: reads.append(a[0]) or torch_load(*a, **k))
    # no config: the checkpoint's own, with the override
    assert main(["evaluate", "--checkpoint", str(checkpoint), f"data.root={no_depth}", "--drop",
                 "depth", "--no-progress"]) == 0  # fmt: skip
    assert [str(path) for path in reads] == [str(checkpoint)]  # its config and weights: one read
    monkeypatch.undo()
    without = checkpoint.with_name("scores_val_without_depth.json")
    assert sorted(json.loads(without.read_text())) == ["ensemble", "rgb"]
    assert main(["evaluate", str(run_config), "--checkpoint", str(checkpoint),
                 "--no-progress"]) == 0  # fmt: skip
    full = json.loads(checkpoint.with_name("scores_val.json").read_text())
    assert sorted(full) == ["depth", "ensemble", "rgb"]
    assert sorted(json.loads(without.read_text())) == ["ensemble", "rgb"]  # not overwritten
    assert "UserWarning" not in capsys.readouterr().err  # the run's own config: no warning


def test_a_wrong_drop_or_a_wrong_input_names_what_the_model_takes(
    trained, synthetic_nyudv2, tmp_path, capsys
):
    checkpoint, run_config = trained
    for drop, culprits in (
        (["thermal"], ["--drop thermal", "rgb depth"]),
        (["rgb", "depth"], ["--drop rgb depth", "leaves none", "keep at least one"]),
    ):
        assert main(["evaluate", str(run_config), "--checkpoint", str(checkpoint), "--drop",
                     *drop, "--no-progress"]) == 2  # fmt: skip
        err = capsys.readouterr().err
        assert all(culprit in err for culprit in culprits), err
    rgb = str(synthetic_nyudv2 / "rgb" / "000001.png")
    for flags, culprits in (
        ([], ["no input given", "--rgb --depth"]),
        (["--thermal", rgb], ["--thermal", "takes --rgb --depth"]),
        (["--rgb", rgb, "--rgb", rgb], ["--rgb is given twice"]),
    ):
        assert main(["predict", "--checkpoint", str(checkpoint), *flags, "-o",
                     str(tmp_path / "pred.png")]) == 2  # fmt: skip
        err = capsys.readouterr().err
        assert all(culprit in err for culprit in culprits), err
        assert not (tmp_path / "pred.png").exists()


def test_evaluate_takes_every_weight_from_the_checkpoint(trained, tmp_path):
    """A config that names ImageNet weights (as training did) needs no such file to score."""
    checkpoint, run_config = trained
    gone = tmp_path / "moved-away.pth"
    assert main(["evaluate", str(run_config), f"model.pretrained={gone}", "--checkpoint",
                 str(checkpoint), "--no-progress"]) == 0  # fmt: skip


def test_evaluate_warns_where_the_config_differs_from_training(trained):
    checkpoint, run_config = trained
    changed = ["data.modality_settings={rgb: {mean: [0.5], std: [0.5]}}", "model.bn_threshold=0.5"]
    with pytest.warns(UserWarning) as caught:
        assert main(["evaluate", str(run_config), *changed, "--checkpoint", str(checkpoint),
                     "--no-progress"]) == 0  # fmt: skip
    message = str(caught[0].message)
    assert "model.bn_threshold: 0.02 in training, 0.5 here" in message
    assert "data.modality_settings.rgb: None in training, {'mean': [0.5], 'std': [0.5]} here" in (
        message
    )
