"""`cenfusion prepare nyudv2` on small files in the official layouts, value for value.

The files are written here the way the official ones are: an HDF5 (MATLAB v7.3) file whose
arrays h5py sees as ``(N, 3, W, H)`` / ``(N, W, H)`` (column-major MATLAB), and MATLAB v5 split
and class-mapping files. W = 7 and H = 5 differ, so a missing transposition shows.
"""

import json
import os
import signal

import numpy as np
import pytest
from PIL import Image

from cenfusion.cli import main
from cenfusion.config import load_config
from cenfusion.data.hha import NYUDV2_KINECT, hha
from cenfusion.data.prepare import prepare_nyudv2
from cenfusion.data.prepare.common import write_staged
from cenfusion.data.segmentation import NYUDv2
from cenfusion.data.segmentation.modalities import IMAGENET_RGB, NYUDV2_DEPTH
from cenfusion.tasks.segmentation.training import build_datasets
from tests.clear_errors import assert_clear

h5py = pytest.importorskip("h5py")
scipy_io = pytest.importorskip("scipy.io")

N, W, H = 6, 7, 5


@pytest.fixture
def official(tmp_path):
    """The three files, plus the arrays in H x W order to compare with."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (N, 3, W, H), dtype=np.uint8)
    depths = rng.uniform(0.5, 9.5, (N, W, H)).astype(np.float32)
    labels = rng.integers(0, 895, (N, W, H)).astype(np.uint16)
    labels[:, 0, 0] = 0  # unlabelled somewhere in every image
    labeled = tmp_path / "nyu_depth_v2_labeled.mat"
    with h5py.File(labeled, "w") as f:
        f["images"], f["depths"], f["labels"] = images, depths, labels
        f["names"] = np.zeros(3)  # other variables of the real file are ignored
    splits = tmp_path / "splits.mat"
    scipy_io.savemat(splits, {"trainNdxs": np.array([[5], [1], [3]]), "testNdxs": [[2], [6]]})
    mapping = tmp_path / "classMapping40.mat"
    map_class = (np.arange(894) % 41).reshape(1, 894)  # some raw classes map to 0: unlabelled
    scipy_io.savemat(mapping, {"mapClass": map_class})
    return {
        "labeled": labeled, "splits": splits, "mapping": mapping, "map_class": map_class[0],
        "rgb": images.transpose(0, 3, 2, 1), "depth": depths.transpose(0, 2, 1),
        "labels": labels.transpose(0, 2, 1),
    }  # fmt: skip


def read(path):
    return np.asarray(Image.open(path))


def test_every_value_lands_where_the_loader_reads_it(official, tmp_path):
    out = tmp_path / "nyudv2"
    result = prepare_nyudv2(official["labeled"], official["splits"], out,
                            mapping=official["mapping"], progress=False)  # fmt: skip
    assert (result.train, result.val) == (3, 2)
    assert (out / "train.txt").read_text().splitlines() == [
        f"rgb/{i:06d}.png\tmasks/{i:06d}.png\tdepth/{i:06d}.png" for i in (1, 3, 5)
    ]
    assert [line.split("\t")[0] for line in (out / "val.txt").read_text().splitlines()] == [
        "rgb/000002.png", "rgb/000006.png",
    ]  # fmt: skip
    assert not (out / "rgb" / "000004.png").exists()  # in no split
    for index in (1, 2, 3, 5, 6):
        name = f"{index:06d}.png"
        np.testing.assert_array_equal(read(out / "rgb" / name), official["rgb"][index - 1])
        depth = read(out / "depth" / name)
        assert depth.dtype == np.uint16 and depth.shape == (H, W)
        np.testing.assert_array_equal(depth, np.round(official["depth"][index - 1] * 5000))
        raw = official["labels"][index - 1].astype(np.int64)
        mapped = np.where(raw > 0, official["map_class"][np.maximum(raw - 1, 0)], 0)
        expected = np.where(mapped > 0, mapped - 1, 255)
        np.testing.assert_array_equal(read(out / "masks" / name), expected)
    assert result.unlabelled_pixels > 0 and max(result.class_pixels) <= 39
    assert json.loads((out / "meta.json").read_text())["classes"] == 40
    # the loader reads it as written (rgb, metres, classes)
    dataset = NYUDv2(out, "val.txt", modalities=[IMAGENET_RGB, NYUDV2_DEPTH], num_classes=40)
    sample = dataset[0]
    assert tuple(sample["label"].shape) == (H, W)
    np.testing.assert_allclose(sample["depth"][0].numpy(), official["depth"][1], atol=1e-4)


def test_the_raw_classes_are_kept_in_16_bits(official, tmp_path):
    out = tmp_path / "raw"
    prepare_nyudv2(official["labeled"], official["splits"], out, classes=894, progress=False)
    mask = read(out / "masks" / "000001.png")
    assert mask.dtype == np.uint16
    raw = official["labels"][0].astype(np.int64)
    np.testing.assert_array_equal(mask, np.where(raw > 0, raw - 1, 65535))


@pytest.mark.parametrize(
    ("break_it", "culprits"),
    [
        ("split out of range", ["splits.mat", "index 9", "outside 1..6"]),
        ("no labels", ["nyu_depth_v2_labeled.mat", "'labels'"]),
        ("not hdf5", ["nyu_depth_v2_labeled.mat", "HDF5"]),
        ("short mapping", ["classMapping40.mat", "mapClass"]),
        ("index twice", ["splits.mat", "trainNdxs", "index 3 more than once"]),
        ("fractional index", ["splits.mat", "testNdxs", "1.5", "whole"]),
        ("raw class beyond 894", ["nyu_depth_v2_labeled.mat", "sample 3", "999", "0..894"]),
    ],
)
def test_files_that_are_not_what_they_claim_are_refused_and_nothing_is_left(
    official, tmp_path, break_it, culprits
):
    if break_it == "split out of range":
        scipy_io.savemat(official["splits"], {"trainNdxs": [[9]], "testNdxs": [[2]]})
    elif break_it == "no labels":
        with h5py.File(official["labeled"], "a") as f:
            del f["labels"]
    elif break_it == "not hdf5":
        official["labeled"].write_bytes(b"MATLAB 5.0 MAT-file, not HDF5")
    elif break_it == "index twice":
        scipy_io.savemat(official["splits"], {"trainNdxs": [[3], [1], [3]], "testNdxs": [[2]]})
    elif break_it == "fractional index":
        scipy_io.savemat(official["splits"], {"trainNdxs": [[3]], "testNdxs": [[1.5]]})
    elif break_it == "raw class beyond 894":
        with h5py.File(official["labeled"], "a") as f:
            f["labels"][2, 1, 1] = 999
    else:
        scipy_io.savemat(official["mapping"], {"mapClass": np.ones((1, 40))})
    out = tmp_path / "out"
    with pytest.raises(ValueError) as caught:
        prepare_nyudv2(official["labeled"], official["splits"], out,
                       mapping=official["mapping"], progress=False)  # fmt: skip
    assert_clear(caught.value, *culprits)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.partial")]


def test_the_command_prints_a_summary(official, tmp_path, capsys):
    code = main(["prepare", "nyudv2", str(tmp_path / "cli"), "--labeled", str(official["labeled"]),
                 "--splits", str(official["splits"]), "--mapping", str(official["mapping"]),
                 "--no-progress"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "wrote 3 train + 2 val NYUDv2 samples" in out and "pixels per class" in out
    assert main(["prepare", "nyudv2", str(tmp_path / "cli"), "--labeled", "x", "--splits",
                 "y"]) == 2  # fmt: skip


def test_hha_is_written_beside_and_trains_as_a_third_modality(official, tmp_path):

    out = tmp_path / "with-hha"
    prepare_nyudv2(official["labeled"], official["splits"], out, mapping=official["mapping"],
                   progress=False, hha=True)  # fmt: skip
    encoded = read(out / "hha" / "000003.png")
    assert encoded.shape == (H, W, 3)
    np.testing.assert_array_equal(
        encoded, hha(official["depth"][2].astype(np.float64), NYUDV2_KINECT)
    )
    hha_setting = "{hha: {channels: 3, scale: 0.00392156862745098, folder: hha}}"
    overrides = [f"data.root={out}", "model.modalities=[rgb, depth, hha]", "model.num_classes=40",
                 f"data.modality_settings={hha_setting}"]  # fmt: skip
    config = load_config(None, overrides)
    sample = build_datasets(config, ("val",))["val"][0]
    assert tuple(sample["hha"].shape) == (3, H, W)
    np.testing.assert_allclose(
        sample["hha"].numpy(), read(out / "hha" / "000002.png").transpose(2, 0, 1) / 255, atol=1e-6
    )


def test_a_raw_class_beyond_894_is_refused_with_the_raw_classes_too(official, tmp_path):
    with h5py.File(official["labeled"], "a") as f:
        f["labels"][0, 2, 3] = 999
    with pytest.raises(ValueError) as caught:
        prepare_nyudv2(official["labeled"], official["splits"], tmp_path / "raw", classes=894,
                       progress=False)  # fmt: skip
    assert_clear(caught.value, "sample 1", "999")
    assert not (tmp_path / "raw").exists()


def test_an_output_that_is_a_file_is_refused(official, tmp_path):
    out = tmp_path / "taken"
    out.write_text("not a folder")
    with pytest.raises(FileExistsError) as caught:
        prepare_nyudv2(official["labeled"], official["splits"], out, mapping=official["mapping"],
                       progress=False)  # fmt: skip
    assert_clear(caught.value, "taken", "is a file")


def test_a_sigterm_while_writing_leaves_nothing_behind(tmp_path):
    out = tmp_path / "stopped"

    def write(folder):
        (folder / "rgb").mkdir()
        os.kill(os.getpid(), signal.SIGTERM)  # a job scheduler stops the run
        raise AssertionError("the SIGTERM did not stop the write")

    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit):
        write_staged(out, write)
    assert signal.getsignal(signal.SIGTERM) == previous
    assert not out.exists() and list(tmp_path.iterdir()) == []
