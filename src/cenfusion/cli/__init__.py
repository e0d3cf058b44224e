"""The ``cenfusion`` command: a thin dispatcher over one module per sub-command.

Each sub-command module exposes ``add_parser(subparsers)``, which registers its parser and sets
``func`` (a callable taking the parsed namespace and returning an exit code).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cenfusion.cli import (
    bench,
    compare,
    demo,
    evaluate,
    export,
    inspect,
    official,
    predict,
    prepare,
    protocol,
    synth,
    train,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cenfusion", description="Multimodal fusion by channel exchanging (CEN)."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (
        demo,
        synth,
        prepare,
        train,
        evaluate,
        predict,
        compare,
        protocol,
        inspect,
        export,
        official,
    ):
        module.add_parser(subparsers)
    bench.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if hasattr(args, "overrides"):  # key=value overrides may also follow the options
        args.overrides += [token for token in extra if "=" in token and not token.startswith("-")]
        extra = [token for token in extra if token not in args.overrides]
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError, RuntimeError) as error:  # one line, naming the culprit
        print(f"cenfusion {args.command}: error: {error}", file=sys.stderr)
        return 2
