"""Random indoor-like scenes: a room, objects resting on its floor, decals, a light.

A scene is plain data sampled from a NumPy generator; :mod:`.render` turns it into pixels.
Sampling never looks at the image size, so scene ``(seed, index)`` is the same room at every
resolution. World frame: metres, y up, floor at y = 0, back wall at z = ``back``, the camera near
x = 0, z = 0 looking roughly along +z.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import numpy as np

from cenfusion.data.synthetic.classes import CLASS_INDEX, OBJECT_MATERIALS, SHAPES, object_class

FOCAL_SCALE: float = 518.86 / 640.0
"""Focal length in units of the image width (the NYUDv2 Kinect's, about 63 degrees wide)."""


@dataclass(frozen=True, eq=False)
class Material:
    """A procedural albedo: ``kind`` names the texture function, ``params`` its arrays."""

    kind: str  # "tiles", "paint", "pattern", "wood", "fabric"
    params: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Primitive:
    """A convex object: ``box`` (half extents), ``cylinder`` (local y axis) or ``sphere``.

    ``rotation`` maps local to world coordinates; the local frame also orients the texture.
    """

    shape: str
    label: int
    material: Material
    center: np.ndarray  # (3,)
    rotation: np.ndarray  # (3, 3)
    half_extents: np.ndarray  # box: (3,); cylinder: (radius, half height, radius); sphere: (r,)*3


@dataclass(frozen=True, eq=False)
class Decal:
    """A flush rectangle on a room surface (rug on the floor, poster on a wall).

    ``surface`` indexes :data:`SURFACES`; ``center``/``half_size`` are in that surface's 2-D
    coordinates (floor: x, z; back wall: x, y; side walls: z, y); ``angle`` rotates it in plane.
    """

    surface: int
    label: int
    material: Material
    center: np.ndarray  # (2,)
    half_size: np.ndarray  # (2,)
    angle: float


SURFACES: tuple[str, ...] = ("floor", "back_wall", "left_wall", "right_wall")


@dataclass(frozen=True, eq=False)
class Scene:
    """Everything needed to render one view; see :func:`sample_scene`."""

    left: float  # x of the left wall (< 0)
    right: float  # x of the right wall (> 0)
    back: float  # z of the back wall
    camera_position: np.ndarray  # (3,)
    camera_rotation: np.ndarray  # (3, 3), columns: camera x (right), y (down), z (forward)
    light_direction: np.ndarray  # (3,), unit, from the surface towards the light
    ambient: float
    gain: np.ndarray  # (3,), exposure times light colour
    floor_material: Material
    wall_material: Material
    decals: tuple[Decal, ...]
    objects: tuple[Primitive, ...]


def _rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v))


def _waves(rng: np.random.Generator, dims: int, count: int, freq: float) -> dict[str, np.ndarray]:
    """Random plane waves that :mod:`.textures` sums into cheap smooth noise."""
    return {
        "wave_k": rng.normal(size=(count, dims)) * freq,
        "wave_phase": rng.uniform(0.0, 2 * np.pi, size=count),
        "wave_amp": rng.uniform(0.5, 1.0, size=count) / count,
    }


def _tiles(rng: np.random.Generator) -> Material:
    base = _hsv(rng.uniform(0.05, 0.15), rng.uniform(0.05, 0.2), rng.uniform(0.55, 0.75))
    return Material(
        "tiles",
        {
            "color": base,
            "grout": base * rng.uniform(0.45, 0.6),
            "size": np.array(rng.uniform(0.3, 0.6)),
            "grout_width": np.array(rng.uniform(0.06, 0.1)),
            "jitter": np.array(rng.uniform(0.04, 0.1)),
            "offset": rng.uniform(0.0, 1.0, size=2),
        },
    )


def _paint(rng: np.random.Generator) -> Material:
    base = _hsv(rng.uniform(), rng.uniform(0.04, 0.2), rng.uniform(0.75, 0.92))
    return Material("paint", {"color": base, **_waves(rng, 2, 3, 1.5)})


_PATTERN_HUES = ((-0.03, 0.02), (0.12, 0.17), (0.25, 0.4), (0.78, 0.92))
"""Reds, yellows, greens, magentas: away from wood (orange-brown) and fabric (blue) hues."""


def _pattern(rng: np.random.Generator) -> Material:
    """Rug and poster material: the same distribution for both (they are RGB-blind)."""
    n = int(rng.integers(2, 4))
    colors = []
    for _ in range(n + 1):
        lo, hi = _PATTERN_HUES[int(rng.integers(len(_PATTERN_HUES)))]
        colors.append(_hsv(rng.uniform(lo, hi), rng.uniform(0.55, 0.9), rng.uniform(0.55, 0.95)))
    angle = rng.uniform(0.0, np.pi)
    return Material(
        "pattern",
        {
            "colors": np.stack(colors),  # last one is the border
            "style": np.array(int(rng.integers(3))),  # stripes, checker, rings
            "width": np.array(rng.uniform(0.06, 0.16)),
            "direction": np.array([np.cos(angle), np.sin(angle)]),
            "border": np.array(rng.uniform(0.03, 0.08)),
        },
    )


def _wood(rng: np.random.Generator) -> Material:
    base = _hsv(rng.uniform(0.055, 0.095), rng.uniform(0.5, 0.75), rng.uniform(0.5, 0.78))
    return Material(
        "wood",
        {
            "color": base,
            "dark": base * rng.uniform(0.45, 0.6),
            "frame": _random_rotation(rng),
            "axis_offset": rng.uniform(-0.5, 0.5, size=2),
            "ring_freq": np.array(rng.uniform(8.0, 14.0)),
            **_waves(rng, 3, 3, 4.0),
        },
    )


def _fabric(rng: np.random.Generator) -> Material:
    base = _hsv(rng.uniform(0.55, 0.63), rng.uniform(0.45, 0.75), rng.uniform(0.45, 0.75))
    return Material(
        "fabric",
        {
            "color": base,
            "dark": base * rng.uniform(0.55, 0.7),
            "frame": _random_rotation(rng),
            "cell": np.array(rng.uniform(0.05, 0.1)),
            **_waves(rng, 3, 3, 25.0),
        },
    )


_OBJECT_MATERIALS = {"wood": _wood, "fabric": _fabric}


def _object_shape(
    rng: np.random.Generator, shape: str
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Half extents, rotation, height of the centre above its support, footprint radius."""
    yaw = _rot_y(rng.uniform(0.0, np.pi))
    if shape == "box":
        half = np.array([rng.uniform(0.12, 0.45), rng.uniform(0.05, 0.5), rng.uniform(0.12, 0.45)])
        return half, yaw, float(half[1]), float(np.hypot(half[0], half[2]))
    if shape == "cylinder":
        radius, half_height = float(rng.uniform(0.1, 0.35)), float(rng.uniform(0.04, 0.5))
        half = np.array([radius, half_height, radius])
        if rng.uniform() < 0.3:  # lying on its side
            half[1] = rng.uniform(0.15, 0.45)
            return half, yaw @ _rot_z(np.pi / 2), radius, float(np.hypot(radius, half[1]))
        return half, yaw, half_height, radius
    radius = float(rng.uniform(0.1, 0.4))
    return np.full(3, radius), _random_rotation(rng), radius, radius


def _camera(rng: np.random.Generator, left: float, right: float) -> tuple[np.ndarray, np.ndarray]:
    position = np.array([rng.uniform(0.3 * left, 0.3 * right), rng.uniform(1.1, 1.6), 0.0])
    yaw = np.radians(rng.uniform(-15, 15))
    pitch = np.radians(rng.uniform(10, 24))  # looking down
    roll = np.radians(rng.uniform(-2, 2))
    # Camera frame at rest: x right = +x, y down = -y, z forward = +z.
    rest = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]])
    rotation = _rot_y(yaw) @ _rot_x(pitch) @ rest @ _rot_z(roll)
    return position, rotation


def sample_scene(rng: np.random.Generator) -> Scene:
    """Draw one scene: room, camera, light, 0-2 rugs, 0-3 posters and 4-9 objects.

    Objects rest on the floor or on top of a box, never interpenetrate, and take their shape
    and material independently, so the geometry of ``wood_box`` and ``fabric_box`` (for
    instance) has exactly the same distribution.
    """
    left, right = -rng.uniform(1.6, 2.8), rng.uniform(1.6, 2.8)
    back = rng.uniform(3.6, 5.6)
    camera_position, camera_rotation = _camera(rng, left, right)

    def in_view(x: float, y: float, z: float, margin: float = 0.1) -> bool:
        cam = (np.array([x, y, z]) - camera_position) @ camera_rotation
        return cam[2] > 0.5 and abs(cam[0] / cam[2]) < 0.5 / FOCAL_SCALE + margin

    elevation, azimuth = np.radians(rng.uniform(30, 80)), rng.uniform(0, 2 * np.pi)
    light = np.array(
        [
            np.cos(elevation) * np.cos(azimuth),
            np.sin(elevation),
            np.cos(elevation) * np.sin(azimuth),
        ]
    )
    ambient = float(rng.uniform(0.3, 0.5))
    gain = rng.uniform(0.9, 1.1) * (1.0 + rng.uniform(-0.05, 0.05, size=3))

    decals: list[Decal] = []
    for _ in range(int(rng.integers(0, 3))):
        half = np.array([rng.uniform(0.4, 1.0), rng.uniform(0.3, 0.8)])
        for _attempt in range(10):
            center = np.array(
                [rng.uniform(left + 0.5, right - 0.5), rng.uniform(1.3, max(1.4, back - 1.0))]
            )
            if in_view(center[0], 0.0, center[1]):
                break
        decals.append(
            Decal(0, CLASS_INDEX["rug"], _pattern(rng), center, half, rng.uniform(0, np.pi))
        )
    for _ in range(int(rng.integers(0, 4))):
        surface = int(rng.choice([1, 1, 2, 3]))
        half = np.array([rng.uniform(0.2, 0.6), rng.uniform(0.2, 0.5)])
        height = rng.uniform(0.9, 2.0)
        if surface == 1:
            center = np.array([rng.uniform(left + half[0], right - half[0]), height])
        else:
            center = np.array([rng.uniform(1.5, back - half[0]), height])
        decals.append(Decal(surface, CLASS_INDEX["poster"], _pattern(rng), center, half, 0.0))

    objects: list[Primitive] = []
    footprints: list[tuple[float, float, float]] = []  # x, z, radius of floor-standing objects
    floor_boxes: list[Primitive] = []  # boxes on the floor with nothing on top yet
    for _ in range(int(rng.integers(4, 10))):
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        material = OBJECT_MATERIALS[int(rng.integers(len(OBJECT_MATERIALS)))]
        half, rotation, lift, radius = _object_shape(rng, shape)
        label = object_class(material, shape)
        albedo = _OBJECT_MATERIALS[material](rng)
        if floor_boxes and rng.uniform() < 0.25:  # stack on a box whose top is big enough
            k = int(rng.integers(len(floor_boxes)))
            support = floor_boxes[k]
            if radius < 0.8 * min(support.half_extents[0], support.half_extents[2]):
                del floor_boxes[k]
                top = support.center[1] + support.half_extents[1]
                center = np.array([support.center[0], top + lift, support.center[2]])
                objects.append(Primitive(shape, label, albedo, center, rotation, half))
                continue
        for _attempt in range(20):
            x = rng.uniform(left + radius + 0.05, right - radius - 0.05)
            z = rng.uniform(1.0 + radius, back - radius - 0.05)
            if in_view(x, lift, z) and all(
                np.hypot(x - fx, z - fz) > radius + fr + 0.05 for fx, fz, fr in footprints
            ):
                footprints.append((x, z, radius))
                objects.append(
                    Primitive(shape, label, albedo, np.array([x, lift, z]), rotation, half)
                )
                if shape == "box":
                    floor_boxes.append(objects[-1])
                break

    return Scene(
        left=float(left),
        right=float(right),
        back=float(back),
        camera_position=camera_position,
        camera_rotation=camera_rotation,
        light_direction=light,
        ambient=ambient,
        gain=gain,
        floor_material=_tiles(rng),
        wall_material=_paint(rng),
        decals=tuple(decals),
        objects=tuple(objects),
    )
