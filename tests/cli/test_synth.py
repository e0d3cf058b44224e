"""``cenfusion synth``: sub-commands, defaults and the preview picture."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cenfusion.cli import synth
from cenfusion.data.synthetic import DEFAULT_SIZE, MODALITIES
from cenfusion.data.synthetic.preview import colorize_label, preview_grid


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cenfusion")
    synth.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_default_size_matches_the_library() -> None:
    assert tuple(synth.DEFAULT_SIZE) == DEFAULT_SIZE
    args = _parse(["synth", "nyudv2", "out"])
    assert tuple(args.size) == DEFAULT_SIZE
    assert (args.n_train, args.n_val) == (795, 654)
    args = _parse(["synth", "taskonomy", "out"])
    assert (args.n_train, args.n_val) == (1000, 500)


def test_synth_nyudv2_and_taskonomy_write_folders(tmp_path: Path, capsys) -> None:
    common = ["--n-train", "2", "--n-val", "1", "--size", "24", "32", "--no-progress"]
    args = _parse(["synth", "nyudv2", str(tmp_path / "nyu"), *common])
    assert args.func(args) == 0
    assert len((tmp_path / "nyu" / "train.txt").read_text().splitlines()) == 2
    args = _parse(["synth", "taskonomy", str(tmp_path / "tk"), *common, "--domains", "rgb"])
    assert args.func(args) == 0
    assert sorted(p.name for p in (tmp_path / "tk").iterdir()) == [
        "meta.json",
        "rgb",
        "train.txt",
        "val.txt",
    ]
    assert "wrote 2 train + 1 val" in capsys.readouterr().out
    args = _parse(["synth", "nyudv2", str(tmp_path / "nyu"), *common])
    with pytest.raises(FileExistsError):
        args.func(args)
    args = _parse(["synth", "nyudv2", str(tmp_path / "nyu"), *common, "--force"])
    assert args.func(args) == 0


def test_synth_requires_a_format() -> None:
    with pytest.raises(SystemExit):
        _parse(["synth"])


def test_preview_is_a_grid_of_scenes_by_modalities(tmp_path: Path) -> None:
    out = tmp_path / "docs" / "preview.png"
    args = _parse(["synth", "preview", str(out), "--n", "2", "--size", "30", "40"])
    assert args.func(args) == 0
    with Image.open(out) as image:
        width, height = image.size
    columns = len(MODALITIES) + 1  # + label
    assert width == columns * 40 + (columns + 1) * 4
    assert height == 2 * 30 + 3 * 4 + 16  # rows, gaps, caption
    grid = preview_grid(2, size=(30, 40))
    assert grid.dtype == np.uint8 and grid.shape[2] == 3
    with pytest.raises(ValueError, match=r"\.png"):
        args = _parse(["synth", "preview", str(tmp_path / "x.jpg")])
        args.func(args)


def test_labels_are_colourised_with_void_black() -> None:
    image = colorize_label(np.array([[0, 255]], dtype=np.uint8))
    assert image[0, 1].tolist() == [0, 0, 0] and image[0, 0].tolist() != [0, 0, 0]
