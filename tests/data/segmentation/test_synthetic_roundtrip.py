"""``cenfusion synth nyudv2`` output is read unchanged by the NYUDv2 loader, value for value."""

from __future__ import annotations

import numpy as np
import torch

from cenfusion.data.segmentation import NYUDv2
from cenfusion.data.synthetic import NUM_CLASSES, SyntheticScenes
from cenfusion.data.synthetic.writers import write_nyudv2
from tests.data.segmentation.helpers import expected_rgb


def test_synthetic_nyudv2_folder_reads_back_as_the_in_memory_scenes(tmp_path):
    size = (24, 32)
    root = write_nyudv2(
        tmp_path / "synth", 2, 1, seed=3, size=size, void_holes=True, progress=False
    )
    memory = SyntheticScenes(3, ("rgb", "depth"), seed=3, size=size, void_holes=True)
    train = NYUDv2(root, "train.txt", num_classes=NUM_CLASSES)
    val = NYUDv2(root, "val.txt", num_classes=NUM_CLASSES)
    assert (len(train), len(val)) == (2, 1)
    for i, item in enumerate([train[0], train[1], val[0]]):
        expected = memory[i]
        assert torch.equal(item["depth"], expected["depth"])
        assert torch.equal(item["label"], expected["label"])
        code = np.round(expected["rgb"].numpy().transpose(1, 2, 0) * 255).astype(np.uint8)
        np.testing.assert_allclose(item["rgb"].numpy(), expected_rgb(code), atol=1e-6)


def test_every_segmentation_loader_reads_the_synthetic_files(tmp_path):
    """SUN RGB-D (same list style) and the folder-per-modality layout read the same files."""
    import dataclasses

    from cenfusion.data.segmentation import IMAGENET_RGB, NYUDV2_DEPTH, SUNRGBD, FolderSegmentation

    root = write_nyudv2(tmp_path / "synth", 3, 1, seed=5, size=(24, 32), progress=False)
    reference = NYUDv2(root, "train.txt", num_classes=NUM_CLASSES)
    sun = SUNRGBD(root, "train.txt", num_classes=NUM_CLASSES, depth_scale=1 / 5000)
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(f"{i:06d}" for i in range(1, 4)) + "\n")
    folder = FolderSegmentation(
        root,
        ids,
        num_classes=NUM_CLASSES,
        label_folder="masks",
        modalities=[IMAGENET_RGB, dataclasses.replace(NYUDV2_DEPTH)],
    )
    for i in range(3):
        expected = reference[i]
        for other in (sun[i], folder[i]):
            assert other.keys() == expected.keys()
            for key in expected:
                assert torch.equal(other[key], expected[key]), key
