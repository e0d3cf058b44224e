"""`cenfusion prepare sunrgbd` on small folders in the official layout, value for value.

The toolbox files are written here the way the official ones are: ``SUNRGBDMeta.mat``,
``allsplit.mat`` and ``seg37list.mat`` as MATLAB v5 (a struct array, cell arrays of strings,
with the authors' absolute paths, doubled and trailing slashes), ``SUNRGBD2Dseg.mat`` as HDF5
(MATLAB v7.3) with one object reference per sample to a column-major ``(W, H)`` map; the
``depth_bfx`` PNGs hold millimetres rotated left by 3 bits, as the data set stores them. W = 7
and H = 5 differ, so a missing transposition shows.
"""

import json

import numpy as np
import pytest
from PIL import Image

from cenfusion.cli import main
from cenfusion.config import load_config
from cenfusion.data.hha import Intrinsics, hha
from cenfusion.data.prepare import prepare_sunrgbd
from cenfusion.data.prepare.sunrgbd import decode_depth, sample_folder
from cenfusion.tasks.segmentation.training import build_datasets
from tests.clear_errors import assert_clear

h5py = pytest.importorskip("h5py")
scipy_io = pytest.importorskip("scipy.io")

W, H = 7, 5
PREFIX = "/n/fs/sun3d/data/SUNRGBD/"
# (sample folder, split, how allsplit and rgbpath spell it)
SAMPLES = [
    ("kv2/kinect2data/000002_2014-05-26_14-23-37_260595134347_rgbf000103-resize", "test", ""),
    ("kv1/NYUdata/NYU0001", "train", "/"),  # a trailing slash in allsplit
    ("realsense/sa/2014_10_21-18_19_07-1311000073", "test", "//"),  # '//image' in rgbpath
    ("xtion/sun3ddata/mit_76_studyroom/76-1studyroom2/0002111-000070763319", "train", ""),
    ("kv1/b3dodata/img_0063", "train", "/"),
]
CLASSES = [f"class{k}" for k in range(1, 38)]


def rotate_left_3(millimetres):
    value = millimetres.astype(np.uint32)
    return (((value << 3) | (value >> 13)) & 0xFFFF).astype(np.uint16)


@pytest.fixture
def official(tmp_path):
    rng = np.random.default_rng(0)
    data, toolbox = tmp_path / "SUNRGBD", tmp_path / "SUNRGBDtoolbox"
    (toolbox / "Metadata").mkdir(parents=True)
    (toolbox / "traintestSUNRGBD").mkdir()
    fields = [("sequenceName", "O"), ("rgbpath", "O"), ("depthpath", "O"), ("rgbname", "O"),
              ("depthname", "O"), ("K", "O")]  # fmt: skip
    meta = np.zeros((1, len(SAMPLES)), dtype=fields)
    labels, millimetres = [], []
    for i, (folder, _, spelling) in enumerate(SAMPLES):
        rgbname, depthname = f"{i:07d}.jpg", f"{i:07d}.png"
        (data / folder / "image").mkdir(parents=True)
        (data / folder / "depth_bfx").mkdir()
        rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(data / folder / "image" / rgbname)
        mm = rng.integers(400, 9000, (H, W)).astype(np.uint16)  # some beyond the 8 m clamp
        mm[0, 0] = 0  # a hole
        Image.fromarray(rotate_left_3(mm)).save(data / folder / "depth_bfx" / depthname)
        millimetres.append(mm)
        label = rng.integers(0, 38, (H, W))
        label[1, 2] = 0
        labels.append(label)
        slash = "//" if spelling == "//" else "/"
        rgbpath = PREFIX + folder + slash + "image/" + rgbname
        depthpath = PREFIX + folder + "/depth/" + depthname
        camera = np.array([[520.0 + 10 * i, 0, 3.2], [0, 519.0, 2.1], [0, 0, 1]])  # per sensor
        meta[0, i] = (PREFIX + folder, rgbpath, depthpath, rgbname, depthname, camera)
    scipy_io.savemat(toolbox / "Metadata" / "SUNRGBDMeta.mat", {"SUNRGBDMeta": meta})
    split = {
        name: np.array(
            [[PREFIX + f + ("/" if s == "/" else "") for f, sp, s in SAMPLES if sp == name]],
            dtype=object,
        )
        for name in ("train", "test")
    }
    scipy_io.savemat(toolbox / "traintestSUNRGBD" / "allsplit.mat",
                     {"alltrain": split["train"], "alltest": split["test"]})  # fmt: skip
    scipy_io.savemat(toolbox / "Metadata" / "seg37list.mat",
                     {"seg37list": np.array([CLASSES], dtype=object)})  # fmt: skip
    with h5py.File(toolbox / "Metadata" / "SUNRGBD2Dseg.mat", "w") as f:
        refs = f.create_group("#refs#")
        seglabel = f.create_group("SUNRGBD2Dseg").create_dataset(
            "seglabel", (len(SAMPLES), 1), dtype=h5py.ref_dtype
        )
        for i, label in enumerate(labels):
            seglabel[i, 0] = refs.create_dataset(f"l{i}", data=label.T.astype(np.float64)).ref
    return {"data": data, "toolbox": toolbox, "labels": labels, "mm": millimetres}


def read(path):
    return np.asarray(Image.open(path))


def test_every_value_lands_where_the_loader_reads_it(official, tmp_path):
    out = tmp_path / "sunrgbd"
    result = prepare_sunrgbd(official["data"], official["toolbox"], out, progress=False)
    assert (result.train, result.val) == (3, 2)
    assert (out / "train.txt").read_text() == "".join(
        f"rgb/{i:06d}.jpg\tmasks/{i:06d}.png\tdepth/{i:06d}.png\n" for i in (2, 4, 5)
    )
    assert (out / "test.txt").read_text().splitlines()[
        1
    ] == "rgb/000003.jpg\tmasks/000003.png\tdepth/000003.png"
    for i, (folder, _, _) in enumerate(SAMPLES):
        name = f"{i + 1:06d}"
        source = official["data"] / folder / "image" / f"{i:07d}.jpg"
        assert (out / "rgb" / f"{name}.jpg").read_bytes() == source.read_bytes()
        depth = read(out / "depth" / f"{name}.png")
        assert depth.dtype == np.uint16 and depth.shape == (H, W)
        assert np.array_equal(depth, np.minimum(official["mm"][i], 8000))
        label = official["labels"][i]
        expected = np.where(label > 0, label - 1, 255).astype(np.uint8)
        assert np.array_equal(read(out / "masks" / f"{name}.png"), expected)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["classes"] == CLASSES and meta["ignore_index"] == 255
    assert "3 train + 2 test SUN RGB-D samples" in result.summary()
    # the shipped config reads the result
    config = load_config("sunrgbd_refinenet101", [f"data.root={out}", "model.pretrained=null"])
    datasets = build_datasets(config, ("train", "val"))
    assert len(datasets["train"]) == 3 and len(datasets["val"]) == 2


def test_depth_is_the_toolboxs_reading_of_depth_bfx():
    stored = rotate_left_3(np.array([0, 1, 1234, 8000, 8191, 20000], dtype=np.uint16))
    assert decode_depth(stored).tolist() == [0, 1, 1234, 8000, 8000, 8000]
    assert sample_folder("/n/fs/sun3d/data/SUNRGBD/realsense/sa/x//image/1.jpg") == (
        "realsense/sa/x/image/1.jpg"
    )
    assert sample_folder("/data1/SUNRGBD/kv1/NYUdata/NYU0001/") == "kv1/NYUdata/NYU0001"


def test_the_command_prints_a_summary(official, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["prepare", "sunrgbd", str(out), "--sunrgbd", str(official["data"]),
                 "--toolbox", str(official["toolbox"]), "--no-progress"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "3 train + 2 test SUN RGB-D samples" in printed and "data.root=" in printed


def broken_split(official):
    path = official["toolbox"] / "traintestSUNRGBD" / "allsplit.mat"
    unknown = np.array([[PREFIX + "kv1/NYUdata/NYU9999"]], dtype=object)
    scipy_io.savemat(
        path, {"alltrain": unknown, "alltest": np.array([[PREFIX + SAMPLES[0][0]]], dtype=object)}
    )


def sample_in_no_split(official):
    path = official["toolbox"] / "traintestSUNRGBD" / "allsplit.mat"
    train = np.array([[PREFIX + SAMPLES[1][0]]], dtype=object)
    scipy_io.savemat(
        path, {"alltrain": train, "alltest": np.array([[PREFIX + SAMPLES[0][0]]], dtype=object)}
    )


def missing_depth(official):
    folder, _, _ = SAMPLES[3]
    (official["data"] / folder / "depth_bfx" / "0000003.png").unlink()


def label_out_of_range(official):
    with h5py.File(official["toolbox"] / "Metadata" / "SUNRGBD2Dseg.mat", "a") as f:
        f["#refs#"]["l4"][0, 0] = 38


def wrong_meta(official):
    scipy_io.savemat(official["toolbox"] / "Metadata" / "SUNRGBDMeta.mat", {"meta": np.zeros(3)})


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (broken_split, "alltrain names 1 folder(s) SUNRGBDMeta lacks, e.g. 'kv1/NYUdata/NYU9999'"),
        (sample_in_no_split, "3 sample(s) of SUNRGBDMeta are in neither split"),
        (missing_depth, "0000003.png' does not exist"),
        (label_out_of_range, "seglabel of sample 5 (kv1/b3dodata/img_0063) holds values"),
        (wrong_meta, "has no 'SUNRGBDMeta' (variables: ['meta'])"),
    ],
)
def test_a_file_that_is_not_what_it_claims_is_refused_and_nothing_is_left(
    official, tmp_path, damage, message
):
    damage(official)
    out = tmp_path / "sunrgbd"
    with pytest.raises((ValueError, FileNotFoundError)) as error:
        prepare_sunrgbd(official["data"], official["toolbox"], out, progress=False)
    assert message in str(error.value)
    assert_clear(error.value)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".sunrgbd.partial")]


def test_hha_uses_each_samples_own_camera(official, tmp_path):
    out = tmp_path / "with-hha"
    assert main(["prepare", "sunrgbd", str(out), "--sunrgbd", str(official["data"]),
                 "--toolbox", str(official["toolbox"]), "--hha", "--no-progress"]) == 0  # fmt: skip
    for i in range(len(SAMPLES)):
        metres = np.minimum(official["mm"][i], 8000).astype(np.float64) / 1000
        camera = Intrinsics(fx=520.0 + 10 * i, fy=519.0, cx=3.2, cy=2.1)
        encoded = read(out / "hha" / f"{i + 1:06d}.png")
        np.testing.assert_array_equal(encoded, hha(metres, camera))
    hha_setting = "{hha: {channels: 3, scale: 0.00392156862745098, folder: hha}}"
    config = load_config("sunrgbd_refinenet101", [
        f"data.root={out}", "model.pretrained=null", "model.modalities=[rgb, depth, hha]",
        f"data.modality_settings={hha_setting}",
    ])  # fmt: skip
    sample = build_datasets(config, ("val",))["val"][0]
    assert tuple(sample["hha"].shape) == (3, H, W)


def test_hha_needs_the_camera_matrix(official, tmp_path):
    path = official["toolbox"] / "Metadata" / "SUNRGBDMeta.mat"
    meta = scipy_io.loadmat(path)["SUNRGBDMeta"]
    meta[0, 1]["K"] = np.zeros((0, 0))
    scipy_io.savemat(path, {"SUNRGBDMeta": meta})
    out = tmp_path / "no-camera"
    with pytest.raises(ValueError) as caught:
        prepare_sunrgbd(official["data"], official["toolbox"], out, progress=False, hha=True)
    assert_clear(caught.value, "SUNRGBDMeta.mat", "entry 2", "K", "--hha")
    assert not out.exists()
    # without --hha the camera is not read
    prepare_sunrgbd(official["data"], official["toolbox"], out, progress=False)
    assert not (out / "hha").exists()


def test_sun_rgbd_depth_can_be_read_in_metres(official, tmp_path):
    out = tmp_path / "metres"
    prepare_sunrgbd(official["data"], official["toolbox"], out, progress=False)
    metres = "{depth: {norm: affine, scale: 0.001}}"
    config = load_config("sunrgbd_refinenet101", [
        f"data.root={out}", "model.pretrained=null", f"data.modality_settings={metres}",
    ])  # fmt: skip
    sample = build_datasets(config, ("val",))["val"][0]  # test.txt's first: sample 1
    np.testing.assert_allclose(
        sample["depth"][0].numpy(), np.minimum(official["mm"][0], 8000) / 1000, atol=1e-6
    )
