"""The writers produce real-format folders that a plain reader reads back exactly.

The reader below is deliberately independent of the library: PIL + NumPy and the decoding rules
of the data sets (NYUDv2 depth = uint16 / 5000 m; Taskonomy depth = uint16 / 512 m; 8-bit images
/ 255; 16-bit edges / 65535; normals 8-bit / 255 * 2 - 1). "Identical" means: every decoded value
equals the in-memory float32 tensor bit for bit, except Taskonomy depth, whose 1/512 m unit is
coarser than the in-memory 1/5000 m grid, so it is within 1/1024 m (holes stay exactly 0).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cenfusion.data.synthetic import MODALITIES, SyntheticScenes
from cenfusion.data.synthetic.writers import TASKONOMY_DOMAINS, write_nyudv2, write_taskonomy

SIZE = (24, 32)
SEED = 11
N_TRAIN, N_VAL = 3, 2


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image)


def _unit(code: np.ndarray, bits: int) -> np.ndarray:
    return code.astype(np.float32) / np.float32(2**bits - 1)


def _chw(a: np.ndarray) -> np.ndarray:
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _read_nyudv2(root: Path, split: str) -> list[dict[str, np.ndarray]]:
    samples = []
    for line in (root / f"{split}.txt").read_text().splitlines():
        rgb, mask, depth = line.split("\t")
        samples.append(
            {
                "rgb": _chw(_unit(_read(root / rgb), 8)),
                "depth": _chw(_read(root / depth).astype(np.float32) / np.float32(5000)),
                "label": _read(root / mask).astype(np.int64),
            }
        )
    return samples


def _read_taskonomy(root: Path, split: str, domains: list[str]) -> list[dict[str, np.ndarray]]:
    samples = []
    for line in (root / f"{split}.txt").read_text().splitlines():
        sample = {}
        for domain in domains:
            code = _read(root / line.replace("{domain}", domain))
            if domain == "depth_zbuffer":
                sample[domain] = _chw(code.astype(np.float32) / np.float32(512))
            elif domain == "segment_semantic":
                sample[domain] = code.astype(np.int64)
            elif domain == "normal":
                sample[domain] = _chw(_unit(code, 8) * np.float32(2) - np.float32(1))
            elif code.dtype == np.uint16:
                sample[domain] = _chw(_unit(code, 16))
            else:
                sample[domain] = _chw(_unit(code, 8))
        samples.append(sample)
    return samples


def test_nyudv2_folder_reads_back_identical_to_the_in_memory_scenes(tmp_path: Path) -> None:
    root = write_nyudv2(tmp_path / "nyu", N_TRAIN, N_VAL, seed=SEED, size=SIZE, progress=False)
    assert (root / "train.txt").read_text().splitlines()[0] == (
        "rgb/000001.png\tmasks/000001.png\tdepth/000001.png"
    )
    with Image.open(root / "depth" / "000001.png") as image:
        assert image.mode.startswith("I;16")
    memory = SyntheticScenes(N_TRAIN + N_VAL, ("rgb", "depth"), seed=SEED, size=SIZE)
    files = _read_nyudv2(root, "train") + _read_nyudv2(root, "val")
    assert len(files) == N_TRAIN + N_VAL
    for i, sample in enumerate(files):
        item = memory[i]
        np.testing.assert_array_equal(sample["rgb"], item["rgb"].numpy())
        np.testing.assert_array_equal(sample["depth"], item["depth"].numpy())
        np.testing.assert_array_equal(sample["label"], item["label"].numpy())
    meta = json.loads((root / "meta.json").read_text())
    assert meta["seed"] == SEED and meta["size"] == list(SIZE) and meta["depth_scale"] == 5000


def test_taskonomy_folder_reads_back_identical_to_the_in_memory_scenes(tmp_path: Path) -> None:
    root = write_taskonomy(tmp_path / "tk", N_TRAIN, N_VAL, seed=SEED, size=SIZE, progress=False)
    domains = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert domains == sorted(TASKONOMY_DOMAINS)
    assert (root / "val.txt").read_text().splitlines() == [
        "{domain}/point_3_view_0_domain_{domain}.png",
        "{domain}/point_4_view_0_domain_{domain}.png",
    ]
    assert (root / "rgb" / "point_0_view_0_domain_rgb.png").is_file()
    memory = SyntheticScenes(N_TRAIN + N_VAL, MODALITIES, seed=SEED, size=SIZE)
    files = _read_taskonomy(root, "train", domains) + _read_taskonomy(root, "val", domains)
    for i, sample in enumerate(files):
        item = {k: v.numpy() for k, v in memory[i].items()}
        for domain, modality in TASKONOMY_DOMAINS.items():
            if modality == "depth":
                np.testing.assert_allclose(sample[domain], item["depth"], rtol=0, atol=1 / 1024)
                np.testing.assert_array_equal(sample[domain] == 0, item["depth"] == 0)
            else:
                np.testing.assert_array_equal(sample[domain], item[modality], err_msg=domain)


def test_void_holes_reach_the_written_masks(tmp_path: Path) -> None:
    root = write_nyudv2(tmp_path / "nyu", 2, 0, seed=SEED, size=(48, 64), void_holes=True)
    memory = SyntheticScenes(2, ("depth",), seed=SEED, size=(48, 64), void_holes=True)
    for i, sample in enumerate(_read_nyudv2(root, "train")):
        assert np.all(sample["label"][sample["depth"][0] == 0] == 255)
        assert torch.equal(torch.from_numpy(sample["label"]), memory[i]["label"])


def test_writers_refuse_a_non_empty_folder_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    for write in (write_nyudv2, write_taskonomy):
        with pytest.raises(FileExistsError, match="not empty; pass --force"):
            write(out, 1, 0, size=SIZE, progress=False)
    write_nyudv2(out, 1, 1, size=SIZE, force=True, progress=False)
    assert (out / "keep.txt").read_text() == "mine"
    assert (out / "val.txt").read_text().startswith("rgb/000002.png")


def test_writers_reject_bad_counts_and_domains(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n-train"):
        write_nyudv2(tmp_path / "a", 0, 0, size=SIZE, progress=False)
    with pytest.raises(ValueError, match="valid domains are rgb"):
        write_taskonomy(tmp_path / "b", 1, 0, size=SIZE, domains=("rgb", "curvature"))
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        write_nyudv2(file, 1, 0, size=SIZE, progress=False)


def test_a_test_split_follows_the_validation_scenes_and_changes_neither(tmp_path):
    from cenfusion.data.synthetic.writers import write_nyudv2

    plain = write_nyudv2(tmp_path / "a", n_train=2, n_val=1, size=(16, 20), progress=False)
    held = write_nyudv2(tmp_path / "b", n_train=2, n_val=1, n_test=2, size=(16, 20),
                        progress=False)  # fmt: skip
    for split in ("train.txt", "val.txt"):
        assert (plain / split).read_text() == (held / split).read_text()
    assert not (plain / "test.txt").exists()
    assert (held / "test.txt").read_text().splitlines()[0].startswith("rgb/000004.png")
    assert (held / "rgb" / "000004.png").read_bytes() != (held / "rgb" / "000003.png").read_bytes()
