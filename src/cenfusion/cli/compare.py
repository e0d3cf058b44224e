"""``cenfusion compare CONFIG --methods ... --seeds N``: CEN against baselines and ablations.

Trains every listed method (see :mod:`cenfusion.experiments.variants`) with the config's data,
schedule and budget for each seed, evaluates it, and writes ``results.md`` and
``results.json`` in ``--output`` (default ``<output_dir>/compare``). Rerunning skips finished
runs and resumes a run that was cut off.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
from pathlib import Path

from cenfusion.experiments import Comparison


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare", help="train CEN, its ablations and fusion baselines with one budget; tabulate"
    )
    parser.add_argument("config", help="YAML config file: data, schedule and budget of every run")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides for every run")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["all"],
        help="method names or groups: cen, unimodal, <concat|average|align|self-attention>-"
        "<early|middle|late|all>, unshared-convs, shared-bn, private-bn, private-bn-l1, "
        "cen-l1-all; groups baselines, ablations, all (default)",
    )
    parser.add_argument("--seeds", type=int, default=3, help="runs per method (seeds 0..N-1)")
    parser.add_argument("--output", default=None, help="folder of the grid (default: OUT/compare)")
    parser.add_argument("--markdown", default=None, help="also copy the table to this file")
    parser.add_argument("--retry-failed", action="store_true", help="rerun diverged or failed runs")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="write the tables from the finished runs without training (the rest: pending)",
    )
    parser.add_argument(
        "--results",
        default=None,
        metavar="DIR",
        help="keep each run's scores as DIR/<method>/seed<k>.json (small, to commit) and continue "
        "the grid from the ones found there",
    )
    parser.add_argument(
        "--only-seed",
        type=int,
        nargs="+",
        default=None,
        metavar="K",
        help="train only these seeds (0-based); the tables show the other seeds as found",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="train this many runs at once, each in its own process (a GPU shares itself "
        "between them; on a 2-core CPU keep 1)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.seeds < 1:
        raise ValueError(f"--seeds: expected at least 1, got {args.seeds}")
    outside = [k for k in args.only_seed or [] if not 0 <= k < args.seeds]
    if outside:
        raise ValueError(f"--only-seed {outside}: expected seeds in 0..{args.seeds - 1}")
    command = ["cenfusion", "compare", args.config, *args.overrides]
    command += ["--methods", *args.methods, "--seeds", str(args.seeds)]
    if args.output:
        command += ["--output", args.output]
    if args.results:
        command += ["--results", args.results]
    if args.markdown:
        command += ["--markdown", args.markdown]
    # the recorded command reproduces the table (without --report-only it trains what is missing)
    comparison = Comparison(
        config_path=args.config,
        methods=args.methods,
        seeds=args.seeds,
        output_dir=args.output,
        overrides=args.overrides,
        retry_failed=args.retry_failed,
        report_only=args.report_only,
        progress=not args.no_progress,
        command=shlex.join(command),
        results_dir=args.results,
        only_seeds=args.only_seed,
    )
    if args.jobs > 1:
        comparison.run_parallel(args.jobs)
    else:
        comparison.run()
    directory = comparison.directory()
    table = (directory / "results.md").read_text()
    print(table)
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(directory / "results.md", args.markdown)
    print(f"results.md and results.json in {directory}")
    return 0
