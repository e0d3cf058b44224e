"""The package as ``pip install`` gives it: a wheel, used outside the source checkout.

The wheel is built from the repository and unpacked into a folder of its own, which is put first
on the path of a fresh interpreter (its dependencies come from this environment); the demo then
runs, shrunk, in an empty folder: the shipped configs must come from the installed package and
nothing may be read from the checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*command: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A folder holding the wheel's contents (``pip install --target``)."""
    folder = tmp_path_factory.mktemp("wheel")
    wheels = folder / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
        "-w", str(wheels), str(ROOT), cwd=folder)  # fmt: skip
    (wheel,) = wheels.glob("cenfusion-*.whl")
    target = folder / "site"
    run(sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
        str(wheel), cwd=folder)  # fmt: skip
    return target


def environment(site: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}


def test_the_wheel_carries_the_shipped_configs(installed):
    configs = sorted(p.stem for p in (installed / "cenfusion" / "configs").glob("*.yaml"))
    assert {
        "synthetic_rgb_normal",
        "synthetic_refinenet18",
        "synthetic_shade_texture_to_rgb",
    } <= set(configs)


def test_the_installed_demo_runs_in_an_empty_folder(installed, tmp_path):
    env = environment(installed)
    where = run(sys.executable, "-c", "import cenfusion; print(cenfusion.__file__)",
                cwd=tmp_path, env=env)  # fmt: skip
    assert Path(where.strip()).is_relative_to(installed)  # not the checkout's source
    output = run(
        sys.executable, "-m", "cenfusion", "demo", "--n-train", "4", "--n-val", "2",
        "--n-test", "1",
        "--no-progress", "data.crop_size=[48, 64]", "train.batch_size=2",
        "train.max_steps_per_epoch=1", "train.eval_every=0",
        "optim.stages=[{epochs: 1, encoder_lr: 0.01, decoder_lr: 0.01}]",
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert "demo finished" in output
    assert (tmp_path / "runs" / "synthetic_rgb_normal" / "prediction.png").is_file()
    assert (tmp_path / "data" / "bench-rgb-normal" / "train.txt").is_file()


def test_bench_outside_a_checkout_says_it_needs_one(installed, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "cenfusion", "bench", "--quick"],
        cwd=tmp_path, env=environment(installed), capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2
    assert "source checkout" in done.stderr
