"""Ray casting of a :class:`~.scene.Scene` into aligned modalities, all in vectorised NumPy.

One ray per pixel through a pinhole camera; each ray direction has camera-z component 1, so the
ray parameter of a hit *is* the metric z-depth. The room (floor and three walls) is intersected
analytically for every pixel; each object only over the pixels its projected bounding box
covers, and a z-buffer (minimum ray parameter) resolves occlusion. Shading is Lambertian under a
directional light plus ambient, without cast shadows.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import numpy as np

from cenfusion.data.synthetic import textures
from cenfusion.data.synthetic._linalg import transform
from cenfusion.data.synthetic.classes import CLASS_INDEX, IGNORE_INDEX
from cenfusion.data.synthetic.formats import MAX_DEPTH, MODALITIES, encode
from cenfusion.data.synthetic.scene import FOCAL_SCALE, Primitive, Scene

_ROOM_NORMALS = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
_NUM_ROOM = len(_ROOM_NORMALS)
_EPS = 1e-6


def camera_rays(size: tuple[int, int]) -> np.ndarray:
    """Camera-frame ray directions (H, W, 3) with z = 1 (x right, y down), pixel centres."""
    height, width = size
    focal = FOCAL_SCALE * width
    u = (np.arange(width) - (width - 1) / 2) / focal
    v = (np.arange(height) - (height - 1) / 2) / focal
    rays = np.empty((height, width, 3))
    rays[..., 0] = u[None, :]
    rays[..., 1] = v[:, None]
    rays[..., 2] = 1.0
    return rays


@functools.lru_cache(maxsize=8)
def _camera_rays_cached(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat rays (N, 3) with z = 1 and their unit directions, cached per size (read-only)."""
    rays = camera_rays((height, width)).reshape(-1, 3)
    unit = rays / np.linalg.norm(rays, axis=1, keepdims=True)
    rays.flags.writeable = False
    unit.flags.writeable = False
    return rays, unit


def _safe(d: np.ndarray) -> np.ndarray:
    return np.where(np.abs(d) < 1e-12, 1e-12, d)


def _hit_box(o: np.ndarray, d: np.ndarray, half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slab test. o: (3,) local origin, d: (N, 3) local directions -> t (N,), normal (N, 3)."""
    inv = 1.0 / _safe(d)
    t1 = (-half - o) * inv
    t2 = (half - o) * inv
    near = np.minimum(t1, t2)
    t_enter = near.max(axis=1)
    t_exit = np.maximum(t1, t2).min(axis=1)
    hit = (t_exit >= t_enter) & (t_enter > _EPS)
    axis = near.argmax(axis=1)
    normal = np.zeros_like(d)
    rows = np.arange(len(d))
    normal[rows, axis] = -np.sign(d[rows, axis])
    return np.where(hit, t_enter, np.inf), normal


def _hit_sphere(o: np.ndarray, d: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    a = np.einsum("ij,ij->i", d, d)
    b = d @ o
    disc = b * b - a * (o @ o - radius * radius)
    t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
    t = np.where((disc >= 0) & (t > _EPS), t, np.inf)
    normal = (o + np.where(np.isfinite(t), t, 0.0)[:, None] * d) / radius
    return t, normal


def _hit_cylinder(
    o: np.ndarray, d: np.ndarray, radius: float, half_height: float
) -> tuple[np.ndarray, np.ndarray]:
    """Capped cylinder around the local y axis."""
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = o[0] * d[:, 0] + o[2] * d[:, 2]
    c = o[0] ** 2 + o[2] ** 2 - radius * radius
    disc = b * b - a * c
    t_side = (-b - np.sqrt(np.maximum(disc, 0.0))) / np.maximum(a, 1e-12)
    y_side = o[1] + t_side * d[:, 1]
    t_side = np.where((disc >= 0) & (a > 1e-12) & (np.abs(y_side) <= half_height), t_side, np.inf)
    cap_y = np.where(o[1] > 0, half_height, -half_height)  # only the cap facing the origin
    t_cap = (cap_y - o[1]) / _safe(d[:, 1])
    x_cap = o[0] + t_cap * d[:, 0]
    z_cap = o[2] + t_cap * d[:, 2]
    t_cap = np.where(x_cap**2 + z_cap**2 <= radius * radius, t_cap, np.inf)
    side = t_side <= t_cap
    t = np.minimum(t_side, t_cap)
    t = np.where(t > _EPS, t, np.inf)
    tt = np.where(np.isfinite(t), t, 0.0)
    normal = np.zeros_like(d)
    normal[:, 0] = np.where(side, (o[0] + tt * d[:, 0]) / radius, 0.0)
    normal[:, 2] = np.where(side, (o[2] + tt * d[:, 2]) / radius, 0.0)
    normal[:, 1] = np.where(side, 0.0, np.sign(cap_y))
    return t, normal


def _bounding_corners(obj: Primitive) -> np.ndarray:
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    return obj.center + (signs * obj.half_extents) @ obj.rotation.T


def _pixel_box(obj: Primitive, scene: Scene, size: tuple[int, int]) -> tuple[slice, slice] | None:
    """Pixel rectangle that contains the object's projection (None if off screen)."""
    height, width = size
    cam = (_bounding_corners(obj) - scene.camera_position) @ scene.camera_rotation
    if np.any(cam[:, 2] < 0.05):
        return slice(0, height), slice(0, width)
    focal = FOCAL_SCALE * width
    u = focal * cam[:, 0] / cam[:, 2] + (width - 1) / 2
    v = focal * cam[:, 1] / cam[:, 2] + (height - 1) / 2
    u0, u1 = max(int(np.floor(u.min())) - 1, 0), min(int(np.ceil(u.max())) + 2, width)
    v0, v1 = max(int(np.floor(v.min())) - 1, 0), min(int(np.ceil(v.max())) + 2, height)
    if u0 >= u1 or v0 >= v1:
        return None
    return slice(v0, v1), slice(u0, u1)


def _hit(obj: Primitive, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if obj.shape == "box":
        return _hit_box(o, d, obj.half_extents)
    if obj.shape == "cylinder":
        return _hit_cylinder(o, d, obj.half_extents[0], obj.half_extents[1])
    if obj.shape == "sphere":
        return _hit_sphere(o, d, obj.half_extents[0])
    raise ValueError(f"object shape {obj.shape!r}: expected box, cylinder or sphere")


def _shift_pairs(a: np.ndarray, axis: int) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    lo = [slice(None)] * a.ndim
    hi = [slice(None)] * a.ndim
    lo[axis], hi[axis] = slice(None, -1), slice(1, None)
    return tuple(lo), tuple(hi)


def occlusion_edges(
    z: np.ndarray, surface: np.ndarray, relative: float = 0.04, absolute: float = 0.02
) -> tuple[np.ndarray, np.ndarray]:
    """Depth discontinuities between different surfaces: (near side, far side) masks (H, W).

    A jump counts where two 4-neighbours lie on different surfaces and their depths differ by
    more than ``absolute + relative * z``; contacts (a box on the floor, a wall corner) do not.
    """
    near = np.zeros(z.shape, dtype=bool)
    far = np.zeros(z.shape, dtype=bool)
    for axis in (0, 1):
        lo, hi = _shift_pairs(z, axis)
        a, b = z[lo], z[hi]
        jump = (surface[lo] != surface[hi]) & (
            np.abs(a - b) > absolute + relative * np.minimum(a, b)
        )
        near[lo] |= jump & (a < b)
        far[hi] |= jump & (a < b)
        near[hi] |= jump & (b < a)
        far[lo] |= jump & (b < a)
    return near, far


def texture_edges(image: np.ndarray, scale: float = 0.25) -> np.ndarray:
    """Albedo edge strength in [0, 1]: central-difference gradient magnitude / ``scale``.

    image: (H, W, 3); the squared gradient is the largest over channels, so edges between
    colours of equal brightness count too.
    """
    img = np.moveaxis(image, 2, 0).astype(np.float32)  # (3, H, W)
    gx = np.empty_like(img)
    gy = np.empty_like(img)
    gx[:, :, 1:-1] = img[:, :, 2:] - img[:, :, :-2]
    gx[:, :, 0] = img[:, :, 1] - img[:, :, 0]
    gx[:, :, -1] = img[:, :, -1] - img[:, :, -2]
    gy[:, 1:-1] = img[:, 2:] - img[:, :-2]
    gy[:, 0] = img[:, 1] - img[:, 0]
    gy[:, -1] = img[:, -1] - img[:, -2]
    magnitude = np.sqrt(np.max(gx * gx + gy * gy, axis=0))
    return np.clip(magnitude * (0.5 / scale), 0.0, 1.0)


def depth_noise_std(z: np.ndarray) -> np.ndarray:
    """Axial noise of a structured-light sensor, growing with distance (Nguyen et al. 2012)."""
    return 0.0012 + 0.0019 * (z - 0.4) ** 2


def render(
    scene: Scene,
    size: tuple[int, int],
    noise: np.random.Generator,
    modalities: Iterable[str] = MODALITIES,
    void_holes: bool = False,
) -> dict[str, np.ndarray]:
    """Render ``scene`` at ``size`` = (H, W) into stored codes (see :mod:`.formats`).

    Returns ``{modality: code}`` for the requested modalities plus ``label`` (uint8, H x W);
    ``noise`` draws the sensor noise and depth defects. ``void_holes`` labels depth holes 255.
    """
    height, width = size
    rays_cam, view = _camera_rays_cached(height, width)  # (N, 3) flat, pixel-major
    n_pixels = height * width
    rotation, origin = scene.camera_rotation, scene.camera_position
    d = transform(rays_cam, rotation.T)  # world directions (N, 3)

    # Room: the nearest plane the ray heads towards (the room is a convex box).
    surface = np.zeros(n_pixels, dtype=np.int16)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(d[:, 1] < 0, -origin[1] / d[:, 1], np.inf)
        planes = (
            (2, scene.back, 1.0),
            (0, scene.left, -1.0),
            (0, scene.right, 1.0),
        )
        for s, (axis, position, heading) in enumerate(planes, start=1):
            t_plane = (position - origin[axis]) / d[:, axis]
            closer = (d[:, axis] * heading > 0) & (t_plane < t)
            t = np.where(closer, t_plane, t)
            surface[closer] = s
    normal = _ROOM_NORMALS[surface]

    pixel_index = np.arange(n_pixels).reshape(height, width)
    for k, obj in enumerate(scene.objects):
        box = _pixel_box(obj, scene, size)
        if box is None:
            continue
        ids = pixel_index[box].ravel()
        t_obj, n_local = _hit(
            obj, (origin - obj.center) @ obj.rotation, transform(d[ids], obj.rotation)
        )
        closer = t_obj < t[ids]
        ids = ids[closer]
        t[ids] = t_obj[closer]
        surface[ids] = _NUM_ROOM + k
        normal[ids] = transform(n_local[closer], obj.rotation.T)

    if not np.all(np.isfinite(t)):
        raise RuntimeError("synthetic renderer: a ray left the room (camera outside it?)")
    points = origin + t[:, None] * d

    # Labels and albedo, surface by surface.
    label = np.zeros(n_pixels, dtype=np.uint8)
    albedo = np.zeros((n_pixels, 3))
    order = np.argsort(surface, kind="stable")
    bounds = np.searchsorted(surface[order], np.arange(_NUM_ROOM + len(scene.objects) + 1))
    members = [order[bounds[i] : bounds[i + 1]] for i in range(len(bounds) - 1)]
    uv_axes = ((0, 2), (0, 1), (2, 1), (2, 1))  # floor: x, z; back: x, y; sides: z, y
    for s in range(_NUM_ROOM):
        ids = members[s]
        if len(ids) == 0:
            continue
        material = scene.floor_material if s == 0 else scene.wall_material
        label[ids] = CLASS_INDEX["floor"] if s == 0 else CLASS_INDEX["wall"]
        albedo[ids] = textures.albedo(material, points[ids][:, uv_axes[s]])
    for decal in scene.decals:
        ids = members[decal.surface]
        if len(ids) == 0:
            continue
        uv = points[ids][:, uv_axes[decal.surface]] - decal.center
        c, s_ = np.cos(decal.angle), np.sin(decal.angle)
        local = np.stack([uv[:, 0] * c + uv[:, 1] * s_, -uv[:, 0] * s_ + uv[:, 1] * c], axis=1)
        inside = np.all(np.abs(local) <= decal.half_size, axis=1)
        if not inside.any():
            continue
        label[ids[inside]] = decal.label
        albedo[ids[inside]] = textures.albedo(decal.material, local[inside], decal.half_size)
    for k, obj in enumerate(scene.objects):
        ids = members[_NUM_ROOM + k]
        if len(ids) == 0:
            continue
        label[ids] = obj.label
        albedo[ids] = textures.albedo(
            obj.material, transform(points[ids] - obj.center, obj.rotation)
        )

    # Shading and colour.
    shading = scene.ambient + (1.0 - scene.ambient) * np.clip(normal @ scene.light_direction, 0, 1)
    clean = albedo * (shading[:, None] * scene.gain)
    sigma = np.sqrt(0.0001 + 0.0004 * np.clip(clean, 0.0, 1.0))
    rgb = clean + sigma * noise.standard_normal(clean.shape, dtype=np.float32)
    normal_cam = transform(normal, rotation)  # camera frame

    # Depth with sensor defects: grazing-angle and occlusion-shadow holes, dropouts, noise.
    grid = (height, width)
    near, far = occlusion_edges(t.reshape(grid), surface.reshape(grid))
    near, far = near.ravel(), far.ravel()
    cosine = np.abs(np.einsum("nc,nc->n", normal_cam, view))
    u = noise.random((4, n_pixels), dtype=np.float32)
    holes = u[0] < np.clip((0.22 - cosine) / 0.12, 0.0, 1.0)
    holes |= far & (u[1] < 0.6)
    holes |= near & (u[2] < 0.15)
    holes |= u[3] < 0.002
    depth = t + depth_noise_std(t) * noise.standard_normal(n_pixels, dtype=np.float32)
    depth = np.where(holes | (depth > MAX_DEPTH) | (depth < 0.4), 0.0, depth)

    values = {
        "rgb": rgb,
        "depth": depth,
        "normal": normal_cam,
        "reshading": shading,
        "texture": albedo,
        "edge_occlusion": near.astype(np.float32),
    }
    out: dict[str, np.ndarray] = {}
    for name in modalities:
        if name == "edge_texture":
            out[name] = encode(name, texture_edges(albedo.reshape(height, width, 3)))
        else:
            value = values[name]
            out[name] = encode(name, value.reshape(grid + value.shape[1:]))
    if void_holes:
        label[depth == 0] = IGNORE_INDEX
    out["label"] = label.reshape(grid)
    return out
