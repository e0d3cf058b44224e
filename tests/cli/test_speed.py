"""``--speed fast`` on evaluate and predict: the host's choice, said out loud, results alike."""

import json

import numpy as np
from PIL import Image

from cenfusion.cli import main
from cenfusion.tasks import get_task


def test_evaluate_and_predict_with_the_hosts_fast_settings(segmentation_config, synthetic_nyudv2,
                                                           tmp_path, capsys):  # fmt: skip
    config = segmentation_config("optim.stages=[{epochs: 1}]", "train.eval_every=0")
    get_task("segmentation").trainer(config, progress=False).fit()
    checkpoint, run_config = (
        str(tmp_path / "run" / "last.pt"),
        str(tmp_path / "run" / "config.yaml"),
    )
    scores = {}
    for speed in ("exact", "fast"):
        out = tmp_path / f"{speed}.json"
        assert main(["evaluate", run_config, "--checkpoint", checkpoint, "--speed", speed,
                     "--json", str(out), "--no-progress"]) == 0  # fmt: skip
        scores[speed] = json.loads(out.read_text())["ensemble"]["pixel_accuracy"]
    assert "speed fast: " in capsys.readouterr().out
    assert abs(scores["fast"] - scores["exact"]) < 0.02  # bf16 where chosen: nearly the same
    files = ["--rgb", str(synthetic_nyudv2 / "rgb" / "000001.png"),
             "--depth", str(synthetic_nyudv2 / "depth" / "000001.png")]  # fmt: skip
    masks = {}
    for speed in ("exact", "fast"):
        out = tmp_path / f"pred_{speed}.png"
        assert main(["predict", "--checkpoint", checkpoint, *files, "-o", str(out),
                     "--speed", speed]) == 0  # fmt: skip
        masks[speed] = np.asarray(Image.open(tmp_path / f"pred_{speed}_labels.png"))
    assert "speed fast: " in capsys.readouterr().err
    assert (masks["fast"] == masks["exact"]).mean() > 0.95
