"""Translation data: the Taskonomy layout (as `cenfusion synth taskonomy` writes it), the folder
layout, the per-domain preprocessing of the public code and the paper's augmentation."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from cenfusion.data.synthetic import render_arrays
from cenfusion.data.synthetic.writers import write_taskonomy
from cenfusion.data.translation import (
    Domain,
    FolderTranslation,
    TaskonomyTranslation,
    TranslationAugment,
    taskonomy_domain,
)

SIZE = (32, 48)
DOMAINS = ("rgb", "reshading", "texture", "depth_zbuffer", "edge_texture", "normal")


@pytest.fixture(scope="module")
def taskonomy(tmp_path_factory):
    root = tmp_path_factory.mktemp("taskonomy")
    write_taskonomy(root, n_train=3, n_val=1, seed=5, size=SIZE, domains=DOMAINS, progress=False)
    return root


def stored(root, domain, point):
    return np.asarray(Image.open(root / domain / f"point_{point}_view_0_domain_{domain}.png"))


def test_the_synthetic_taskonomy_output_is_read_unchanged(taskonomy):
    data = TaskonomyTranslation(taskonomy, "train.txt", modalities=["texture", "reshading"])
    assert len(data) == 3 and data.modalities == ("texture", "reshading") and data.target == "rgb"
    sample = data[1]
    assert list(sample) == ["texture", "reshading", "target"]
    assert all(v.shape == (3, *SIZE) and v.dtype == torch.float32 for v in sample.values())
    arrays = render_arrays(5, 1, SIZE, ("rgb", "texture", "reshading"))
    expected_rgb = torch.from_numpy(arrays["rgb"]).permute(2, 0, 1) * 2 - 1
    torch.testing.assert_close(sample["target"], expected_rgb, rtol=0, atol=1e-6)
    # grayscale shading is tiled to three equal channels
    expected_shade = torch.from_numpy(arrays["reshading"]) * 2 - 1
    for channel in sample["reshading"]:
        torch.testing.assert_close(channel, expected_shade.reshape(SIZE), rtol=0, atol=1e-6)
    assert data.sample_id(1) == "point_1_view_0"


def test_depth_is_log_scaled_and_16_bit_edges_use_the_public_maxima(taskonomy):
    data = TaskonomyTranslation(taskonomy, "val.txt", modalities=["depth_zbuffer", "edge_texture"])
    sample = data.read(0)
    depth = stored(taskonomy, "depth_zbuffer", 3).astype(np.float64)
    expected = np.clip(np.log1p(depth) / 11.1, 0, 1) * 2 - 1
    np.testing.assert_allclose(sample["depth_zbuffer"][0].numpy(), expected, atol=1e-6)
    edges = stored(taskonomy, "edge_texture", 3).astype(np.float64)
    np.testing.assert_allclose(
        sample["edge_texture"][1].numpy(), np.clip(edges / 11355, 0, 1) * 2 - 1, atol=1e-6
    )
    # every constant is a setting: the synthetic edges use the full 16-bit range
    full = TaskonomyTranslation(
        taskonomy,
        "val.txt",
        modalities=["edge_texture", "normal"],
        domain_settings={"edge_texture": {"max_value": 65535}},
    ).read(0)
    np.testing.assert_allclose(full["edge_texture"][2].numpy(), edges / 65535 * 2 - 1, atol=1e-6)
    with pytest.raises(ValueError, match="unknown setting 'scale'"):
        TaskonomyTranslation(
            taskonomy, "val.txt", modalities=["normal"], domain_settings={"normal": {"scale": 2}}
        )


def test_domain_indices_are_the_public_codes():
    assert [taskonomy_domain(i) for i in (2, 7, 0)] == ["reshading", "edge_texture", "rgb"]
    assert taskonomy_domain("3") == "depth_euclidean"
    with pytest.raises(ValueError, match="expected 0..9"):
        taskonomy_domain(10)


def test_the_public_split_file_in_the_working_directory_is_found(taskonomy, tmp_path, monkeypatch):
    (tmp_path / "train_domain.txt").write_text(
        "{domain}/point_2_view_0_domain_{domain}.png\n{domain}/point_0_view_0_domain_{domain}.png\n"
    )
    monkeypatch.chdir(tmp_path)
    data = TaskonomyTranslation(taskonomy, "train_domain.txt", modalities=["normal"])
    assert [data.sample_id(i) for i in range(2)] == ["point_2_view_0", "point_0_view_0"]


def test_bad_files_are_reported_with_the_split_file_line(taskonomy, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("{domain}/point_0_view_0_domain_{domain}.png\nrgb/point_1.png\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: expected a path with a '\{domain\}'"):
        TaskonomyTranslation(taskonomy, bad, modalities=["normal"])
    bad.write_text("{domain}/point_9_view_0_domain_{domain}.png\n")
    with pytest.raises(FileNotFoundError, match=r"point_9_view_0_domain_normal.png.*bad.txt:1"):
        TaskonomyTranslation(taskonomy, bad, modalities=["normal"])
    with pytest.raises(ValueError, match="target 'rgb' is also an input"):
        TaskonomyTranslation(taskonomy, "val.txt", modalities=["rgb", "normal"])


def write_folder(root, sizes=None):
    rng = np.random.default_rng(0)
    sizes = sizes or {}
    for folder in ("shade", "edges", "photo"):
        (root / folder).mkdir(parents=True)
        for sample in ("a", "b"):
            size = sizes.get((folder, sample), (16, 16))
            if folder == "edges":
                array = rng.integers(0, 65535, size, dtype=np.uint16)
            elif folder == "shade":
                array = rng.integers(0, 255, size, dtype=np.uint8)
            else:
                array = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
            Image.fromarray(array).save(root / folder / f"{sample}.png")
    (root / "train.txt").write_text("a\nb\n")


def test_the_folder_layout_maps_8_and_16_bit_files_to_minus_one_one(tmp_path):
    write_folder(tmp_path)
    data = FolderTranslation(
        tmp_path, "train.txt", modalities=["shade", Domain("edges", log=True)], target="photo"
    )
    sample = data.read(1)
    edges = np.asarray(Image.open(tmp_path / "edges" / "b.png")).astype(np.float64)
    expected = np.log1p(edges) / math.log1p(65535) * 2 - 1
    np.testing.assert_allclose(sample["edges"][0].numpy(), expected, atol=1e-6)
    photo = np.asarray(Image.open(tmp_path / "photo" / "b.png")).astype(np.float64)
    np.testing.assert_allclose(
        sample["target"].permute(1, 2, 0).numpy(), photo / 255 * 2 - 1, atol=1e-6
    )


def test_a_size_mismatch_names_both_files(tmp_path):
    write_folder(tmp_path, sizes={("photo", "b"): (16, 20)})
    data = FolderTranslation(tmp_path, "train.txt", modalities=["shade"], target="photo")
    with pytest.raises(ValueError, match=r"shade/b.png is 16x16.*photo/b.png is 16x20"):
        data[1]


def test_the_augmentation_moves_every_image_together_and_is_seeded():
    base = torch.arange(3 * 8 * 10, dtype=torch.float32).reshape(3, 8, 10)
    sample = {"a": base, "b": base.clone(), "target": base.clone()}
    augment = TranslationAugment(load_size=(12, 14), crop_size=(8, 8), flip_prob=0.5)
    torch.manual_seed(3)
    first = [augment(sample) for _ in range(6)]
    torch.manual_seed(3)
    again = [augment(sample) for _ in range(6)]
    for out, repeat in zip(first, again, strict=True):
        assert all(v.shape == (3, 8, 8) for v in out.values())
        assert torch.equal(out["a"], out["b"]) and torch.equal(out["a"], out["target"])
        assert torch.equal(out["a"], repeat["a"])
    assert len({tuple(o["a"][0, 0].tolist()) for o in first}) > 1  # crops and flips vary
    with pytest.raises(ValueError, match="must fit inside load_size"):
        TranslationAugment(load_size=(8, 8), crop_size=(16, 16))
