"""``cenfusion evaluate --exchange-off``: the same scores as the Python API's option."""

import json

from cenfusion.cli import main
from cenfusion.tasks import EvaluateOptions, get_task


def test_evaluate_with_the_first_stage_exchange_off(segmentation_config, tmp_path, capsys):
    config = segmentation_config("optim.stages=[{epochs: 1}]", "train.eval_every=0")
    task = get_task("segmentation")
    task.trainer(config, progress=False).fit()
    checkpoint = str(tmp_path / "run" / "last.pt")
    run_config = str(tmp_path / "run" / "config.yaml")
    scores = tmp_path / "scores.json"
    assert main(["evaluate", run_config, "--checkpoint", checkpoint, "--exchange-off",
                 "layer1", "--json", str(scores), "--no-progress"]) == 0  # fmt: skip
    assert "exchange off at layer1" in capsys.readouterr().out
    options = EvaluateOptions(exchange_off=("layer1",))
    expected, _ = task.evaluate_checkpoint(config, checkpoint, "val", options, progress=False)
    written = json.loads(scores.read_text())
    assert written == {name: s.as_dict() for name, s in expected.items()}
    assert main(["evaluate", run_config, "--checkpoint", checkpoint, "--exchange-off",
                 "layer7", "--no-progress"]) != 0  # fmt: skip
    assert (
        "'layer7' names no exchange site that exchanges; the sites that do are backbone.layer1.0"
        in (capsys.readouterr().err)
    )
