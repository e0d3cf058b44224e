"""Broken data on disk: every defect is refused with one line naming the file (and line)."""

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from cenfusion.config import load_config
from cenfusion.data.segmentation import NYUDv2
from cenfusion.tasks import get_task
from cenfusion.tasks.segmentation import training as segmentation
from cenfusion.tasks.translation import training as translation
from tests.clear_errors import assert_clear

TRANSLATION = get_task("translation")

COLUMNS = {"rgb": 0, "label": 1, "depth": 2}  # the NYUDv2 list: rgb, masks, depth


def listed(root: Path, line: int, key: str) -> Path:
    fields = (root / "train.txt").read_text().splitlines()[line].split("\t")
    return root / fields[COLUMNS[key]]


def break_data(root: Path, how: str, line: int, key: str, data: st.DataObject):
    """Damage a copy of the set; returns the list file to open and what errors must name."""
    path = listed(root, line, key)
    if how == "delete":
        path.unlink()
        return "train.txt", [str(path)]
    if how == "truncate":
        content = path.read_bytes()
        path.write_bytes(content[: data.draw(st.integers(0, len(content) - 1), label="keep")])
        return "train.txt", [str(path)]
    if how == "garbage":
        path.write_bytes(data.draw(st.binary(min_size=0, max_size=64), label="bytes"))
        return "train.txt", [str(path)]
    if how == "resize":
        height = data.draw(st.sampled_from([8, 15, 17, 31]), label="height")
        with Image.open(path) as image:
            image.resize((20, height)).save(path)
        return "train.txt", ["size mismatch", str(path), f"train.txt:{line + 1}"]
    if how == "8-bit depth":
        depth = listed(root, line, "depth")
        Image.fromarray(np.zeros((16, 20), np.uint8)).save(depth)
        return "train.txt", [str(depth), "8-bit"]
    if how == "label range":
        label = listed(root, line, "label")
        value = data.draw(st.integers(10, 254), label="value")
        Image.fromarray(np.full((16, 20), value, np.uint8)).save(label)
        return "train.txt", [str(label), str(value), "0..9"]
    if how == "colour label":
        label = listed(root, line, "label")
        Image.fromarray(np.zeros((16, 20, 3), np.uint8)).save(label)
        return "train.txt", [str(label), "RGB"]
    if how == "columns":
        count = data.draw(st.sampled_from([1, 2, 4]), label="columns")
        (root / "bad.txt").write_text("\t".join(["rgb/000001.png"] * count) + "\n")
        return "bad.txt", ["bad.txt:1", "tab-separated"]
    if how == "empty list":
        (root / "bad.txt").write_text(data.draw(st.sampled_from(["", "\n", "  \n\t\n"])))
        return "bad.txt", ["bad.txt", "empty"]
    if how == "no list":
        return "nowhere.txt", ["nowhere.txt"]
    if how == "listed path":
        name = data.draw(st.text("abcxyz/._-", min_size=1, max_size=12), label="name")
        (root / "bad.txt").write_text(f"{name}\tmasks/000001.png\tdepth/000001.png\n")
        return "bad.txt", ["bad.txt:1"]
    raise AssertionError(how)


DEFECTS = ["delete", "truncate", "garbage", "resize", "8-bit depth", "label range",
           "colour label", "columns", "empty list", "no list", "listed path"]  # fmt: skip


@settings(max_examples=30, deadline=None)
@given(
    how=st.sampled_from(DEFECTS),
    line=st.integers(0, 1),
    key=st.sampled_from(["rgb", "depth", "label"]),
    data=st.data(),
)
def test_a_damaged_nyudv2_set_is_refused_naming_the_file(nyudv2_root, how, line, key, data):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "set"
        shutil.copytree(nyudv2_root, root)
        list_file, culprits = break_data(root, how, line, key, data)
        with pytest.raises(Exception) as caught:
            dataset = NYUDv2(root, list_file, num_classes=10)
            for index in range(len(dataset)):
                dataset[index]
        assert_clear(caught.value, *culprits)


def nyudv2_config(root, *overrides):
    return load_config(None, [f"data.root={root}", "model.num_classes=10", *overrides])


@pytest.mark.parametrize(
    ("overrides", "culprits"),
    [
        (["data.root=/no/such/folder"], ["/no/such/folder"]),
        (["model.modalities=[rgb, thermal]"], ["thermal", "data.format: folder"]),
        (["data.format=folder", "model.modalities=[rgb, thermal]",
          "data.modality_settings={thermal: {chanels: 1}}"],
         ["data.modality_settings.thermal", "'chanels'"]),
        (["data.format=folder", "model.modalities=[rgb, thermal]",
          "data.modality_settings={thermal: {channels: 2}}"], ["'thermal'", "channels"]),
        (["data.train_list=missing.txt"], ["missing.txt"]),
        (["data.crop_size=[0, 8]"], ["crop_size"]),
        (["data.ignore_index=3"], ["ignore_index 3"]),
        (["data.format=pascal"], ["data.format", "pascal"]),
    ],
)  # fmt: skip
def test_a_config_that_cannot_describe_the_data_is_refused_by_key(nyudv2_root, overrides,
                                                                   culprits):  # fmt: skip
    with pytest.raises(Exception) as caught:
        segmentation.build_datasets(nyudv2_config(nyudv2_root, *overrides))
    assert_clear(caught.value, *culprits)


def test_the_model_settings_are_checked_by_key():
    with pytest.raises(Exception) as caught:
        segmentation.build_model(load_config(None, ["model.dropout=1.5"]))
    assert_clear(caught.value, "model.dropout", "1.5")


def taskonomy_config(root, *overrides):
    return load_config(None, [
        "task=translation", "model.arch=pix2pix", "model.modalities=[texture, reshading]",
        "model.target=rgb",
        "model.ngf=4", "model.ndf=4", "model.num_downs=5", "data.format=taskonomy",
        f"data.root={root}", "data.load_size=[36, 36]", "data.crop_size=[32, 32]", *overrides,
    ])  # fmt: skip


@pytest.mark.parametrize("how", ["resize", "garbage", "delete", "unknown domain", "settings"])
def test_a_damaged_translation_set_is_refused_naming_the_file(taskonomy_root, tmp_path, how):
    root = tmp_path / "set"
    shutil.copytree(taskonomy_root, root)
    image = sorted((root / "texture").iterdir())[0]
    overrides, culprits = [], [str(image)]
    if how == "resize":
        Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(image)
        culprits.append("size mismatch")
    elif how == "garbage":
        image.write_bytes(b"\x89PNG not really")
    elif how == "delete":
        image.unlink()
    elif how == "unknown domain":
        overrides, culprits = ["model.modalities=[texture, thermal]"], ["thermal"]
    else:
        overrides = ["data.modality_settings={texture: {lg: true}}"]
        culprits = ["'texture'", "'lg'"]
    with pytest.raises(Exception) as caught:
        datasets = translation.build_datasets(taskonomy_config(root, *overrides))
        for dataset in datasets.values():
            for index in range(len(dataset)):
                dataset[index]
    assert_clear(caught.value, *culprits)


def test_a_crop_the_u_net_cannot_take_is_refused_before_training(taskonomy_root, tmp_path):
    config = taskonomy_config(taskonomy_root, "data.crop_size=[30, 30]",
                              f"output_dir={tmp_path / 'run'}")  # fmt: skip
    with pytest.raises(Exception) as caught:
        TRANSLATION.trainer(config, progress=False)
    assert_clear(caught.value, "data.crop_size [30, 30]", "multiples of 32")
