"""Intervals and paired differences, against values worked out by hand (and SciPy's t)."""

import math

import pytest

from cenfusion.experiments.statistics import (
    mean_interval,
    paired_difference,
    t_quantile_975,
)


def test_three_values_by_hand():
    # mean 2, sample std 1, standard error 1/sqrt(3), t(2) = 4.303: half width 2.48434
    interval = mean_interval([1.0, 2.0, 3.0])
    assert interval.mean == 2.0 and interval.std == 1.0 and interval.n == 3
    assert interval.half_width == pytest.approx(4.303 / math.sqrt(3), abs=1e-12)
    assert interval.half_width == pytest.approx(2.48434, abs=1e-5)
    assert (interval.low, interval.high) == pytest.approx((2 - 2.48434, 2 + 2.48434), abs=1e-5)
    assert interval.excludes_zero() is False


def test_one_value_has_no_interval():
    interval = mean_interval([0.7])
    assert interval.half_width is None and interval.low is None and not interval.excludes_zero()


def test_the_paired_difference_is_taken_seed_by_seed():
    # differences 1, 1, 3 (seed 3 has no partner): mean 5/3, std 2/sqrt(3), se 2/3, t(2) 4.303
    cen = {0: 1.0, 1: 2.0, 2: 4.0, 3: 9.0}
    other = {0: 0.0, 1: 1.0, 2: 1.0}
    difference = paired_difference(cen, other)
    assert difference.n == 3 and difference.mean == pytest.approx(5 / 3)
    assert difference.std == pytest.approx(2 / math.sqrt(3))
    assert difference.half_width == pytest.approx(4.303 * 2 / 3)
    assert paired_difference({0: 1.0}, {1: 1.0}) is None


def test_pairing_removes_the_spread_the_seeds_share():
    """Two methods whose seeds move together: unpaired intervals overlap, the paired one
    resolves the constant lead."""
    a = {0: 10.0, 1: 20.0, 2: 30.0, 3: 40.0}
    b = {seed: value - 1.0 for seed, value in a.items()}
    assert not paired_difference(a, b).half_width  # zero spread: exactly +1 every seed
    unpaired = mean_interval(list(a.values())).half_width
    assert unpaired > 1.0


def test_t_quantiles_agree_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    for dof in (1, 2, 4, 9, 30, 31, 50, 200):
        assert t_quantile_975(dof) == pytest.approx(stats.t.ppf(0.975, dof), abs=2e-3)
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_quantile_975(0)
