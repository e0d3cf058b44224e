"""Does a model *trained* with ``train.speed: fast`` score like one trained with ``exact``?

    python -m benchmarks.fast_training CONFIG [KEY=VALUE ...] [--methods cen] [--seeds 3]
        [--output runs/fast-training] [--threads 1]
        [--json benchmarks/results/fast_training_<host>.json]

Trains every method twice per seed through ``cenfusion compare`` (resumable: finished runs are
kept in OUTPUT/<speed>/results), once with ``exact`` and once with ``fast`` (this host's choice,
printed: bf16 autocast with channels_last where the host has bf16 hardware, else fp32 and the
two are the same computation), with the same seeds, so the test mIoU difference is paired seed
by seed. Prints a table (means with 95 % intervals, the paired difference fast - exact with
its interval, training minutes) and writes JSON with the machine's facts. Training times are
only comparable when nothing else runs on the host; the scores are comparable under any load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from cenfusion.engine.speed import choose_settings, host_capabilities
from cenfusion.experiments.runner import machine_info
from cenfusion.experiments.statistics import mean_interval, paired_difference

SPEEDS = ("exact", "fast")


def train(config: str, overrides: list[str], speed: str, methods: list[str], seeds: int,
          output: Path, threads: int | None) -> Path:  # fmt: skip
    """Run (or continue) the grid of one speed; returns its results folder."""
    results = output / speed / "results"
    command = [
        sys.executable, "-m", "cenfusion", "compare", config, *overrides, f"train.speed={speed}",
        "--methods", *methods, "--seeds", str(seeds), "--output", str(output / speed),
        "--results", str(results), "--no-progress",
    ]  # fmt: skip
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, check=True, env=env)
    return results


def read_runs(results: Path, method: str) -> dict[int, dict]:
    """``{seed: run JSON}`` of the finished runs of ``method``."""
    runs = {}
    for path in sorted((results / method).glob("seed*.json")):
        run = json.loads(path.read_text())
        if run.get("status") == "ok":
            runs[int(run["seed"])] = run
    return runs


def summarise(folders: dict[str, Path], methods: list[str]) -> list[dict]:
    rows = []
    for method in methods:
        runs = {speed: read_runs(folders[speed], method) for speed in SPEEDS}
        miou = {
            speed: {s: 100 * r["test_scores"]["ensemble"]["mean_iou"] for s, r in found.items()}
            for speed, found in runs.items()
        }
        minutes = {
            speed: {s: r["train_seconds"] / 60 for s, r in found.items()}
            for speed, found in runs.items()
        }
        if not all(miou.values()):
            continue
        difference = paired_difference(miou["fast"], miou["exact"])
        rows.append({
            "method": method,
            "seeds": sorted(set(miou["exact"]) & set(miou["fast"])),
            "test_miou": {speed: mean_interval(list(v.values())).as_dict()
                          for speed, v in miou.items()},
            "fast_minus_exact": difference.as_dict() if difference else None,
            "train_minutes": {speed: mean_interval(list(v.values())).mean
                              for speed, v in minutes.items()},
            "per_seed": {speed: {str(s): v for s, v in values.items()}
                         for speed, values in miou.items()},
        })  # fmt: skip
    return rows


def interval_text(interval: dict) -> str:
    if interval["half_width"] is None:
        return f"{interval['mean']:.2f}"
    return f"{interval['mean']:.2f} ± {interval['half_width']:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides")
    parser.add_argument("--methods", nargs="+", default=["cen"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=Path("runs/fast-training"))
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    fast = choose_settings("training", "fast", host_capabilities())
    machine = machine_info()
    print(f"host: {machine['processor']} ({machine['cpu_capability']}); "
          f"fast = {fast.describe()}", flush=True)  # fmt: skip
    folders = {
        speed: train(
            args.config, args.overrides, speed, args.methods, args.seeds, args.output, args.threads
        )  # fmt: skip
        for speed in SPEEDS
    }
    rows = summarise(folders, args.methods)
    print(f"\n{'method':<16}{'exact mIoU':>16}{'fast mIoU':>16}{'fast - exact':>16}"
          f"{'min exact':>11}{'min fast':>10}")  # fmt: skip
    for row in rows:
        difference = row["fast_minus_exact"]
        minutes = row["train_minutes"]
        print(f"{row['method']:<16}{interval_text(row['test_miou']['exact']):>16}"
              f"{interval_text(row['test_miou']['fast']):>16}"
              f"{interval_text(difference) if difference else '—':>16}"
              f"{minutes['exact']:>11.1f}{minutes['fast']:>10.1f}")  # fmt: skip
    if args.json:
        result = {
            "config": args.config,
            "overrides": args.overrides,
            "fast_settings": fast.describe(),
            "host": host_capabilities().__dict__,
            "machine": machine,
            "rows": rows,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
