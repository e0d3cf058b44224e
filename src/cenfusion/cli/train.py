"""``cenfusion train CONFIG [key=value ...]``: train the model a config describes.

On several processes: ``torchrun --standalone --nproc_per_node N -m cenfusion train CONFIG``
(see :mod:`cenfusion.engine.distributed`). Ctrl-C saves a checkpoint of the current step and
exits with status 130; ``--resume`` continues from it.
"""

from __future__ import annotations

import argparse
import sys

from cenfusion.config import load_config
from cenfusion.engine import distributed
from cenfusion.engine.faults import TrainingInterrupted
from cenfusion.tasks import get_task

INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, as shells report a Ctrl-C


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model from a YAML config (several processes: torchrun -m cenfusion train)",
    )
    parser.add_argument(
        "config",
        help="a YAML config file, or the name of a shipped config (e.g. synthetic_refinenet18)",
    )
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides")
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        help="continue from output_dir/last.pt (or the checkpoint given)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    task = get_task(config.task)
    try:
        trainer = task.trainer(config, resume=args.resume, progress=not args.no_progress)
        history = trainer.fit()
        if not distributed.is_main():
            return 0
        print(f"\ncheckpoints, metrics.jsonl and samples/ in {config.output_dir}")
        if history and "val" in history[-1]:
            final = task.scores_from_record(history[-1]["val"])
            print(task.format_scores(final, title="final validation"))
        return 0
    except TrainingInterrupted as interrupted:
        if distributed.is_main():
            print(f"cenfusion train: {interrupted}", file=sys.stderr)
        return INTERRUPTED_EXIT_CODE
    finally:
        distributed.teardown()
