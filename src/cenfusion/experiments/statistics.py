"""Means with 95 % confidence intervals, and paired differences between methods over seeds.

A comparison trains every method with the same seeds, and seed ``k`` means the same
initialisation rule and the same data order for every method; the difference between two
methods is therefore taken seed by seed (a paired comparison), which removes the part of the
spread the seeds share. Intervals use Student's t with ``n - 1`` degrees of freedom; with one
value there is no interval (``half_width`` is None), never a made-up one.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

Z_975 = 1.959963984540054  # the standard normal's 97.5 % quantile

# Student's t 97.5 % quantiles for 1..30 degrees of freedom (standard tables, 3 decimals)
T_975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_quantile_975(degrees_of_freedom: int) -> float:
    """Student's t 97.5 % quantile: the table up to 30 degrees of freedom, then the
    Cornish-Fisher expansion around the normal quantile (error below 1e-4 there)."""
    if degrees_of_freedom < 1:
        raise ValueError(f"degrees of freedom: expected >= 1, got {degrees_of_freedom}")
    if degrees_of_freedom <= len(T_975):
        return T_975[degrees_of_freedom - 1]
    z, n = Z_975, degrees_of_freedom
    return z + (z**3 + z) / (4 * n) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * n**2)


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` values with its 95 % confidence interval ``mean ± half_width``."""

    mean: float
    std: float
    n: int
    half_width: float | None

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width

    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly on one side of zero (a difference is resolved)."""
        return self.half_width is not None and abs(self.mean) > self.half_width

    def as_dict(self) -> dict[str, float | int | None]:
        return {**asdict(self), "low": self.low, "high": self.high}


def mean_interval(values: Sequence[float]) -> Interval:
    """The mean of ``values`` with a t-based 95 % interval (none for a single value)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_interval: no values")
    n = len(values)
    mean = statistics.fmean(values)
    if n == 1:
        return Interval(mean, 0.0, 1, None)
    std = statistics.stdev(values)
    return Interval(mean, std, n, t_quantile_975(n - 1) * std / math.sqrt(n))


def paired_difference(
    values: Mapping[int, float], reference: Mapping[int, float]
) -> Interval | None:
    """``values - reference`` seed by seed over the seeds both have, as an :class:`Interval`;
    None when they share no seed."""
    seeds = sorted(set(values) & set(reference))
    if not seeds:
        return None
    return mean_interval([values[s] - reference[s] for s in seeds])
