"""When a run has converged: how much its validation score still gained in its last quarter.

The benchmark's rule (docs/benchmark.md): a run has converged when the validation score it
ends with is less than a set amount above the one validated last at or before 3/4 of its
epochs. ``train.until_converged`` lets the trainer add epochs at the schedule's last rates
until that holds (see :meth:`cenfusion.engine.trainer.Trainer.fit`); the comparison runner
records the gain of every run.
"""

from __future__ import annotations

from collections.abc import Sequence


def last_quarter_gain(curve: Sequence[Sequence[float]], epochs: int) -> float | None:
    """The final value of ``curve`` (``[[epoch, score], ...]``, 1-based epochs in order) minus
    the one validated last at or before 3/4 of ``epochs``: how much a run still gained in its
    last quarter (None without a validation there)."""
    mark = 0.75 * epochs
    earlier = [value for epoch, value in curve if epoch <= mark]
    if not curve or not earlier:
        return None
    return float(curve[-1][1]) - float(earlier[-1])


def has_converged(curve: Sequence[Sequence[float]], epochs: int, min_gain: float) -> bool:
    """Whether a run of ``epochs`` epochs with this validation ``curve`` (scores where larger
    is better) gained less than ``min_gain`` over its last quarter; False when that gain
    cannot be measured."""
    gain = last_quarter_gain(curve, epochs)
    return gain is not None and gain < min_gain
