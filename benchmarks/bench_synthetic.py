"""Benchmark the synthetic scene generator: time per scene and for 1,000 scenes.

Run ``python benchmarks/bench_synthetic.py [--n 1000]``; prints a table and writes
``benchmarks/results/synthetic.json``. The target: 1,000 scenes at 120x160 (all modalities)
in under a minute on a 2-core CPU. Rendering is single-threaded NumPy; CPU time is recorded
beside wall time because a shared machine inflates the latter.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from cenfusion.data.synthetic import MODALITIES, SyntheticScenes, render_codes
from cenfusion.data.synthetic.writers import write_nyudv2, write_taskonomy

RESULTS = Path(__file__).resolve().parent / "results" / "synthetic.json"


def _time_render(n: int, size: tuple[int, int], modalities: tuple[str, ...]) -> dict[str, float]:
    times = []
    start, cpu_start = time.perf_counter(), time.process_time()
    for i in range(n):
        t0 = time.perf_counter()
        render_codes(0, i, size, modalities)
        times.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    return {
        "scenes": n,
        "total_s": total,
        "cpu_s": time.process_time() - cpu_start,
        "mean_ms": 1e3 * total / n,
        "median_ms": 1e3 * statistics.median(times),
        "p95_ms": 1e3 * float(np.percentile(times, 95)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000, help="scenes for the main measurement")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    rows = []
    render_codes(0, 0, (120, 160))  # warm the ray cache and imports
    cases = [
        ("render, all modalities", (120, 160), MODALITIES, args.n),
        ("render, rgb + depth", (120, 160), ("rgb", "depth"), args.n // 4),
        ("render, all modalities", (60, 80), MODALITIES, args.n // 4),
        ("render, all modalities", (240, 320), MODALITIES, args.n // 10),
    ]
    for what, size, modalities, n in cases:
        rows.append({"what": what, "size": list(size), **_time_render(max(n, 1), size, modalities)})

    data = SyntheticScenes(max(args.n // 4, 1), MODALITIES, size=(120, 160))
    start = time.perf_counter()
    for i in range(len(data)):
        data[i]
    total = time.perf_counter() - start
    rows.append(
        {
            "what": "SyntheticScenes[i] (tensors)",
            "size": [120, 160],
            "scenes": len(data),
            "total_s": total,
            "mean_ms": 1e3 * total / len(data),
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name, write in (("nyudv2", write_nyudv2), ("taskonomy", write_taskonomy)):
            n = max(args.n // 10, 1)
            start = time.perf_counter()
            write(Path(tmp) / name, n, 0, size=(120, 160), progress=False)
            total = time.perf_counter() - start
            rows.append(
                {
                    "what": f"write {name} folder",
                    "size": [120, 160],
                    "scenes": n,
                    "total_s": total,
                    "mean_ms": 1e3 * total / n,
                }
            )

    print(f"{'what':32s} {'size':>9s} {'scenes':>6s} {'total s':>8s} {'ms/scene':>9s}")
    for row in rows:
        size = "x".join(map(str, row["size"]))
        print(
            f"{row['what']:32s} {size:>9s} {row['scenes']:6d} {row['total_s']:8.2f} "
            f"{row['mean_ms']:9.2f}"
        )
    main_row = rows[0]
    per_1000 = main_row["mean_ms"]  # ms per scene = s per 1,000 scenes
    print(
        f"\n1,000 scenes at 120x160, all modalities: {per_1000:.1f} s wall, "
        f"{1e3 * main_row['cpu_s'] / main_row['scenes']:.1f} s CPU (target < 60 s)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "synthetic scenes",
                "machine": {
                    "platform": platform.platform(),
                    "python": platform.python_version(),
                    "numpy": np.__version__,
                    "cpus": os.cpu_count(),
                },
                "seconds_per_1000_scenes_120x160": per_1000,
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
