"""Running ``cenfusion train`` in child processes (torchrun, or one process to be killed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from cenfusion.config import Config

ROOT = Path(__file__).resolve().parents[2]


def child_env() -> dict[str, str]:
    """One thread per process (fast on 2 cores, and the same kernels as this test process);
    the package importable from the source tree."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    paths = [str(ROOT / "src"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


def write_config(config: Config, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config.to_dict()))
    return path


def train_command(config_file: Path, *extra: str, processes: int = 1) -> list[str]:
    if processes == 1:
        return [
            sys.executable,
            "-m",
            "cenfusion",
            "train",
            str(config_file),
            "--no-progress",
            *extra,
        ]
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={processes}", "-m", "cenfusion", "train", str(config_file),
        "--no-progress", *extra,
    ]  # fmt: skip


def run_training(config_file: Path, *extra: str, processes: int = 1, timeout: float = 300):
    result = subprocess.run(
        train_command(config_file, *extra, processes=processes),
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def final_weights(output_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(output_dir / "last.pt", map_location="cpu", weights_only=True)["model"]


def metrics(output_dir: Path) -> list[dict]:
    """The logged records without their wall-clock times."""
    records = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().split("\n")
               if line]  # fmt: skip
    for record in records:
        record.pop("seconds", None)
        record.pop("after_epoch_seconds", None)
    return records
