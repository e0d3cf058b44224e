"""``cenfusion demo``: the whole segmentation pipeline on the built-in synthetic scenes.

Generates the NYUDv2-format synthetic set if it is absent, trains the shipped config
``synthetic_refinenet18`` (a few minutes on 2 CPU cores), evaluates every branch and the
ensemble, prints the table, and saves a prediction picture. ``make demo`` runs it; it needs
nothing but the installed package (data and runs go below the current directory).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cenfusion.config import load_config
from cenfusion.data.synthetic.preview import colorize
from cenfusion.data.synthetic.writers import write_nyudv2
from cenfusion.tasks import get_task, load_trained

DEFAULT_CONFIG = "synthetic_refinenet18"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="generate synthetic RGB-D scenes, train CEN, evaluate, predict"
    )
    parser.add_argument(
        "--config", default=DEFAULT_CONFIG, help="a config file or a shipped config's name"
    )
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides")
    parser.add_argument("--n-train", type=int, default=600)
    parser.add_argument("--n-val", type=int, default=100)
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    config = load_config(args.config, args.overrides)
    task = get_task(config.task)
    root = Path(config.data.root)
    if not (root / config.data.train_list).is_file():
        print(f"generating {args.n_train} + {args.n_val} synthetic scenes in {root}")
        write_nyudv2(root, n_train=args.n_train, n_val=args.n_val, progress=not args.no_progress)
    trainer = task.trainer(config, resume=False, progress=not args.no_progress)
    trainer.fit()
    model = trainer.model
    dataset = task.build_datasets(config, ("val",))["val"]
    scores = task.evaluate(model, dataset, config, progress=not args.no_progress)
    title = f"\nCEN on synthetic RGB-D, {len(dataset)} validation scenes"
    print(task.format_scores(scores, title=title))
    best_single = max(scores[m].mean_iou for m in model.modalities)
    ensemble = scores["ensemble"].mean_iou
    verdict = "beats" if ensemble > best_single else "does not beat"
    print(f"ensemble mIoU {ensemble:.2%} {verdict} the best single branch ({best_single:.2%})")
    task, model, trained_config = load_trained(Path(config.output_dir) / "last.pt")
    panels = []
    for index in range(min(3, len(dataset))):
        files = {name: path for name, path in dataset.files(index).items() if name != "label"}
        output = Path(config.output_dir) / "predictions" / f"{dataset.sample_id(index)}.png"
        paths = task.predict_files(model, trained_config, files, output)
        panels.append(_panel(dataset, index, paths["labels"]))
    picture = Path(config.output_dir) / "prediction.png"
    _save_rows(panels, picture)
    print(f"prediction picture (rgb | depth | ground truth | ensemble prediction): {picture}")
    print(f"demo finished in {time.perf_counter() - start:.0f} s")
    return 0


def _panel(dataset, index: int, labels_png: Path):
    """One row: the RGB input, the colourised depth, the ground truth and the prediction."""
    stored = dataset.read(index)
    rgb = np.asarray(stored["rgb"], dtype=np.uint8)
    depth = colorize("depth", np.asarray(stored["depth"], dtype=np.float64)[..., 0])
    truth = colorize("label", np.asarray(stored["label"]))
    predicted = colorize("label", np.asarray(Image.open(labels_png)))
    gap = np.full((rgb.shape[0], 4, 3), 255, dtype=np.uint8)
    return np.concatenate([rgb, gap, depth, gap, truth, gap, predicted], axis=1)


def _save_rows(rows, path: Path) -> None:
    gap = np.full((4, rows[0].shape[1], 3), 255, dtype=np.uint8)
    stacked = [part for row in rows for part in (row, gap)][:-1]
    Image.fromarray(np.concatenate(stacked, axis=0)).save(path)
