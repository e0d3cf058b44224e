"""``cenfusion demo``: the whole segmentation pipeline on the built-in synthetic scenes.

Generates the built-in scenes as RGB + depth + surface normals in the folder layout if they are
absent (the benchmark's set: 600 training, 100 validation, 200 test scenes), trains the shipped
config ``synthetic_rgb_normal`` (CEN on RGB + normals with a learned exchange, about 5 minutes
on 2 CPU cores), evaluates every branch and the ensemble, prints the table and what each
exchange site gave away, and saves a prediction picture and the paper's scaling-factor figures.
``make demo`` runs it; it needs nothing but the installed package (data and runs go below the
current directory).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cenfusion.analysis import (
    format_statistics,
    scaling_factors,
    site_statistics,
    site_thresholds,
)
from cenfusion.analysis.plots import plot_exchange_history, plot_scaling_factors
from cenfusion.config import load_config
from cenfusion.data.synthetic.preview import colorize
from cenfusion.data.synthetic.writers import write_folder
from cenfusion.tasks import get_task, load_trained

DEFAULT_CONFIG = "synthetic_rgb_normal"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="generate synthetic RGB + normal scenes, train CEN, evaluate, predict"
    )
    parser.add_argument(
        "--config", default=DEFAULT_CONFIG, help="a config file or a shipped config's name"
    )
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides")
    parser.add_argument("--n-train", type=int, default=600)
    parser.add_argument("--n-val", type=int, default=100)
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    config = load_config(args.config, args.overrides)
    task = get_task(config.task)
    root = Path(config.data.root)
    if not (root / config.data.train_list).is_file():
        print(
            f"generating {args.n_train} + {args.n_val} + {args.n_test} synthetic scenes in {root}"
        )
        write_folder(
            root,
            ("rgb", "depth", "normal"),
            n_train=args.n_train,
            n_val=args.n_val,
            n_test=args.n_test,
            progress=not args.no_progress,
        )
    trainer = task.trainer(config, resume=False, progress=not args.no_progress)
    trainer.fit()
    model = trainer.model
    dataset = task.build_datasets(config, ("val",))["val"]
    scores = task.evaluate(model, dataset, config, progress=not args.no_progress)
    title = f"\nCEN on the synthetic scenes ({' + '.join(model.modalities)}), "
    print(task.format_scores(scores, title=title + f"{len(dataset)} validation scenes"))
    best_single = max(scores[m].mean_iou for m in model.modalities)
    ensemble = scores["ensemble"].mean_iou
    verdict = "beats" if ensemble > best_single else "does not beat"
    print(f"ensemble mIoU {ensemble:.2%} {verdict} the best single branch ({best_single:.2%})")

    output = Path(config.output_dir)
    print("\nwhat each exchange site gave away (|γ| < θ), per modality:")
    theta = config.model.bn_threshold  # also where a site does not exchange (exchange_stages)
    print(format_statistics(site_statistics(model, theta)))
    figures = output / "gammas.png"
    plot_scaling_factors(
        scaling_factors(model),
        tuple(model.modalities),
        site_thresholds(model, theta),
        None,
        figures,
    )
    records = (output / "metrics.jsonl").read_text().splitlines()
    history = output / "exchange.png"
    plot_exchange_history([json.loads(r) for r in records], tuple(model.modalities), history)
    print(f"scaling factors: {figures}; exchange over training: {history}")

    task, model, trained_config = load_trained(output / "last.pt")
    panels = []
    for index in range(min(3, len(dataset))):
        files = {name: path for name, path in dataset.files(index).items() if name != "label"}
        target = output / "predictions" / f"{dataset.sample_id(index)}.png"
        paths = task.predict_files(model, trained_config, files, target)
        panels.append(_panel(dataset, index, tuple(model.modalities), paths["labels"]))
    picture = output / "prediction.png"
    _save_rows(panels, picture)
    shown = " | ".join(model.modalities)
    print(f"prediction picture ({shown} | ground truth | ensemble prediction): {picture}")
    print(f"demo finished in {time.perf_counter() - start:.0f} s")
    return 0


def _display(stored: np.ndarray) -> np.ndarray:
    """A stored input as an (H, W, 3) uint8 picture: colour images as they are, a single
    channel (depth, thermal, ...) colour-coded over its valid (> 0) range."""
    if stored.ndim == 3 and stored.shape[2] == 3 and stored.dtype == np.uint8:
        return stored
    return colorize("depth", stored.astype(np.float64).reshape(stored.shape[:2]))


def _panel(dataset, index: int, modalities: tuple[str, ...], labels_png: Path) -> np.ndarray:
    """One row: each input, the ground truth and the ensemble's prediction."""
    stored = dataset.read(index)
    pictures = [_display(np.asarray(stored[m])) for m in modalities]
    pictures.append(colorize("label", np.asarray(stored["label"])))
    pictures.append(colorize("label", np.asarray(Image.open(labels_png))))
    gap = np.full((pictures[0].shape[0], 4, 3), 255, dtype=np.uint8)
    return np.concatenate([p for picture in pictures for p in (picture, gap)][:-1], axis=1)


def _save_rows(rows, path: Path) -> None:
    gap = np.full((4, rows[0].shape[1], 3), 255, dtype=np.uint8)
    stacked = [part for row in rows for part in (row, gap)][:-1]
    Image.fromarray(np.concatenate(stacked, axis=0)).save(path)
