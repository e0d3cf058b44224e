"""The on-disk loaders: values read back exactly, list files parsed, every error names its file."""

from __future__ import annotations

import dataclasses
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from cenfusion.data.segmentation import (
    IMAGENET_RGB,
    NYUDV2_DEPTH,
    SUNRGBD,
    AugmentSettings,
    FolderSegmentation,
    ListFileSegmentation,
    Modality,
    NYUDv2,
)
from tests.data.segmentation.helpers import expected_rgb, write_nyudv2, write_png


@pytest.fixture
def nyud(tmp_path):
    root = tmp_path / "nyud"
    return root, write_nyudv2(root)


# --- sample form and exact values -------------------------------------------------------------


def test_nyudv2_returns_rgb_imagenet_normalised_depth_in_metres_and_labels(nyud):
    root, stored = nyud
    ds = NYUDv2(root, "train.txt")
    assert len(ds) == 3
    assert ds.modalities == ("rgb", "depth")
    assert (ds.num_classes, ds.ignore_index) == (40, 255)
    for i, codes in enumerate(stored):
        item = ds[i]
        assert list(item) == ["rgb", "depth", "label"]
        assert item["rgb"].dtype == torch.float32 and item["rgb"].shape == (3, 6, 8)
        assert item["depth"].dtype == torch.float32 and item["depth"].shape == (1, 6, 8)
        assert item["label"].dtype == torch.int64 and item["label"].shape == (6, 8)
        np.testing.assert_allclose(item["rgb"].numpy(), expected_rgb(codes["rgb"]), atol=1e-6)
        depth = (codes["depth"] / 5000.0).astype(np.float32)
        np.testing.assert_array_equal(item["depth"][0].numpy(), depth)
        np.testing.assert_array_equal(item["label"].numpy(), codes["label"])
        assert item["label"][0, 0] == 255


def test_files_lists_each_modality_then_the_label(nyud):
    root, _ = nyud
    ds = NYUDv2(root, "train.txt")
    files = ds.files(1)
    assert list(files) == ["rgb", "depth", "label"]
    assert files["rgb"] == root / "rgb" / "000002.png"
    assert files["depth"] == root / "depth" / "000002.png"
    assert files["label"] == root / "masks" / "000002.png"
    assert ds.sample_id(1) == "000002"
    assert ds.files(-1)["rgb"].name == "000003.png"
    with pytest.raises(IndexError):
        ds.files(3)


def test_modalities_come_in_the_configured_order_and_can_be_one(nyud):
    root, stored = nyud
    ds = NYUDv2(root, "train.txt", modalities=("depth", "rgb"))
    assert list(ds[0]) == ["depth", "rgb", "label"]
    only_depth = NYUDv2(root, "train.txt", modalities=["depth"])
    assert list(only_depth[0]) == ["depth", "label"]


def test_depth_scale_and_a_custom_modality_are_settings(nyud):
    root, stored = nyud
    ds = NYUDv2(root, "train.txt", depth_scale=1 / 1000)
    expected = (stored[0]["depth"] / 1000.0).astype(np.float32)
    np.testing.assert_array_equal(ds[0]["depth"][0].numpy(), expected)
    plain_rgb = Modality("rgb", channels=3, scale=1.0)
    ds = NYUDv2(root, "train.txt", modalities=[plain_rgb])
    np.testing.assert_array_equal(ds[0]["rgb"].numpy(), stored[0]["rgb"].transpose(2, 0, 1))


def test_num_classes_is_a_setting(tmp_path):
    stored = write_nyudv2(tmp_path, n=1, num_classes=10)
    ds = NYUDv2(tmp_path, "train.txt", num_classes=10)
    np.testing.assert_array_equal(ds[0]["label"].numpy(), stored[0]["label"])


def test_a_dataloader_batches_augmented_samples(nyud):
    root, _ = nyud
    aug = AugmentSettings(scale_range=(0.75, 1.25), min_short_side=0, crop_size=(4, 6))
    ds = NYUDv2(root, "train.txt", augment=aug)
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch["rgb"].shape == (3, 3, 4, 6)
    assert batch["depth"].shape == (3, 1, 4, 6)
    assert batch["label"].shape == (3, 4, 6)


def test_augmentation_is_deterministic_under_torch_seed(nyud):
    root, _ = nyud
    aug = AugmentSettings(scale_range=(0.5, 2.0), min_short_side=0, crop_size=(5, 5))
    ds = NYUDv2(root, "train.txt", augment=aug)
    torch.manual_seed(3)
    first = [ds[i] for i in range(3)]
    torch.manual_seed(3)
    second = [ds[i] for i in range(3)]
    for a, b in zip(first, second, strict=True):
        for key in a:
            assert torch.equal(a[key], b[key])


def test_eval_resize_resizes_inputs_and_keeps_the_label(nyud):
    root, stored = nyud
    ds = NYUDv2(root, "train.txt", resize=(12, 16))
    item = ds[0]
    assert item["rgb"].shape == (3, 12, 16) and item["depth"].shape == (1, 12, 16)
    np.testing.assert_array_equal(item["label"].numpy(), stored[0]["label"])
    # nearest x2 upscaling repeats each depth pixel twice in both directions
    depth = (stored[0]["depth"] / 5000.0).astype(np.float32)
    np.testing.assert_array_equal(item["depth"][0, ::2, ::2].numpy(), depth)


# --- list files ---------------------------------------------------------------------------------


def test_list_file_is_found_in_root_then_cwd_or_absolute(nyud, tmp_path, monkeypatch):
    root, _ = nyud
    elsewhere = tmp_path / "lists"
    elsewhere.mkdir()
    (elsewhere / "mine.txt").write_text((root / "train.txt").read_text())
    assert len(NYUDv2(root, elsewhere / "mine.txt")) == 3
    monkeypatch.chdir(elsewhere)
    assert len(NYUDv2(root, "mine.txt")) == 3
    assert NYUDv2(root, "train.txt").list_file == root / "train.txt"


def test_list_file_skips_blank_lines_and_accepts_crlf(nyud):
    root, _ = nyud
    lines = (root / "train.txt").read_text().splitlines()
    (root / "crlf.txt").write_bytes(("\r\n".join([lines[0], "", lines[2], "  "]) + "\r\n").encode())
    ds = NYUDv2(root, "crlf.txt")
    assert len(ds) == 2
    assert ds.files(1)["rgb"].name == "000003.png"
    assert ds.files(1)["label"] == root / "masks" / "000003.png"


def test_columns_are_a_setting(nyud):
    root, stored = nyud
    lines = [line.split("\t") for line in (root / "train.txt").read_text().splitlines()]
    (root / "reordered.txt").write_text("".join(f"{d}\t{r}\t{m}\n" for r, m, d in lines))
    ds = NYUDv2(root, "reordered.txt", columns=("depth", "rgb", "label"))
    np.testing.assert_array_equal(ds[2]["label"].numpy(), stored[2]["label"])


def test_an_empty_list_file_is_refused_naming_it(nyud):
    root, _ = nyud
    (root / "empty.txt").write_text("\n\n")
    with pytest.raises(ValueError, match=r"empty\.txt is empty"):
        NYUDv2(root, "empty.txt")


def test_a_line_with_the_wrong_column_count_names_the_list_file_and_line(nyud):
    root, _ = nyud
    lines = (root / "train.txt").read_text().splitlines()
    lines[1] = "rgb/000002.png\tmasks/000002.png"
    (root / "bad.txt").write_text("\n".join(lines))
    with pytest.raises(ValueError, match=r"bad\.txt:2: expected 3 tab-separated column"):
        NYUDv2(root, "bad.txt")
    lines[1] = "rgb/000002.png masks/000002.png depth/000002.png"
    (root / "spaces.txt").write_text("\n".join(lines))
    with pytest.raises(ValueError, match=r"spaces\.txt:2: .*tabs, not spaces"):
        NYUDv2(root, "spaces.txt")


def test_a_missing_root_or_list_file_is_named(nyud, tmp_path):
    root, _ = nyud
    with pytest.raises(FileNotFoundError, match=r"data root not found: .*nowhere"):
        NYUDv2(tmp_path / "nowhere", "train.txt")
    with pytest.raises(FileNotFoundError, match=r"list file not found: missing\.txt"):
        NYUDv2(root, "missing.txt")


# --- image errors name the file and the list-file line -----------------------------------------


def test_a_missing_image_is_named_with_its_list_line(nyud):
    root, _ = nyud
    os.remove(root / "depth" / "000002.png")
    with pytest.raises(FileNotFoundError, match=r"depth/000002\.png \(listed at .*train\.txt:2\)"):
        NYUDv2(root, "train.txt")
    ds = NYUDv2(root, "train.txt", check_files=False)
    ds[0]
    with pytest.raises(FileNotFoundError, match=r"depth/000002\.png \(listed at .*train\.txt:2\)"):
        ds[1]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_corrupt_image_is_named_with_its_list_line(nyud, damage):
    root, _ = nyud
    path = root / "rgb" / "000003.png"
    data = path.read_bytes()
    new = {"garbage": b"not a png at all", "truncated": data[: len(data) // 2], "empty": b""}
    path.write_bytes(new[damage])
    ds = NYUDv2(root, "train.txt")
    with pytest.raises(ValueError, match=r"cannot read image .*rgb/000003\.png .*train\.txt:3"):
        ds[2]


def test_a_size_mismatch_names_both_files_and_sizes(nyud):
    root, _ = nyud
    write_png(root / "depth" / "000001.png", np.zeros((6, 9), np.uint16))
    with pytest.raises(ValueError, match=r"rgb/000001\.png is 6x8 .*depth/000001\.png is 6x9"):
        NYUDv2(root, "train.txt")[0]
    write_png(root / "masks" / "000002.png", np.zeros((5, 8), np.uint8))
    with pytest.raises(ValueError, match=r"rgb/000002\.png is 6x8 .*masks/000002\.png is 5x8"):
        NYUDv2(root, "train.txt")[1]


def test_a_label_out_of_range_names_the_file_the_values_and_num_classes(nyud):
    root, _ = nyud
    label = np.zeros((6, 8), np.uint8)
    label[1, 1], label[2, 2], label[3, 3] = 40, 77, 255
    write_png(root / "masks" / "000001.png", label)
    message = r"masks/000001\.png .* value\(s\) 40, 77 .*num_classes=40"
    with pytest.raises(ValueError, match=message):
        NYUDv2(root, "train.txt")[0]
    assert NYUDv2(root, "train.txt", num_classes=78)[0]["label"][3, 3] == 255


def test_a_colour_coded_label_is_refused(nyud):
    root, _ = nyud
    write_png(root / "masks" / "000001.png", np.zeros((6, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r"masks/000001\.png .*mode RGB.*single-channel"):
        NYUDv2(root, "train.txt")[0]


def test_an_8bit_depth_png_is_refused_unless_allowed(nyud):
    root, _ = nyud
    code = np.arange(48, dtype=np.uint8).reshape(6, 8)
    write_png(root / "depth" / "000001.png", code)
    with pytest.raises(ValueError, match=r"depth/000001\.png .*8-bit.*256x too small"):
        NYUDv2(root, "train.txt")[0]
    ds = NYUDv2(root, "train.txt", allow_8bit_depth=True, depth_scale=0.1)
    np.testing.assert_allclose(ds[0]["depth"][0].numpy(), code * 0.1, rtol=1e-6)


def test_a_colour_depth_image_is_refused(nyud):
    root, _ = nyud
    rgb = np.random.default_rng(0).integers(0, 256, (6, 8, 3)).astype(np.uint8)
    write_png(root / "depth" / "000001.png", rgb)
    with pytest.raises(ValueError, match=r"depth/000001\.png"):
        NYUDv2(root, "train.txt", allow_8bit_depth=True)[0]


# --- SUN RGB-D and the generic folder layout --------------------------------------------------


def test_sunrgbd_has_37_classes_and_stretches_depth_like_the_public_code(tmp_path):
    stored = write_nyudv2(tmp_path, n=2, num_classes=37)
    ds = SUNRGBD(tmp_path, "train.txt")
    assert ds.num_classes == 37
    depth = stored[0]["depth"].astype(np.float64)
    stretched = (depth - depth.min()) / (depth.max() - depth.min()) * 255
    np.testing.assert_allclose(ds[0]["depth"][0].numpy(), stretched, rtol=1e-6, atol=1e-4)
    fixed = SUNRGBD(tmp_path, "train.txt", depth_scale=1e-4)
    np.testing.assert_allclose(fixed[0]["depth"][0].numpy(), depth * 1e-4, rtol=1e-6)
    label = stored[1]["label"].copy()
    label[2, 2] = 37
    write_png(tmp_path / "masks" / "000002.png", label)
    with pytest.raises(ValueError, match=r"value\(s\) 37 .*num_classes=37"):
        ds[1]


def write_rgbt(root, ids, size=(5, 7)):
    """RGB-thermal in the folder layout: rgb/<id>.png, thermal/<id>.png, gt/<id>.png."""
    rng = np.random.default_rng(1)
    stored = {}
    for sample_id in ids:
        rgb = rng.integers(0, 256, (*size, 3)).astype(np.uint8)
        thermal = rng.integers(0, 256, size).astype(np.uint8)
        label = rng.integers(0, 9, size).astype(np.uint8)
        write_png(root / "rgb" / f"{sample_id}.png", rgb)
        write_png(root / "ir" / f"{sample_id}.png", thermal)
        write_png(root / "gt" / f"{sample_id}.png", label)
        stored[sample_id] = (rgb, thermal, label)
    (root / "train.txt").write_text("".join(f"{i}\n" for i in ids))
    return stored


THERMAL = Modality("thermal", channels=1, scale=1 / 255, mean=(0.5,), std=(0.25,), folder="ir")


def test_folder_layout_reads_rgb_thermal_with_its_own_settings(tmp_path):
    stored = write_rgbt(tmp_path, ["a01", "a02"])
    ds = FolderSegmentation(
        tmp_path, "train.txt", modalities=[IMAGENET_RGB, THERMAL], num_classes=9, label_folder="gt"
    )
    assert ds.modalities == ("rgb", "thermal") and len(ds) == 2
    rgb, thermal, label = stored["a02"]
    item = ds[1]
    np.testing.assert_allclose(item["rgb"].numpy(), expected_rgb(rgb), atol=1e-6)
    expected = ((thermal / 255 - 0.5) / 0.25).astype(np.float32)
    np.testing.assert_allclose(item["thermal"][0].numpy(), expected, atol=1e-6)
    np.testing.assert_array_equal(item["label"].numpy(), label)
    assert ds.files(1) == {
        "rgb": tmp_path / "rgb" / "a02.png",
        "thermal": tmp_path / "ir" / "a02.png",
        "label": tmp_path / "gt" / "a02.png",
    }
    assert ds.sample_id(1) == "a02"


def test_folder_layout_converts_grey_saved_as_rgb_and_tiles_grey_into_three_channels(tmp_path):
    stored = write_rgbt(tmp_path, ["x"])
    rgb, thermal, _ = stored["x"]
    write_png(tmp_path / "ir" / "x.png", np.repeat(thermal[:, :, None], 3, axis=2))
    write_png(tmp_path / "rgb" / "x.png", thermal)
    plain = Modality("thermal", channels=1, scale=1.0, folder="ir")
    plain_rgb = Modality("rgb", channels=3, scale=1.0)
    ds = FolderSegmentation(
        tmp_path, "train.txt", modalities=[plain_rgb, plain], num_classes=9, label_folder="gt"
    )
    item = ds[0]
    np.testing.assert_array_equal(item["thermal"][0].numpy(), thermal)
    np.testing.assert_array_equal(item["rgb"].numpy(), np.stack([thermal] * 3))


def test_folder_layout_errors_name_the_file_and_line(tmp_path):
    write_rgbt(tmp_path, ["a", "b"])
    common = dict(modalities=[IMAGENET_RGB, THERMAL], num_classes=9, label_folder="gt")
    with pytest.raises(FileNotFoundError, match=r"label/a\.png \(listed at .*train\.txt:1\)"):
        FolderSegmentation(tmp_path, "train.txt", **{**common, "label_folder": "label"})
    (tmp_path / "two.txt").write_text("a\nb\tc\n")
    with pytest.raises(ValueError, match=r"two\.txt:2: expected 1 tab-separated column"):
        FolderSegmentation(tmp_path, "two.txt", **common)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match=r"empty\.txt is empty"):
        FolderSegmentation(tmp_path, "empty.txt", **common)
    write_png(tmp_path / "ir" / "b.png", (np.zeros((5, 7, 3)) + [1, 2, 3]).astype(np.uint8))
    with pytest.raises(ValueError, match=r"thermal: .*ir/b\.png .*train\.txt:2.*single-channel"):
        FolderSegmentation(tmp_path, "train.txt", **common)[1]


def test_list_layout_accepts_any_modalities_and_extra_columns(nyud):
    root, stored = nyud
    ds = ListFileSegmentation(
        root,
        "train.txt",
        modalities=[dataclasses.replace(NYUDV2_DEPTH, name="d")],
        columns=("rgb", "label", "d"),
        num_classes=40,
    )
    assert ds.modalities == ("d",)
    expected = (stored[0]["depth"] / 5000).astype(np.float32)
    np.testing.assert_array_equal(ds[0]["d"][0].numpy(), expected)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(channels=2), "channels must be 1 or 3"),
        (dict(mean=(0.5,)), "both mean and std"),
        (dict(mean=(0.5, 0.5), std=(1.0, 1.0)), "needs 1 or 3 values"),
        (dict(interpolation="area"), "interpolation must be one of"),
        (dict(norm="zscore"), "norm must be one of"),
        (dict(name="label"), "other than 'label'"),
    ],
)
def test_modality_settings_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Modality(**{"name": "x", **kwargs})


def test_dataset_settings_are_validated(nyud):
    root, _ = nyud
    with pytest.raises(ValueError, match="unknown modality 'hha'"):
        NYUDv2(root, "train.txt", modalities=("rgb", "hha"))
    with pytest.raises(ValueError, match="ignore_index 255 is a valid class"):
        NYUDv2(root, "train.txt", num_classes=300)
    with pytest.raises(ValueError, match="exactly one column named 'label'"):
        NYUDv2(root, "train.txt", columns=("rgb", "depth", "x"))
    with pytest.raises(ValueError, match="not both"):
        NYUDv2(root, "train.txt", augment=AugmentSettings(), transform=lambda s: s)


def test_a_palette_mask_is_read_as_its_class_indices(nyud):
    root, _ = nyud
    label = np.arange(48, dtype=np.uint8).reshape(6, 8) % 40
    image = Image.fromarray(label, mode="L").convert("P")
    image.putpalette(np.random.default_rng(0).integers(0, 256, 768).astype(np.uint8).tobytes())
    image.save(root / "masks" / "000001.png")
    np.testing.assert_array_equal(NYUDv2(root, "train.txt")[0]["label"].numpy(), label)


def test_a_dataset_survives_pickling_for_dataloader_workers(nyud):
    root, _ = nyud
    aug = AugmentSettings(crop_size=(4, 4), min_short_side=0)
    ds = pickle.loads(pickle.dumps(NYUDv2(root, "train.txt", augment=aug)))
    torch.manual_seed(0)
    assert ds[0]["rgb"].shape == (3, 4, 4)
