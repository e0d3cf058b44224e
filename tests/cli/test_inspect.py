"""`cenfusion inspect` on tiny checkpoints: the table, the JSON, the PNGs and the errors."""

import json
import sys

import numpy as np
import pytest
from PIL import Image

from cenfusion.analysis import site_statistics
from cenfusion.cli import main
from cenfusion.tasks import get_task
from tests.analysis.helpers import SEGMENTATION, TRANSLATION, write_checkpoint


@pytest.fixture(scope="module")
def segmentation_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inspect")
    return write_checkpoint(folder / "last.pt", SEGMENTATION)


@pytest.fixture(scope="module")
def rgbd_files(tmp_path_factory):
    """An 8-bit RGB image and a 16-bit depth map, 40x48, as `cenfusion predict` takes them."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / "a.png")
    depth = rng.integers(1000, 20000, (40, 48)).astype(np.uint16)
    Image.fromarray(depth).save(folder / "a_depth.png")
    return folder / "a.png", folder / "a_depth.png"


def assert_png(path, min_width=400, min_height=300):
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        assert min_width <= width <= 4000 and min_height <= height <= 6000, image.size
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.std() > 10  # something is drawn, not a blank canvas


def test_prints_the_table_and_writes_json_and_the_scaling_factor_plot(
    segmentation_checkpoint, tmp_path, capsys
):
    checkpoint, model, _ = segmentation_checkpoint
    plot, stats = tmp_path / "gammas.png", tmp_path / "stats.json"
    code = main(
        ["inspect", str(checkpoint), "--json", str(stats), "--plot", str(plot),
         "--layers", "layer1.0.bn1", "backbone.layer4.1.bn1", "--channels", "32"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "backbone.layer2.0.bn1" in out and "summary over 8 exchange sites" in out
    document = json.loads(stats.read_text())
    expected = [s.as_dict() for s in site_statistics(model)]
    assert document["sites"] == json.loads(json.dumps(expected))
    assert_png(plot, min_width=1200, min_height=800)


def test_feature_view_draws_one_row_per_group(segmentation_checkpoint, rgbd_files, tmp_path):
    checkpoint, _, _ = segmentation_checkpoint
    rgb, depth = rgbd_files
    out = tmp_path / "features.png"
    args = ["inspect", str(checkpoint), "--features", str(out), "--rgb", str(rgb)]
    args += ["--depth", str(depth), "--feature-layer", "layer1.1.bn1"]
    assert main(args) == 0
    assert_png(out)
    after = tmp_path / "after.png"
    assert main([*args[:2], "--features", str(after), *args[4:], "--after-exchange"]) == 0
    assert_png(after)


def test_a_model_trained_without_exchange_is_counted_at_the_configs_threshold(tmp_path, capsys):
    checkpoint, model, _ = write_checkpoint(
        tmp_path / "off.pt", [*SEGMENTATION, "model.exchange=false", "model.bn_threshold=0.03"]
    )
    assert main(["inspect", str(checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "exchange is off at some or all sites of this model: counting |γ| < 0.03" in out
    assert "(θ = 0.03)" in out
    assert main(["inspect", str(checkpoint), "--threshold", "0.5"]) == 0
    assert "(θ = 0.5)" in capsys.readouterr().out


def test_translation_checkpoints_are_inspected_too(tmp_path):
    checkpoint, _, _ = write_checkpoint(tmp_path / "gen.pt", TRANSLATION)
    rng = np.random.default_rng(1)
    texture, shade = tmp_path / "texture.png", tmp_path / "shade.png"
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(texture)
    Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(shade)
    plot, features = tmp_path / "gammas.png", tmp_path / "features.png"
    args = ["inspect", str(checkpoint), "--plot", str(plot), "--features", str(features)]
    assert main([*args, "--texture", str(texture), "--reshading", str(shade)]) == 0
    assert_png(plot)
    assert_png(features)


def error_of(args, capsys):
    """The exit code and the one line of stderr."""
    code = main(args)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return code, lines[0]


def test_bad_input_gives_a_one_line_error(segmentation_checkpoint, rgbd_files, tmp_path, capsys):
    checkpoint, _, _ = segmentation_checkpoint
    rgb, depth = rgbd_files
    code, line = error_of(["inspect", str(tmp_path / "nope.pt")], capsys)
    assert code == 2 and "nope.pt' does not exist" in line
    assert line.startswith("cenfusion inspect: error:")

    out = str(tmp_path / "f.png")
    missing = str(tmp_path / "missing.png")
    code, line = error_of(
        ["inspect", str(checkpoint), "--features", out, "--rgb", str(rgb), "--depth", missing],
        capsys,
    )
    assert code == 2 and "--depth:" in line and "missing.png' does not exist" in line

    code, line = error_of(
        ["inspect", str(checkpoint), "--features", out, "--rgb", str(rgb)], capsys
    )
    assert code == 2 and "missing ['depth']" in line

    code, line = error_of(
        ["inspect", str(checkpoint), "--plot", out, "--layers", "layer9.0.bn1"], capsys
    )
    assert code == 2 and "unknown layer 'layer9.0.bn1'" in line and "layer1.0.bn1" in line

    code, line = error_of(["inspect", str(checkpoint), "--rgb", str(rgb)], capsys)
    assert code == 2 and "--features" in line


def test_missing_matplotlib_names_the_extra(segmentation_checkpoint, tmp_path, monkeypatch, capsys):
    checkpoint, _, _ = segmentation_checkpoint
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails
    code, line = error_of(["inspect", str(checkpoint), "--plot", str(tmp_path / "x.png")], capsys)
    assert code == 2 and "pip install 'cenfusion[plot]'" in line
    assert not (tmp_path / "x.png").exists()


def test_history_draws_the_penalised_share_over_training(segmentation_config, tmp_path):
    pytest.importorskip("matplotlib")
    config = segmentation_config("train.eval_every=0", "train.lam=0.5")
    history = get_task("segmentation").trainer(config, progress=False).fit()
    shares = history[-1]["penalised_below_theta"]
    assert len(shares) > 0 and all(
        len(v) == 2 and 0 <= min(v) <= max(v) <= 1 for v in shares.values()
    )
    out = tmp_path / "history.png"
    assert main(["inspect", str(tmp_path / "run" / "last.pt"), "--history", str(out)]) == 0
    assert out.stat().st_size > 5_000


def test_cost_prints_parameters_and_gflops_per_part(segmentation_checkpoint, tmp_path, capsys):
    checkpoint, model, _ = segmentation_checkpoint
    translation, _, _ = write_checkpoint(tmp_path / "gen.pt", TRANSLATION)
    assert main(["inspect", str(checkpoint), "--cost", "64", "96"]) == 0
    out = capsys.readouterr().out
    assert "one 64x96 input per modality" in out and "GFLOP/branch" in out
    assert "backbone" in out and "decoder" in out
    total = sum(p.numel() for p in model.parameters())
    assert f"{total:,}" in out
    assert main(["inspect", str(translation), "--cost", "32", "32"]) == 0
    assert "down" in capsys.readouterr().out  # the generator's blocks
