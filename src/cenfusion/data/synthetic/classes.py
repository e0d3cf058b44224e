"""The semantic classes of the synthetic scenes, designed so that fusion measurably matters.

Every class is a (geometry, appearance) combination, and the combinations are chosen so that
each modality is blind to some distinctions the other one sees:

- **Depth-blind pairs** share geometry *exactly* (same shape family, same size and pose
  distributions) and differ only in colour/texture: ``floor``/``rug`` (a rug is a flush decal on
  the floor, zero thickness), ``wall``/``poster`` (a flush decal on a wall), and each shape in
  ``wood`` vs ``fabric`` (``wood_box``/``fabric_box``, ``wood_cylinder``/``fabric_cylinder``,
  ``wood_sphere``/``fabric_sphere``). Only RGB (or texture) separates them.
- **RGB-blind pairs** share a material (the same procedural solid texture and colour
  distribution) and differ only in geometry: the three ``wood_*`` shapes (box, cylinder,
  sphere) among themselves and the three ``fabric_*`` shapes among themselves. Only
  depth/normals separate them; RGB keeps a weak cue through shading and silhouettes, which a
  random light direction, strong solid textures and random sizes keep ambiguous.
- ``rug`` and ``poster`` share the pattern material too, but their surroundings (floor tiles vs
  wall paint) give them away to RGB, so they are not listed as an RGB-blind pair.
- ``floor`` (tiles) and ``wall`` (paint) differ in both, so every model sees them.

Measured (``tests/data/synthetic/test_fusion_matters.py``, 48x64 images): a tiny conv net
trained on RGB only takes a pixel of one member of an RGB-blind pair for the other 29% of the
time, but only 0.6% for depth-blind pairs; trained on depth only, 36% on depth-blind pairs and
8% on RGB-blind pairs.

Depth sensor defects depend on geometry only (never on albedo), so nothing leaks appearance into
depth.
"""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = (
    "floor",
    "wall",
    "rug",
    "poster",
    "wood_box",
    "wood_cylinder",
    "wood_sphere",
    "fabric_box",
    "fabric_cylinder",
    "fabric_sphere",
)
"""Class names; the index in this tuple is the label value written to masks."""

NUM_CLASSES: int = len(CLASS_NAMES)
IGNORE_INDEX: int = 255
"""Label of void pixels (depth holes when ``void_holes`` is asked), as in NYUDv2 masks."""

CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)}

SHAPES: tuple[str, ...] = ("box", "cylinder", "sphere")
"""Object shape families; slabs are flat boxes and discs are short cylinders."""

OBJECT_MATERIALS: tuple[str, ...] = ("wood", "fabric")


def object_class(material: str, shape: str) -> int:
    """Label of an object of ``material`` and ``shape`` (e.g. ``wood``, ``box`` -> wood_box)."""
    return CLASS_INDEX[f"{material}_{shape}"]


def _pairs(*pairs: tuple[str, str]) -> tuple[tuple[int, int], ...]:
    return tuple((CLASS_INDEX[a], CLASS_INDEX[b]) for a, b in pairs)


DEPTH_BLIND_PAIRS: tuple[tuple[int, int], ...] = _pairs(
    ("floor", "rug"),
    ("wall", "poster"),
    ("wood_box", "fabric_box"),
    ("wood_cylinder", "fabric_cylinder"),
    ("wood_sphere", "fabric_sphere"),
)
"""Same geometry, different appearance: only RGB separates these."""

RGB_BLIND_PAIRS: tuple[tuple[int, int], ...] = _pairs(
    ("wood_box", "wood_cylinder"),
    ("wood_box", "wood_sphere"),
    ("wood_cylinder", "wood_sphere"),
    ("fabric_box", "fabric_cylinder"),
    ("fabric_box", "fabric_sphere"),
    ("fabric_cylinder", "fabric_sphere"),
)
"""Same appearance, different geometry: only depth (or normals) separates these."""

PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 128, 128),  # floor
    (230, 220, 190),  # wall
    (240, 50, 50),  # rug
    (250, 190, 30),  # poster
    (140, 80, 20),  # wood_box
    (200, 130, 60),  # wood_cylinder
    (110, 60, 160),  # wood_sphere
    (30, 90, 200),  # fabric_box
    (60, 190, 220),  # fabric_cylinder
    (40, 170, 80),  # fabric_sphere
)
"""Display colour of each class for previews; void (255) is drawn black."""
