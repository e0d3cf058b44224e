"""The redesign changed no result: short deterministic runs give the records they gave before.

``golden_metrics/`` holds the ``metrics.jsonl`` (timings removed) that the code before the task
objects wrote for the runs of ``golden_runs.py``: segmentation with CEN, without exchange (the
Theorem-1 monitor), concat fusion, alignment fusion with accumulated micro-batches, PSPNet with
frozen statistics and the per-output L1 term; translation with and without exchange and with
accumulation and the generator in training mode for evaluation. Today's code must reproduce
every number (to float rounding; on the CPU they have been bit-identical).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.tasks import golden_runs

GOLDEN = Path(__file__).parent / "golden_metrics"


# record entries added after the recording (new measurements, not changed ones)
ADDED = {"penalised_below_theta"}


def assert_close(actual, expected, where: str) -> None:
    """Equal structure; numbers equal to a relative 1e-5 (1e-9 absolute), NaN to NaN."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), where
        assert sorted(set(actual) - ADDED) == sorted(expected), where
        for key in expected:
            assert_close(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_close(a, e, f"{where}[{index}]")
    elif isinstance(expected, float) and math.isnan(expected):
        assert isinstance(actual, float) and math.isnan(actual), f"{where}: {actual} != nan"
    elif isinstance(expected, float) or isinstance(actual, float):
        assert math.isclose(actual, expected, rel_tol=1e-5, abs_tol=1e-9), (
            f"{where}: {actual} != {expected}"
        )
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("golden")
    (folder / "data").mkdir()
    golden_runs.make_data(folder / "data")
    return folder


@pytest.mark.parametrize("name", sorted(golden_runs.RUNS))
def test_run_reproduces_recorded_metrics(work: Path, name: str) -> None:
    expected = [json.loads(line) for line in (GOLDEN / f"{name}.jsonl").read_text().splitlines()]
    actual = golden_runs.train(name, work)
    assert_close(actual, expected, name)


def test_every_run_has_a_recording() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.jsonl")) == sorted(golden_runs.RUNS)
