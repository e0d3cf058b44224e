"""HHA: depth as three image-like channels (Gupta et al., ECCV 2014).

**H**orizontal disparity, **H**eight above the ground and the **A**ngle between the surface
normal and gravity, each scaled to 0..255 so that an RGB network's first layers see familiar
ranges. Computed from metric depth and the camera intrinsics:

1. every pixel is back-projected to a 3-d point (camera frame: x right, y down, z forward);
2. surface normals from the cross product of the neighbours' differences, turned to face the
   camera;
3. gravity is estimated as in the paper: start from the camera's up direction, then twice
   (with an angle tolerance of 45 then 15 degrees) take the normals that are nearly parallel to
   the current estimate (floors, table tops) and those nearly perpendicular (walls) and choose
   the direction most parallel to the first and most perpendicular to the second (the smallest
   eigenvector of ``sum_perp n n^T - sum_par n n^T``);
4. height is the point's coordinate along gravity above the lowest valid point (the 1st
   percentile, robust to outliers), the angle is that of the normal with gravity (0: a floor).

Scales (0..255): disparity ``255 * min(1, near / depth)`` with ``near`` 0.5 m; height 2 cm per
step (0..5.1 m); angle ``255 * degrees / 180``. Missing depth (0) gives 0 in every channel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NEAR_M = 0.5  # depth of disparity 255
HEIGHT_STEP_M = 0.02  # metres per height step


@dataclass(frozen=True)
class Intrinsics:
    """A pinhole camera: focal lengths and principal point in pixels."""

    fx: float
    fy: float
    cx: float
    cy: float


NYUDV2_KINECT = Intrinsics(fx=518.857901, fy=519.469611, cx=325.582449, cy=253.736166)
"""The NYUDv2 Kinect's colour-camera intrinsics (640 x 480)."""


def backproject(depth: np.ndarray, camera: Intrinsics) -> np.ndarray:
    """``(H, W)`` metres -> ``(H, W, 3)`` points in the camera frame (x right, y down, z ahead)."""
    height, width = depth.shape
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    z = depth.astype(np.float64)
    return np.stack([(u - camera.cx) * z / camera.fx, (v - camera.cy) * z / camera.fy, z], -1)


def surface_normals(points: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit normals ``(H, W, 3)`` facing the camera, and where they exist (all 4 neighbours
    valid): the cross product of the horizontal and vertical central differences."""
    dx = np.zeros_like(points)
    dy = np.zeros_like(points)
    dx[:, 1:-1] = points[:, 2:] - points[:, :-2]
    dy[1:-1] = points[2:] - points[:-2]
    normals = np.cross(dx, dy)
    length = np.linalg.norm(normals, axis=-1)
    ok = np.zeros_like(valid)
    ok[1:-1, 1:-1] = (
        valid[1:-1, 1:-1] & valid[1:-1, 2:] & valid[1:-1, :-2] & valid[2:, 1:-1] & valid[:-2, 1:-1]
    )
    ok &= length > 0
    normals = np.where(ok[..., None], normals / np.maximum(length, 1e-12)[..., None], 0.0)
    facing = np.sum(normals * points, axis=-1) > 0  # pointing away from the camera: flip
    return np.where(facing[..., None], -normals, normals), ok


def estimate_gravity(
    normals: np.ndarray, ok: np.ndarray, start: tuple[float, float, float] = (0.0, -1.0, 0.0)
) -> np.ndarray:
    """The up direction (unit, camera frame) from the normals, as in the paper (module doc)."""
    up = np.asarray(start, dtype=np.float64)
    candidates = normals[ok]
    for tolerance in (45.0, 15.0):
        cosines = candidates @ up
        parallel = candidates[np.abs(cosines) > np.cos(np.radians(tolerance))]
        perpendicular = candidates[np.abs(cosines) < np.sin(np.radians(tolerance))]
        if len(parallel) + len(perpendicular) < 3:
            break
        scatter = perpendicular.T @ perpendicular - parallel.T @ parallel
        _, vectors = np.linalg.eigh(scatter)
        estimate = vectors[:, 0]
        up = estimate if estimate @ up >= 0 else -estimate
    return up / np.linalg.norm(up)


def hha(depth: np.ndarray, camera: Intrinsics = NYUDV2_KINECT) -> np.ndarray:
    """``(H, W)`` depth in metres (0: missing) -> ``(H, W, 3)`` uint8 HHA (module doc)."""
    if depth.ndim != 2:
        raise ValueError(f"depth: expected an (H, W) array in metres, got shape {depth.shape}")
    valid = np.isfinite(depth) & (depth > 0)
    points = backproject(np.where(valid, depth, 0.0), camera)
    normals, ok = surface_normals(points, valid)
    up = estimate_gravity(normals, ok)
    out = np.zeros((*depth.shape, 3), dtype=np.float64)
    safe = np.where(valid, depth, np.inf)
    out[..., 0] = 255 * np.minimum(1.0, NEAR_M / safe)
    along = points @ up
    floor = np.percentile(along[valid], 1) if valid.any() else 0.0
    out[..., 1] = np.clip((along - floor) / HEIGHT_STEP_M, 0, 255)
    angle = np.degrees(np.arccos(np.clip(normals @ up, -1.0, 1.0)))
    out[..., 2] = np.where(ok, angle * 255 / 180, 0.0)
    out[~valid] = 0
    return np.round(out).astype(np.uint8)
