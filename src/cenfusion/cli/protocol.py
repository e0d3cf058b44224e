"""``cenfusion protocol run|plan|report PROTOCOL``: a benchmark protocol's tuning sweep and
paired seeds (:mod:`cenfusion.experiments.protocol`).

``run`` trains what is missing (resumable; ``--limit-s``, Ctrl-C or SIGTERM stop it and its
runs cleanly, with exit status 130 for a signal), ``plan`` prints the runs missing now with
the command of each (both: ``--only`` some families or methods), ``report`` writes the tables
from the results folder (``RESULTS/README.md`` and the protocol's ``report_copies``, unless
``--markdown`` says where instead) and, with matplotlib, the exchange over training of every
exchanging method's seed-0 run (``RESULTS/exchange/<setting>_<method>.png``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from cenfusion.analysis.plots import plot_exchange_history
from cenfusion.cli.train import INTERRUPTED_EXIT_CODE
from cenfusion.engine.checkpoint import write_text_atomic
from cenfusion.engine.faults import TrainingInterrupted
from cenfusion.experiments.protocol import Cell, Protocol, exchange_cells, format_protocol


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "protocol",
        help="a benchmark protocol: the same tuning sweep for every family, then paired seeds",
    )
    parser.add_argument("action", choices=["run", "plan", "report"])
    parser.add_argument("protocol", help="protocol YAML file (experiments/protocols/*.yaml)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (run; default 1)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads of each run (run; default: all)"
    )
    parser.add_argument(
        "--limit-s",
        type=float,
        default=None,
        help="stop after this many seconds (run); cut runs resume next time",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        default=[],
        metavar="NAME",
        help="run, plan: only these families or methods (e.g. cen-exchange-early)",
    )
    parser.add_argument(
        "--markdown", default=None, help="report: write here (default: RESULTS/README.md)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    protocol = Protocol.load(args.protocol)
    if args.only and args.action == "report":
        raise ValueError("--only: a choice of runs for run and plan; report reads them all")
    if args.action == "run":
        try:
            finished = protocol.run(
                jobs=args.jobs, threads=args.threads, limit_s=args.limit_s, only=args.only
            )
        except TrainingInterrupted as interrupted:
            print(f"cenfusion protocol run: {interrupted}", file=sys.stderr)
            return INTERRUPTED_EXIT_CODE
        cells = protocol.plan(args.only)
        print(f"{finished} run(s) finished; {len(cells)} missing")
        print_waiting(protocol, args.only, cells)
    elif args.action == "plan":
        cells = protocol.plan(args.only)
        for cell in cells:
            print(f"# {cell.family}: {cell.method} {cell.setting_name} seed {cell.seed} "
                  f"({cell.purpose})")  # fmt: skip
            print(shlex.join(protocol.cell_command(cell)))
        print(f"{len(cells)} run(s) missing now (later tuning rounds wait for these)")
        print_waiting(protocol, args.only, cells)
        return 0
    text = format_protocol(protocol, protocol.report())
    targets = (
        [Path(args.markdown)]
        if args.markdown
        else [protocol.results / "README.md", *protocol.report_copies]
    )
    print(text)
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(target, text)
        print(f"wrote {target}")
    figures = [(setting, r) for setting, r in exchange_cells(protocol) if r["seed"] == 0]
    if figures:
        try:
            import matplotlib  # noqa: F401, PLC0415 (optional: the plot extra)
        except ImportError:
            print("no exchange figures: they need matplotlib (pip install 'cenfusion[plot]')")
            return 0
        for setting, result in figures:
            path = protocol.results / "exchange" / f"{setting}_{result['method']}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            plot_exchange_history(result["epochs"], protocol.modalities, path)
        print(f"wrote {len(figures)} exchange figure(s) in {protocol.results / 'exchange'}")
    return 0


def print_waiting(protocol: Protocol, only: list[str], planned: list[Cell]) -> None:
    """Say so where ``--only`` leaves nothing to run (``planned``: its plan) while other runs
    are missing: a later tuning round, or a family that takes another's setting, may wait for
    them."""
    if only and not planned:
        others = len(protocol.plan())
        if others:
            print(
                f"{others} run(s) outside --only are missing; a later tuning round of "
                f"{', '.join(only)}, or a family that takes another's setting, may wait for them"
            )
