"""HHA on a rendered scene whose geometry is known: a floor and a box, a tilted camera."""

import numpy as np
import pytest

from cenfusion.data.hha import Intrinsics, backproject, estimate_gravity, hha, surface_normals

CAMERA = Intrinsics(fx=150.0, fy=150.0, cx=80.0, cy=60.0)
HEIGHT, WIDTH = 120, 160
PITCH = np.radians(20.0)  # looking down
EYE = 1.5  # metres above the floor
BOX = ((-0.4, 0.4), (0.0, 0.6), (2.5, 3.1))  # world x, y (up), z ranges


def camera_axes():
    """World directions of the camera's x (right), y (down) and z (forward) axes."""
    x = np.array([-1.0, 0.0, 0.0])
    y = np.array([0.0, -np.cos(PITCH), -np.sin(PITCH)])
    z = np.array([0.0, -np.sin(PITCH), np.cos(PITCH)])
    return x, y, z


def render():
    """Depth (metres; 0 above the horizon) and, per pixel, what it sees: 0 floor, 1 box top,
    2 box front, -1 nothing."""
    x, y, z = camera_axes()
    u, v = np.meshgrid(np.arange(WIDTH), np.arange(HEIGHT))
    right = ((u - CAMERA.cx) / CAMERA.fx)[..., None]
    down = ((v - CAMERA.cy) / CAMERA.fy)[..., None]
    rays = right * x + down * y + z
    eye = np.array([0.0, EYE, 0.0])
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(rays[..., 1] < 0, -EYE / rays[..., 1], np.inf)
        near, far = np.full((HEIGHT, WIDTH), -np.inf), np.full((HEIGHT, WIDTH), np.inf)
        face = np.full((HEIGHT, WIDTH), -1)
        for axis, (low, high) in enumerate(BOX):
            t1 = (low - eye[axis]) / rays[..., axis]
            t2 = (high - eye[axis]) / rays[..., axis]
            entry = np.minimum(t1, t2)
            face = np.where(entry > near, axis, face)
            near, far = np.maximum(near, entry), np.minimum(far, np.maximum(t1, t2))
    hit_box = (near <= far) & (near > 0) & (near < t_floor)
    t = np.where(hit_box, near, t_floor)
    depth = np.where(np.isfinite(t), t, 0.0)  # the ray's z in the camera frame is t
    seen = np.where(hit_box, np.where(face == 1, 1, 2), np.where(np.isfinite(t_floor), 0, -1))
    return depth, seen


def interior(mask):
    """``mask`` without its border pixels (normals there mix two surfaces)."""
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return inner


def test_gravity_is_recovered_from_the_floor_and_the_box():
    depth, _ = render()
    points = backproject(depth, CAMERA)
    normals, ok = surface_normals(points, depth > 0)
    up = estimate_gravity(normals, ok)
    _, y, z = camera_axes()
    expected = np.array([0.0, np.array([0, 1, 0]) @ y, np.array([0, 1, 0]) @ z])
    assert np.degrees(np.arccos(np.clip(up @ expected, -1, 1))) < 1.0


def test_height_and_angle_of_floor_top_and_front():
    depth, seen = render()
    encoded = hha(depth, CAMERA).astype(np.float64)
    floor, top, front = (interior(seen == k) for k in (0, 1, 2))
    assert floor.sum() > 1000 and top.sum() > 20 and front.sum() > 100
    disparity, height, angle = encoded[..., 0], encoded[..., 1], encoded[..., 2]
    assert np.median(height[floor]) <= 1 and np.median(angle[floor]) <= 1  # 2 cm, 0.7 degrees
    assert np.median(height[top]) == pytest.approx(0.6 / 0.02, abs=1.5)  # 60 cm above the floor
    assert np.median(angle[top]) <= 1
    assert np.median(angle[front]) == pytest.approx(255 / 2, abs=2)  # a vertical face: 90 degrees
    expected = 255 * np.minimum(1, 0.5 / depth[floor])
    np.testing.assert_allclose(disparity[floor], expected, atol=0.5)
    assert (encoded[seen == -1] == 0).all()  # no depth above the horizon: zeros


def test_depth_that_is_not_an_image_is_refused():
    with pytest.raises(ValueError, match="expected an \\(H, W\\) array in metres"):
        hha(np.zeros((2, 3, 4)))
