"""``cenfusion evaluate CONFIG --checkpoint CKPT``: metrics of every branch and the ensemble."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="evaluate a checkpoint on a split")
    parser.add_argument("config", help="YAML config file (data and model settings)")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides")
    parser.add_argument("--checkpoint", required=True, help="a cenfusion checkpoint (.pt)")
    parser.add_argument("--split", default="val", choices=("train", "val"))
    parser.add_argument("--scales", type=float, nargs="+", help="e.g. 0.75 1 1.25")
    parser.add_argument("--flip", action="store_true", help="add horizontally flipped inputs")
    parser.add_argument("--json", type=Path, help="write the scores here (default: next to CKPT)")
    parser.add_argument(
        "--save-images",
        type=Path,
        metavar="DIR",
        help="translation: also write every image to DIR/input{m}, fake{m}, fake{M} (the "
        "ensemble), real, as the public code lays them out",
    )
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cenfusion.config import load_config
    from cenfusion.engine.checkpoint import load_checkpoint, load_model_state
    from cenfusion.engine.segmentation import build_datasets, build_model, evaluate, format_scores

    config = load_config(args.config, args.overrides)
    if config.task == "translation":
        return _run_translation(config, args)
    if args.save_images:
        raise ValueError("--save-images applies to translation only")
    if args.scales:
        config.eval.scales = list(args.scales)
    if args.flip:
        config.eval.flip = True
    model = build_model(config)
    payload = load_checkpoint(args.checkpoint)
    load_model_state(model, payload["model"], args.checkpoint)
    dataset = build_datasets(config, (args.split,))[args.split]
    scores = evaluate(model, dataset, config, progress=not args.no_progress)
    scales = ", ".join(f"{s:g}" for s in config.eval.scales)
    title = f"{args.split} split, {len(dataset)} images, scales [{scales}]"
    title += ", flip" if config.eval.flip else ""
    print(format_scores(scores, title=title))
    out = args.json or Path(args.checkpoint).with_name(f"scores_{args.split}.json")
    out.write_text(json.dumps({name: s.as_dict() for name, s in scores.items()}, indent=2) + "\n")
    print(f"wrote {out}")
    if args.save_images:
        print(f"wrote the images to {args.save_images} (input*, fake*, real)")
    return 0


def _run_translation(config, args: argparse.Namespace) -> int:
    from cenfusion.engine.checkpoint import load_checkpoint, load_model_state
    from cenfusion.engine.translation import (
        build_datasets,
        build_model,
        evaluate,
        inception_features,
    )
    from cenfusion.metrics.image import format_image_scores

    if args.scales or args.flip:
        raise ValueError("--scales and --flip apply to segmentation only")
    features = inception_features(config, announce=False)  # the table says why FID is n/a
    model = build_model(config)
    payload = load_checkpoint(args.checkpoint)
    load_model_state(model, payload["model"], args.checkpoint)
    dataset = build_datasets(config, (args.split,))[args.split]
    scores = evaluate(
        model, dataset, config, features, not args.no_progress, save_dir=args.save_images
    )
    inputs = " + ".join(model.modalities)
    title = (
        f"{args.split} split, {len(dataset)} images, {inputs} -> {config.model.target}, "
        f"generator in {config.eval.generator_mode} mode"
    )
    print(format_image_scores(scores, title=title))
    out = args.json or Path(args.checkpoint).with_name(f"scores_{args.split}.json")
    out.write_text(json.dumps({name: s.as_dict() for name, s in scores.items()}, indent=2) + "\n")
    print(f"wrote {out}")
    if args.save_images:
        print(f"wrote the images to {args.save_images} (input*, fake*, real)")
    return 0
