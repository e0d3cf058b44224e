"""`cenfusion demo` (what `make demo` runs) works end to end, shrunk to seconds."""

import numpy as np
from PIL import Image

from cenfusion.cli import main


def test_demo_generates_trains_evaluates_and_draws_a_prediction(tmp_path, capsys):
    code = main(
        [
            "demo",
            "--n-train", "4",
            "--n-val", "3",
            "--n-test", "2",
            "--no-progress",
            f"data.root={tmp_path / 'data'}",
            f"output_dir={tmp_path / 'run'}",
            "model.decoder_channels=[8, 8]",
            "data.crop_size=[48, 64]",
            "train.batch_size=2",
            "train.max_steps_per_epoch=1",
            "optim.stages=[{epochs: 1, encoder_lr: 0.01, decoder_lr: 0.01}]",
        ]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "generating 4 + 3 + 2 synthetic scenes" in out
    assert "ensemble" in out and "mIoU" in out and "the best single branch" in out
    assert "backbone.layer1.0.bn1" in out  # what each exchange site gave away
    picture = np.asarray(Image.open(tmp_path / "run" / "prediction.png"))
    assert picture.shape == (3 * 120 + 2 * 4, 4 * 160 + 3 * 4, 3)  # 3 rows of 4 panels
    rgb = np.asarray(Image.open(tmp_path / "data" / "rgb" / "00005.png"))
    normal = np.asarray(Image.open(tmp_path / "data" / "normal" / "00005.png"))
    assert np.array_equal(picture[:120, :160], rgb)  # first validation scene: rgb | normal | ...
    assert np.array_equal(picture[:120, 164:324], normal)
    for name in ("last.pt", "gammas.png", "exchange.png"):
        assert (tmp_path / "run" / name).stat().st_size > 1000, name
