"""The fast-against-exact training summary: paired differences over the seeds both speeds have."""

import json

import pytest

from benchmarks.fast_training import summarise


def write_run(folder, method, seed, miou, seconds, status="ok"):
    path = folder / method / f"seed{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    run = {"seed": seed, "status": status, "train_seconds": seconds,
           "test_scores": {"ensemble": {"mean_iou": miou}}}  # fmt: skip
    path.write_text(json.dumps(run))


def test_the_difference_is_paired_seed_by_seed(tmp_path):
    folders = {speed: tmp_path / speed for speed in ("exact", "fast")}
    for seed, exact, fast in [(0, 0.50, 0.52), (1, 0.60, 0.61), (2, 0.70, 0.70)]:
        write_run(folders["exact"], "cen", seed, exact, 600)
        write_run(folders["fast"], "cen", seed, fast, 150)
    write_run(folders["fast"], "cen", 3, 0.10, 150)  # unpaired: in the mean, not the difference
    write_run(folders["exact"], "cen", 4, 0.99, 600, status="diverged")  # not a score
    (row,) = summarise(folders, ["cen", "concat-early"])
    assert row["seeds"] == [0, 1, 2]
    difference = row["fast_minus_exact"]
    # differences 2, 1, 0 points: mean 1, std 1, t(2) = 4.303, half width 4.303 / sqrt(3)
    assert difference["mean"] == pytest.approx(1.0)
    assert difference["half_width"] == pytest.approx(4.303 / 3**0.5)
    assert row["test_miou"]["exact"]["mean"] == pytest.approx(60.0)
    assert row["test_miou"]["fast"]["mean"] == pytest.approx((52 + 61 + 70 + 10) / 4)
    assert row["train_minutes"] == {"exact": pytest.approx(10.0), "fast": pytest.approx(2.5)}
