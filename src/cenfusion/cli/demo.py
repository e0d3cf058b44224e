"""``cenfusion demo``: the whole segmentation pipeline on the built-in synthetic scenes.

Generates the NYUDv2-format synthetic set if it is absent, trains
``configs/synthetic_refinenet18.yaml`` (a few minutes on 2 CPU cores), evaluates every branch
and the ensemble, prints the table, and saves a prediction picture. ``make demo`` runs it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

DEFAULT_CONFIG = "configs/synthetic_refinenet18.yaml"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="generate synthetic RGB-D scenes, train CEN, evaluate, predict"
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides")
    parser.add_argument("--n-train", type=int, default=600)
    parser.add_argument("--n-val", type=int, default=100)
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cenfusion.config import load_config
    from cenfusion.data.synthetic.writers import write_nyudv2
    from cenfusion.engine.predict import load_trained_model, predict_files
    from cenfusion.engine.segmentation import (
        SegmentationTrainer,
        build_datasets,
        evaluate,
        format_scores,
    )

    start = time.perf_counter()
    config = load_config(args.config, args.overrides)
    root = Path(config.data.root)
    if not (root / config.data.train_list).is_file():
        print(f"generating {args.n_train} + {args.n_val} synthetic scenes in {root}")
        write_nyudv2(root, n_train=args.n_train, n_val=args.n_val, progress=not args.no_progress)
    trainer = SegmentationTrainer(config, resume=False, progress=not args.no_progress)
    trainer.fit()
    model = trainer.model
    dataset = build_datasets(config, ("val",))["val"]
    scores = evaluate(model, dataset, config, progress=not args.no_progress)
    print(
        format_scores(scores, title=f"\nCEN on synthetic RGB-D, {len(dataset)} validation scenes")
    )
    best_single = max(scores[m].mean_iou for m in model.modalities)
    ensemble = scores["ensemble"].mean_iou
    verdict = "beats" if ensemble > best_single else "does not beat"
    print(f"ensemble mIoU {ensemble:.2%} {verdict} the best single branch ({best_single:.2%})")
    model, trained_config = load_trained_model(Path(config.output_dir) / "last.pt")
    files = {name: path for name, path in dataset.files(0).items() if name != "label"}
    output = Path(config.output_dir) / "prediction.png"
    paths = predict_files(model, trained_config, files, output)
    print(f"prediction for {files['rgb'].name}: {', '.join(str(p) for p in paths.values())}")
    print(f"demo finished in {time.perf_counter() - start:.0f} s")
    return 0
