"""Write the synthetic scenes in the real data sets' layouts, so real loaders read them as is.

Scene ``i`` of seed ``s`` is the same in memory (``SyntheticScenes(n, seed=s)[i]``) and on disk:
NYUDv2 id ``i + 1`` (``000001`` ...), Taskonomy ``point_{i}_view_0``. The first ``n_train``
indices form the training split, the next ``n_val`` the validation split and the next ``n_test``
(none by default) a held-out test split, ``test.txt``: adding a test split leaves the training
and validation scenes as they were.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cenfusion.data.io import write_png
from cenfusion.data.synthetic.classes import CLASS_NAMES, IGNORE_INDEX
from cenfusion.data.synthetic.dataset import DEFAULT_SIZE, check_size, render_codes
from cenfusion.data.synthetic.formats import (
    NYUDV2_DEPTH_SCALE,
    TASKONOMY_DEPTH_SCALE,
    decode,
    encode_depth,
    validate_modalities,
)

TASKONOMY_DOMAINS: dict[str, str] = {
    "rgb": "rgb",
    "normal": "normal",
    "reshading": "reshading",
    "depth_zbuffer": "depth",
    "edge_occlusion": "edge_occlusion",
    "edge_texture": "edge_texture",
    "segment_semantic": "label",
    "texture": "texture",
}
"""Taskonomy domain folder -> synthetic modality. ``texture`` (albedo) is not a Taskonomy domain;
it is written for the Texture+Shade -> RGB translation of the paper."""


def prepare_output(root: str | Path, force: bool) -> Path:
    """Create ``root``; refuse a non-empty folder (or a file) unless ``force``."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{root} exists and is not a folder")
    if root.is_dir() and any(root.iterdir()) and not force:
        raise FileExistsError(f"{root} is not empty; pass --force to write into it anyway")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _check_counts(n_train: int, n_val: int, n_test: int = 0) -> None:
    if n_train < 0 or n_val < 0 or n_test < 0 or n_train + n_val + n_test == 0:
        raise ValueError(
            f"expected non-negative --n-train, --n-val and --n-test with at least one scene, "
            f"got {n_train}, {n_val} and {n_test}"
        )


def _write_splits(root: Path, lines: list[str], n_train: int, n_val: int, n_test: int) -> None:
    """``train.txt``, ``val.txt`` and (with ``n_test``) ``test.txt`` from consecutive lines."""
    (root / "train.txt").write_text("".join(lines[:n_train]))
    (root / "val.txt").write_text("".join(lines[n_train : n_train + n_val]))
    if n_test:
        (root / "test.txt").write_text("".join(lines[n_train + n_val :]))


def _meta(seed: int, size: tuple[int, int], void_holes: bool, **extra: object) -> str:
    info = {
        "generator": "cenfusion.data.synthetic",
        "seed": seed,
        "size": list(size),
        "void_holes": void_holes,
        "classes": list(CLASS_NAMES),
        "ignore_index": IGNORE_INDEX,
        **extra,
    }
    return json.dumps(info, indent=2) + "\n"


def write_nyudv2(
    root: str | Path,
    n_train: int = 795,
    n_val: int = 654,
    n_test: int = 0,
    seed: int = 0,
    size: tuple[int, int] = DEFAULT_SIZE,
    void_holes: bool = False,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Write ``rgb/``, ``depth/`` (uint16, metres x 5000), ``masks/`` and train/val lists.

    List lines are ``rgb/000001.png<TAB>masks/000001.png<TAB>depth/000001.png``, relative to
    ``root``, as the public code's NYUDv2 lists. ``meta.json`` records seed, size and classes.
    """
    _check_counts(n_train, n_val, n_test)
    size = check_size(size)
    root = prepare_output(root, force)
    for folder in ("rgb", "depth", "masks"):
        (root / folder).mkdir(exist_ok=True)
    lines = []
    for i in tqdm(
        range(n_train + n_val + n_test), desc="synth nyudv2", unit="scene", disable=not progress
    ):
        codes = render_codes(seed, i, size, ("rgb", "depth"), void_holes)
        name = f"{i + 1:06d}.png"
        write_png(root / "rgb" / name, codes["rgb"])
        write_png(root / "depth" / name, codes["depth"])
        write_png(root / "masks" / name, codes["label"])
        lines.append(f"rgb/{name}\tmasks/{name}\tdepth/{name}\n")
    _write_splits(root, lines, n_train, n_val, n_test)
    (root / "meta.json").write_text(
        _meta(seed, size, void_holes, format="nyudv2", depth_scale=NYUDV2_DEPTH_SCALE)
    )
    return root


def taskonomy_name(point: int, domain: str, view: int = 0) -> str:
    """Taskonomy file name ``point_{P}_view_{V}_domain_{DOMAIN}.png``."""
    return f"point_{point}_view_{view}_domain_{domain}.png"


def write_taskonomy(
    root: str | Path,
    n_train: int = 1000,
    n_val: int = 500,
    n_test: int = 0,
    seed: int = 0,
    size: tuple[int, int] = DEFAULT_SIZE,
    domains: Sequence[str] = tuple(TASKONOMY_DOMAINS),
    void_holes: bool = False,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Write one folder per Taskonomy domain and ``train.txt``/``val.txt`` split files.

    Files are ``{domain}/point_{i}_view_0_domain_{domain}.png``; split lines carry a literal
    ``{domain}`` placeholder (``{domain}/point_3_view_0_domain_{domain}.png``) that the reader
    substitutes. ``depth_zbuffer`` is uint16 in units of 1/512 m (0 = hole), ``normal`` 8-bit
    RGB, ``edge_*`` 16-bit, ``rgb``/``texture`` 8-bit RGB, ``reshading`` 8-bit gray,
    ``segment_semantic`` the 8-bit class index (255 = void).
    """
    _check_counts(n_train, n_val, n_test)
    size = check_size(size)
    domains = tuple(domains)
    unknown = [d for d in domains if d not in TASKONOMY_DOMAINS]
    if unknown or not domains:
        raise ValueError(
            f"unknown Taskonomy domain {', '.join(map(repr, unknown)) or '(none given)'}: "
            f"valid domains are {', '.join(TASKONOMY_DOMAINS)}"
        )
    modalities = tuple(TASKONOMY_DOMAINS[d] for d in domains if TASKONOMY_DOMAINS[d] != "label")
    root = prepare_output(root, force)
    for domain in domains:
        (root / domain).mkdir(exist_ok=True)
    lines = []
    for i in tqdm(
        range(n_train + n_val + n_test), desc="synth taskonomy", unit="scene", disable=not progress
    ):
        codes = render_codes(seed, i, size, modalities, void_holes)
        for domain in domains:
            modality = TASKONOMY_DOMAINS[domain]
            code = codes[modality]
            if modality == "depth":
                code = encode_depth(decode("depth", code).astype(np.float64), TASKONOMY_DEPTH_SCALE)
            write_png(root / domain / taskonomy_name(i, domain), code)
        lines.append("{domain}/" + taskonomy_name(i, "{domain}") + "\n")
    _write_splits(root, lines, n_train, n_val, n_test)
    (root / "meta.json").write_text(
        _meta(
            seed,
            size,
            void_holes,
            format="taskonomy",
            domains=list(domains),
            depth_scale=TASKONOMY_DEPTH_SCALE,
        )
    )
    return root


def write_folder(
    root: str | Path,
    modalities: Sequence[str] = ("rgb", "depth"),
    n_train: int = 600,
    n_val: int = 100,
    n_test: int = 0,
    seed: int = 0,
    size: tuple[int, int] = DEFAULT_SIZE,
    void_holes: bool = False,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Write the ``folder`` layout of your own data: ``<modality>/<id>.png``, ``label/<id>.png``.

    ``train.txt`` and ``val.txt`` list one sample id per line (``00001`` ...). Each modality is
    stored as :mod:`cenfusion.data.synthetic.formats` says (e.g. ``depth`` 16-bit, metres x
    5000; ``normal`` 8-bit RGB); ``meta.json`` records it. It is the layout
    ``data.format: folder`` reads, written from the built-in scenes as a worked example.
    """
    _check_counts(n_train, n_val, n_test)
    size = check_size(size)
    modalities = validate_modalities(modalities)
    root = prepare_output(root, force)
    for folder in (*modalities, "label"):
        (root / folder).mkdir(exist_ok=True)
    ids = []
    for i in tqdm(
        range(n_train + n_val + n_test), desc="synth folder", unit="scene", disable=not progress
    ):
        codes = render_codes(seed, i, size, modalities, void_holes)
        sample_id = f"{i + 1:05d}"
        for name in (*modalities, "label"):
            write_png(root / name / f"{sample_id}.png", codes[name])
        ids.append(sample_id + "\n")
    _write_splits(root, ids, n_train, n_val, n_test)
    (root / "meta.json").write_text(
        _meta(
            seed,
            size,
            void_holes,
            format="folder",
            modalities=list(modalities),
            depth_scale=NYUDV2_DEPTH_SCALE,
        )
    )
    return root
