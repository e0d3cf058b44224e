"""A camera missing at inference: predict from the modalities given, score without one."""

import json

from cenfusion.cli import main
from cenfusion.tasks import get_task


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
