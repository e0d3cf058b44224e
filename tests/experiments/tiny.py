"""A tiny translation set-up (data and YAML config) for the runner and protocol tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cenfusion.data.synthetic.writers import write_taskonomy


def write_tiny_translation(root: Path, n_test: int = 0, **eval_settings: Any) -> Path:
    """Shade + Texture -> RGB scenes (2 train, 2 val, ``n_test`` test, 32x32) under
    ``root/data`` and the YAML config of a 5-level U-Net with ngf 4 that trains one step per
    run; ``eval_settings`` go into its ``eval`` section. Returns the config's path."""
    write_taskonomy(
        root / "data", n_train=2, n_val=2, n_test=n_test, seed=3, size=(32, 32),
        domains=("rgb", "reshading", "texture"), progress=False,
    )  # fmt: skip
    config = {
        "task": "translation",
        "output_dir": str(root / "run"),
        "model": {
            "arch": "pix2pix",
            "modalities": ["texture", "reshading"],
            "target": "rgb",
            "ngf": 4,
            "ndf": 4,
            "num_downs": 5,
        },
        "data": {
            "format": "taskonomy",
            "root": str(root / "data"),
            "load_size": [32, 32],
            "crop_size": [32, 32],
        },
        "train": {
            "batch_size": 2,
            "epochs": 1,
            "max_steps_per_epoch": 1,
            "lam": 0.01,
            "sample_every": 0,
        },
        "eval": {"batch_size": 2, **eval_settings},
    }
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
