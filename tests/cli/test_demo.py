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
    assert "generating 4 + 3 synthetic scenes" in out
    assert "ensemble" in out and "mIoU" in out and "the best single branch" in out
    picture = np.asarray(Image.open(tmp_path / "run" / "prediction.png"))
    assert picture.shape == (3 * 120 + 2 * 4, 4 * 160 + 3 * 4, 3)  # 3 rows of 4 panels
    assert (tmp_path / "run" / "last.pt").is_file()
