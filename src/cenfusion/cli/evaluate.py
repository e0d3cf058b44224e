"""``cenfusion evaluate [CONFIG] --checkpoint CKPT``: metrics of every branch and the ensemble.

Without CONFIG the checkpoint's own config is used (with any ``key=value`` overrides, e.g.
``data.root=...``), so the model sees its inputs as in training; with one, where it differs
from training's in the model or the preprocessing a warning names each setting.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cenfusion.config import Config, apply_override, config_from_dict, load_config
from cenfusion.engine.checkpoint import checkpoint_config, load_checkpoint
from cenfusion.tasks import EvaluateOptions, get_task


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="evaluate a checkpoint on a split")
    parser.add_argument(
        "config",
        nargs="?",
        help="YAML config file or a shipped config's name (data and model settings); default: "
        "the one the checkpoint was trained with",
    )
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides")
    parser.add_argument("--checkpoint", required=True, help="a cenfusion checkpoint (.pt)")
    parser.add_argument("--split", default="val", choices=("train", "val", "test"))
    parser.add_argument("--scales", type=float, nargs="+", help="e.g. 0.75 1 1.25")
    parser.add_argument("--flip", action="store_true", help="add horizontally flipped inputs")
    parser.add_argument(
        "--json",
        type=Path,
        help="write the scores here (default: next to CKPT, scores_<split>.json; with --drop, "
        "--exchange-off or --speed fast, a name that says so, e.g. scores_val_without_depth.json)",
    )
    parser.add_argument(
        "--save-images",
        type=Path,
        metavar="DIR",
        help="translation: also write every image to DIR/input{m}, fake{m}, fake{M} (the "
        "ensemble), real, as the public code lays them out",
    )
    parser.add_argument(
        "--drop",
        nargs="+",
        default=(),
        metavar="MODALITY",
        help="score without these modalities (a camera missing): the others' branches and "
        "their ensemble",
    )
    parser.add_argument(
        "--exchange-off",
        nargs="+",
        default=(),
        metavar="SITE",
        help="switch the exchange off at these sites: a site's name or dotted part of it, "
        "e.g. a stage (layer1); the drop in the scores is what their exchange carries",
    )
    parser.add_argument(
        "--speed",
        choices=("exact", "fast"),
        default="exact",
        help="fast: this host's fastest settings for inference (bf16 + channels_last with bf16 "
        "hardware, else fp32); the title says what was chosen",
    )
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # `--drop depth train.x=1`: a list option swallowed the overrides that followed it
    args.overrides += [t for t in args.drop if "=" in t]
    args.drop = [t for t in args.drop if "=" not in t]
    args.overrides += [t for t in args.exchange_off if "=" in t]
    args.exchange_off = [t for t in args.exchange_off if "=" not in t]
    if args.config is not None and "=" in args.config:  # an override; no config given
        args.overrides.insert(0, args.config)
        args.config = None
    state = None  # the weights, where the config's reading has read them already
    if args.config is None:
        payload = load_checkpoint(args.checkpoint)
        config = trained_config(payload, args.checkpoint, args.overrides)
        state = payload["model"]
    else:
        config = load_config(args.config, args.overrides)
    task = get_task(config.task)
    options = EvaluateOptions(
        tuple(args.scales) if args.scales else None,
        args.flip,
        args.save_images,
        tuple(args.drop),
        args.speed,
        tuple(args.exchange_off),
    )
    scores, title = task.evaluate_checkpoint(
        config, args.checkpoint, args.split, options, progress=not args.no_progress, state=state
    )
    print(task.format_scores(scores, title=title))
    file_name = f"scores_{args.split}{options.file_suffix()}.json"
    out = args.json or Path(args.checkpoint).with_name(file_name)
    out.write_text(json.dumps({name: s.as_dict() for name, s in scores.items()}, indent=2) + "\n")
    print(f"wrote {out}")
    if args.save_images:
        print(f"wrote the images to {args.save_images} (input*, fake*, real)")
    return 0


def trained_config(payload: dict[str, Any], checkpoint: str | Path, overrides: list[str]) -> Config:
    """The config the checkpoint ``payload`` (read from ``checkpoint``) was trained with,
    ``overrides`` applied."""
    data = checkpoint_config(payload, checkpoint).to_dict()
    for override in overrides:
        apply_override(data, override)
    return config_from_dict(data, where=f"{checkpoint}:config")
