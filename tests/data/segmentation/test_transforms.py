"""The paper's augmentation moves every modality and the label together, deterministically.

Pixel coordinates are encoded into the modalities (a bilinear ``coord`` = (row, col, 1) and a
nearest ``idx`` = row * W + col + 1) so that after scale, pad, flip and crop each output pixel
says where it came from; the label, drawn at random, must then equal the original label at that
place, or 255 exactly where padding is.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cenfusion.data.segmentation import (
    AugmentSettings,
    Compose,
    Pad,
    RandomCrop,
    RandomHorizontalFlip,
    RandomScale,
    Resize,
    resize_array,
    train_transform,
)

INTERPOLATION = {"coord": "bilinear", "idx": "nearest"}


def coded_sample(height: int, width: int, seed: int = 0) -> dict[str, np.ndarray]:
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    coord = np.stack([rows, cols, np.ones_like(rows)], axis=2).astype(np.float32)
    idx = (rows * width + cols + 1).astype(np.float32)[:, :, None]
    label = np.random.default_rng(seed).integers(0, 40, (height, width)).astype(np.int64)
    return {"coord": coord, "idx": idx, "label": label}


def check_alignment(out, original, crop):
    """Every key saw the same geometry: decode the source pixel of each output pixel."""
    height, width = original["label"].shape
    assert all(a.shape[:2] == crop for a in out.values())
    idx = out["idx"][:, :, 0].astype(np.int64)
    padded = idx == 0
    np.testing.assert_array_equal(out["label"] == 255, padded)  # the original has no 255
    assert set(np.unique(out["label"])) <= set(np.unique(original["label"])) | {255}
    assert set(np.unique(idx)) <= set(np.unique(original["idx"]).astype(np.int64)) | {0}
    rows, cols = np.divmod(idx[~padded] - 1, width)
    np.testing.assert_array_equal(out["label"][~padded], original["label"][rows, cols])
    coord = out["coord"][~padded]
    assert np.abs(coord[:, 0] - rows).max(initial=0) <= 0.5 + 1e-3  # bilinear vs nearest
    assert np.abs(coord[:, 1] - cols).max(initial=0) <= 0.5 + 1e-3
    np.testing.assert_allclose(coord[:, 2], 1.0, atol=1e-5)
    np.testing.assert_array_equal(out["coord"][padded], 0.0)


@given(
    height=st.integers(1, 24),
    width=st.integers(1, 24),
    crop=st.tuples(st.integers(1, 20), st.integers(1, 20)),
    low=st.floats(0.3, 2.0),
    spread=st.floats(0.0, 1.5),
    min_short_side=st.integers(0, 16),
    flip_prob=st.sampled_from([0.0, 0.5, 1.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_scale_pad_flip_crop_apply_one_geometry_to_every_key(
    height, width, crop, low, spread, min_short_side, flip_prob, seed
):
    settings = AugmentSettings((low, low + spread), min_short_side, crop, flip_prob)
    transform = train_transform(settings, INTERPOLATION)
    sample = coded_sample(height, width, seed % 1000)
    out = transform(sample, np.random.default_rng(seed))
    check_alignment(out, sample, crop)


@given(
    size=st.tuples(st.integers(1, 1000), st.integers(1, 1000)),
    scale=st.floats(0.01, 3.0),
    min_short_side=st.integers(0, 600),
)
def test_scaled_size_follows_the_factor_and_keeps_the_short_side_floor(size, scale, min_short_side):
    out = RandomScale((0.5, 2.0), min_short_side).output_size(size, scale)
    assert min(out) >= min_short_side
    effective = max(scale, min_short_side / min(size))
    for s, o in zip(size, out, strict=True):
        assert abs(o - s * effective) <= 0.5 + 1e-9 or o == min_short_side or o == 1


def test_short_side_floor_of_the_paper_raises_small_scales():
    scale = RandomScale((0.5, 2.0), min_short_side=350)
    assert scale.output_size((480, 640), 0.5) == (350, 467)
    assert scale.output_size((480, 640), 2.0) == (960, 1280)


def test_flip_mirrors_columns_of_every_key():
    sample = coded_sample(3, 5)
    out = RandomHorizontalFlip(p=1.0)(sample)
    for key in sample:
        np.testing.assert_array_equal(out[key], sample[key][:, ::-1])
    assert RandomHorizontalFlip(p=0.0)(sample) is sample


def test_pad_centres_the_image_and_fills_labels_with_ignore():
    sample = coded_sample(2, 3)
    out = Pad((5, 6), fill={"coord": -1.0}, label_fill=255)(sample)
    assert out["coord"].shape == (5, 6, 3) and out["label"].shape == (5, 6)
    np.testing.assert_array_equal(out["label"][1:3, 1:4], sample["label"])
    inside = np.zeros((5, 6), bool)
    inside[1:3, 1:4] = True
    assert (out["label"][~inside] == 255).all()
    assert (out["coord"][~inside] == -1.0).all() and (out["idx"][~inside] == 0).all()
    assert Pad((2, 3))(sample) is sample


def test_random_crop_needs_a_large_enough_image():
    with pytest.raises(ValueError, match="smaller than the crop 4x4; put a Pad"):
        RandomCrop(4)(coded_sample(3, 8))


def test_nearest_uses_half_pixel_centres_and_keeps_the_dtype():
    x = np.arange(4, dtype=np.int64)[:, None] * 10 + np.arange(4)
    np.testing.assert_array_equal(resize_array(x, (2, 2), "nearest"), [[11, 13], [31, 33]])
    up = resize_array(x, (8, 8), "nearest")
    assert up.dtype == np.int64
    np.testing.assert_array_equal(up[::2, ::2], x)
    np.testing.assert_array_equal(up[1::2, 1::2], x)


def test_bilinear_and_bicubic_sample_half_pixel_centres_of_a_ramp():
    ramp = np.tile(np.arange(16, dtype=np.float32), (16, 1))[:, :, None]
    expected = ((np.arange(32) + 0.5) / 2 - 0.5)[4:-4]
    # bilinear reproduces a ramp exactly; OpenCV's bicubic (a = -0.75) only to within 0.05 px
    for mode, tolerance in (("bilinear", 1e-5), ("bicubic", 0.05)):
        out = resize_array(ramp, (16, 32), mode)[:, 4:-4, 0]
        np.testing.assert_allclose(out, np.broadcast_to(expected, out.shape), atol=tolerance)


def test_default_interpolation_is_bicubic_and_the_label_is_always_nearest():
    scale = RandomScale((2.0, 2.0))
    assert scale.mode("rgb") == "bicubic" and scale.mode("label") == "nearest"
    scale = RandomScale((2.0, 2.0), interpolation={"label": "bilinear", "depth": "nearest"})
    assert scale.mode("label") == "nearest" and scale.mode("depth") == "nearest"


def test_resize_for_evaluation_keeps_the_label_unless_asked():
    sample = coded_sample(4, 6)
    out = Resize((8, 12), INTERPOLATION)(sample)
    assert out["coord"].shape == (8, 12, 3) and out["idx"].shape == (8, 12, 1)
    assert out["label"] is sample["label"]
    out = Resize((2, 3), INTERPOLATION, include_label=True)(sample)
    assert out["label"].shape == (2, 3)


def paper_transform():
    return train_transform(AugmentSettings((0.5, 2.0), 4, (6, 7)), INTERPOLATION)


def run(transform, draws, **kwargs):
    return [transform(coded_sample(5, 9, i), **kwargs) for i in range(draws)]


def assert_same(a, b):
    for x, y in zip(a, b, strict=True):
        assert list(x) == list(y)
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])


def test_draws_come_from_torch_global_rng_so_a_seed_replays_them():
    transform = paper_transform()
    torch.manual_seed(0)
    first = run(transform, 6)
    state = torch.get_rng_state()
    later = run(transform, 3)
    torch.manual_seed(0)
    assert_same(first, run(transform, 6))
    torch.set_rng_state(state)  # resuming from a saved state replays the rest
    assert_same(later, run(transform, 3))
    torch.manual_seed(1)
    other = run(transform, 6)
    assert any(not np.array_equal(a["idx"], b["idx"]) for a, b in zip(first, other, strict=True))


def test_an_explicit_numpy_generator_replays_and_leaves_torch_alone():
    transform = paper_transform()
    state = torch.get_rng_state()
    first = run(transform, 4, rng=np.random.default_rng(5))
    assert torch.equal(torch.get_rng_state(), state)
    assert_same(first, run(transform, 4, rng=np.random.default_rng(5)))


def test_compose_runs_in_order():
    transform = Compose([Pad(6), RandomCrop(6)])
    out = transform(coded_sample(3, 3))
    assert out["label"].shape == (6, 6)
    assert "Pad" in repr(transform) and "RandomCrop" in repr(transform)
