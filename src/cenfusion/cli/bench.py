"""``cenfusion bench [OPTIONS]``: the benchmark suite of a source checkout.

The suite lives in ``benchmarks/`` beside ``src/``, which is not installed (it is timing code,
never imported by the library), so this command works from a checkout (an editable install, or
the current directory) and otherwise says so. Every option is passed on unchanged to
``python -m benchmarks.run``; ``cenfusion bench --help`` prints them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cenfusion


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="time the models against the list-of-tensors design and the unimodal network "
        "(source checkouts only: benchmarks/ is not installed; same as python -m benchmarks.run)",
        add_help=False,  # --help is the suite's own
    )
    parser.set_defaults(func=run, accepts_extra=True)


def find_checkout() -> Path | None:
    """The repository root holding ``benchmarks/run.py``: the current directory's, or that of
    an editable install of cenfusion."""
    candidates = [Path.cwd(), Path(cenfusion.__file__).resolve().parents[2]]
    for root in candidates:
        if (root / "benchmarks" / "run.py").is_file():
            return root
    return None


def run(args: argparse.Namespace) -> int:
    root = find_checkout()
    if root is None:
        raise RuntimeError(
            "the benchmark suite is not installed with the package: run cenfusion bench (or "
            "python -m benchmarks.run) from a source checkout of cenfusion"
        )
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from benchmarks.run import main

    return main(args.extra, prog="cenfusion bench")
