"""The procedural scenes: determinism, shapes, ranges and physical consistency of modalities."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cenfusion.data.synthetic import (
    CLASS_NAMES,
    DEPTH_BLIND_PAIRS,
    IGNORE_INDEX,
    MODALITIES,
    NUM_CLASSES,
    RGB_BLIND_PAIRS,
    SyntheticScenes,
    render_arrays,
    render_codes,
    scene_at,
)
from cenfusion.data.synthetic.formats import MAX_DEPTH, decode, encode
from cenfusion.data.synthetic.render import camera_rays, occlusion_edges

SMALL = (36, 48)


def test_scene_is_a_pure_function_of_seed_and_index() -> None:
    a = render_codes(3, 7, SMALL)
    b = render_codes(3, 7, SMALL)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    other = render_codes(3, 8, SMALL)
    assert not np.array_equal(a["rgb"], other["rgb"])
    assert not np.array_equal(render_codes(4, 7, SMALL)["rgb"], a["rgb"])


def test_dataset_items_do_not_depend_on_access_order() -> None:
    data = SyntheticScenes(6, ("rgb", "depth"), seed=5, size=SMALL)
    forward = [data[i]["rgb"] for i in range(6)]
    backward = [data[i]["rgb"] for i in reversed(range(6))][::-1]
    for f, b in zip(forward, backward, strict=True):
        assert torch.equal(f, b)
    assert torch.equal(data[-1]["rgb"], data[5]["rgb"])


def test_same_scene_at_every_resolution() -> None:
    """Sampling never sees the size: the same room and objects render at any resolution."""
    small, large = render_arrays(0, 2, (30, 40)), render_arrays(0, 2, (120, 160))
    classes_small, classes_large = set(np.unique(small["label"])), set(np.unique(large["label"]))
    assert classes_small <= classes_large
    # The centre pixel sees the same surface at both sizes (odd multiples keep the centre ray).
    a, b = render_arrays(0, 2, (31, 41)), render_arrays(0, 2, (93, 123))
    assert a["label"][15, 20] == b["label"][46, 61]
    np.testing.assert_allclose(a["normal"][15, 20], b["normal"][46, 61], atol=0.01)


def test_items_have_the_documented_shapes_dtypes_and_ranges() -> None:
    item = SyntheticScenes(2, MODALITIES, seed=0, size=SMALL)[1]
    h, w = SMALL
    channels = {"rgb": 3, "depth": 1, "normal": 3, "reshading": 1, "texture": 3}
    channels |= {"edge_occlusion": 1, "edge_texture": 1}
    assert set(item) == set(MODALITIES) | {"label"}
    for name, c in channels.items():
        assert item[name].shape == (c, h, w), name
        assert item[name].dtype == torch.float32, name
    assert item["label"].shape == (h, w) and item["label"].dtype == torch.int64
    for name in ("rgb", "reshading", "texture", "edge_occlusion", "edge_texture"):
        assert item[name].min() >= 0.0 and item[name].max() <= 1.0, name
    assert item["normal"].abs().max() <= 1.0
    assert item["depth"].min() >= 0.0 and item["depth"].max() < MAX_DEPTH
    assert item["label"].max() < NUM_CLASSES


def test_only_requested_modalities_are_returned_plus_the_label() -> None:
    item = SyntheticScenes(1, ["depth"], size=SMALL)[0]
    assert set(item) == {"depth", "label"}


def test_unknown_modality_is_rejected_with_the_valid_names() -> None:
    with pytest.raises(ValueError, match="valid modalities are rgb, depth, normal"):
        SyntheticScenes(1, ("rgb", "thermal"))
    with pytest.raises(ValueError, match="size"):
        SyntheticScenes(1, size=(10,))
    with pytest.raises(IndexError):
        SyntheticScenes(2, size=SMALL)[2]


def test_default_size_is_120_by_160() -> None:
    assert SyntheticScenes(1)[0]["rgb"].shape == (3, 120, 160)


def test_normals_are_unit_and_face_the_camera() -> None:
    a = render_arrays(0, 4, (60, 80), ("normal",))
    n = a["normal"].reshape(-1, 3)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=0.02)
    rays = camera_rays((60, 80)).reshape(-1, 3)
    assert np.all(np.einsum("nc,nc->n", n, rays) < 0.01)  # visible surfaces face the camera


def test_rgb_is_albedo_times_shading_plus_noise() -> None:
    seed, index = 0, 6
    a = render_arrays(seed, index, (60, 80), ("rgb", "texture", "reshading"))
    clean = a["texture"] * a["reshading"][..., None] * scene_at(seed, index).gain
    residual = a["rgb"] - np.clip(clean, 0, 1)
    assert abs(residual.mean()) < 0.01
    assert 0.005 < residual.std() < 0.04  # 8-bit quantisation + sensor noise, nothing else


def test_floor_normal_points_up_in_the_world() -> None:
    seed, index = 0, 1
    a = render_arrays(seed, index, (60, 80), ("normal",))
    floor = a["label"] == CLASS_NAMES.index("floor")
    world = a["normal"][floor] @ scene_at(seed, index).camera_rotation.T
    np.testing.assert_allclose(world.mean(0), [0.0, 1.0, 0.0], atol=0.02)


def test_depth_has_sensor_defects_and_noise_growing_with_distance() -> None:
    depths, holes = [], []
    for i in range(6):
        d = render_arrays(0, i, (60, 80), ("depth",))["depth"]
        holes.append((d == 0).mean())
        depths.append(d)
    assert 0.002 < np.mean(holes) < 0.15
    assert max(d.max() for d in depths) < MAX_DEPTH


def test_depth_noise_grows_with_distance() -> None:
    """Second differences along rows of a plane cancel the geometry and leave the noise."""
    near_noise, far_noise = [], []
    for i in range(8):
        a = render_arrays(0, i, (120, 160), ("depth",))
        d, wall = a["depth"], a["label"] == CLASS_NAMES.index("wall")
        ok = wall[:, :-2] & wall[:, 1:-1] & wall[:, 2:] & (d[:, :-2] > 0) & (d[:, 2:] > 0)
        ok &= d[:, 1:-1] > 0
        second = (d[:, :-2] - 2 * d[:, 1:-1] + d[:, 2:])[ok]
        z = d[:, 1:-1][ok]
        near_noise.append(second[z < 3.5])
        far_noise.append(second[z > 4.5])
    near, far = np.concatenate(near_noise), np.concatenate(far_noise)
    assert len(near) > 100 and len(far) > 100
    assert far.std() > 1.5 * near.std()


def test_depth_is_quantised_like_a_nyudv2_png() -> None:
    d = render_arrays(0, 0, SMALL, ("depth",))["depth"]
    np.testing.assert_array_equal(decode("depth", encode("depth", d)), d)


def test_void_holes_marks_depth_holes_255_and_nothing_else_changes() -> None:
    plain = render_arrays(0, 3, (60, 80), ("depth",))
    void = render_arrays(0, 3, (60, 80), ("depth",), void_holes=True)
    holes = plain["depth"] == 0
    assert holes.any()
    assert np.all(void["label"][holes] == IGNORE_INDEX)
    np.testing.assert_array_equal(void["label"][~holes], plain["label"][~holes])


def test_occlusion_edges_mark_the_near_side_of_depth_jumps_only() -> None:
    z = np.full((6, 8), 5.0)
    z[:, :3] = 2.0  # an object in front on the left
    surface = np.zeros((6, 8), dtype=np.int16)
    surface[:, :3] = 4
    near, far = occlusion_edges(z, surface)
    assert near[:, 2].all() and not near[:, 3:].any() and not near[:, :2].any()
    assert far[:, 3].all() and far.sum() == 6
    # A contact between surfaces at equal depth (a box standing on the floor) is no edge.
    z[:, :3] = 5.0
    assert not occlusion_edges(z, surface)[0].any()


def test_edge_occlusion_lies_on_label_boundaries() -> None:
    a = render_arrays(0, 5, (60, 80), ("edge_occlusion",))
    edge = a["edge_occlusion"] > 0
    label = a["label"]
    boundary = np.zeros_like(edge)
    boundary[:, :-1] |= label[:, :-1] != label[:, 1:]
    boundary[:, 1:] |= label[:, :-1] != label[:, 1:]
    boundary[:-1] |= label[:-1] != label[1:]
    boundary[1:] |= label[:-1] != label[1:]
    assert edge.any()
    # Surfaces of one class (two walls) can occlude each other, so allow a few off-boundary.
    assert (edge & boundary).sum() >= 0.8 * edge.sum()


def test_class_design_pairs_are_disjoint_and_cover_all_objects() -> None:
    assert 10 <= NUM_CLASSES <= 13
    rgb_blind, depth_blind = set(RGB_BLIND_PAIRS), set(DEPTH_BLIND_PAIRS)
    assert not rgb_blind & depth_blind
    objects = {i for i, n in enumerate(CLASS_NAMES) if n.startswith(("wood", "fabric"))}
    assert objects <= {c for pair in RGB_BLIND_PAIRS for c in pair}
    assert objects <= {c for pair in DEPTH_BLIND_PAIRS for c in pair}


def test_every_class_appears_in_a_few_scenes() -> None:
    seen = set()
    for i in range(20):
        seen |= set(np.unique(render_codes(0, i, (30, 40), ())["label"]).tolist())
    assert seen == set(range(NUM_CLASSES))


@pytest.mark.parametrize("shape", ["box", "cylinder", "sphere"])
def test_ray_hits_are_the_first_entry_into_the_solid(shape: str) -> None:
    """Analytic intersections agree with marching along each ray in steps of 0.001 in t."""
    from cenfusion.data.synthetic.render import _hit_box, _hit_cylinder, _hit_sphere

    rng = np.random.default_rng(0)
    half = np.array([0.3, 0.2, 0.4])
    origin = np.array([0.4, 1.1, -2.0])
    targets = rng.uniform(-0.6, 0.6, size=(400, 3))
    d = targets - origin
    if shape == "box":
        t, n = _hit_box(origin, d, half)

        def inside(p: np.ndarray) -> np.ndarray:
            return np.all(np.abs(p) <= half, axis=-1)
    elif shape == "cylinder":
        t, n = _hit_cylinder(origin, d, 0.3, 0.2)

        def inside(p: np.ndarray) -> np.ndarray:
            return (p[..., 0] ** 2 + p[..., 2] ** 2 <= 0.09) & (np.abs(p[..., 1]) <= 0.2)
    else:
        t, n = _hit_sphere(origin, d, 0.4)

        def inside(p: np.ndarray) -> np.ndarray:
            return np.sum(p**2, axis=-1) <= 0.16

    steps = np.linspace(0.0, 1.5, 1501)  # t in [0, 1.5] covers the targets and beyond
    inside_along = inside(origin + steps[None, :, None] * d[:, None, :])
    marched_hit = inside_along.any(axis=1)
    assert 50 < marched_hit.sum() < 400
    assert np.all(np.isfinite(t[marched_hit]))
    assert np.sum(np.isfinite(t) & ~marched_hit) <= 4  # grazing chords shorter than a step
    first = steps[inside_along.argmax(axis=1)]
    hit = marched_hit
    # The first marched sample inside lies at most one step after the analytic entry.
    assert np.all((t[hit] <= first[hit] + 1e-9) & (first[hit] - t[hit] < 1e-3 + 1e-9))
    np.testing.assert_allclose(np.linalg.norm(n[hit], axis=1), 1.0, atol=1e-6)
    assert np.all(np.einsum("nc,nc->n", n[hit], d[hit]) < 0)  # normals face the ray
