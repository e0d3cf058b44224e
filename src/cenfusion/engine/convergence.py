"""When a run has converged: how much its validation score still gained in its last quarter.

The benchmark's rule (docs/benchmark.md): a run has converged when the validation score it
ends with is less than a set amount above the one validated last at or before 3/4 of its
epochs. ``train.until_converged`` lets the trainer add epochs at the schedule's last rates
until that holds (see :meth:`cenfusion.engine.trainer.Trainer.fit`); the comparison runner
records the gain of every run.

Converged by that rule means the schedule has run its course, not that the task has: a run can
settle at its last, smallest rate while it was still climbing fast when its full rate ended.
:func:`rise_at_full_rate` measures that climb, so a table can show it beside the gain.
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


def rise_at_full_rate(
    curve: Sequence[Sequence[float]], learning_rates: Sequence[float], window: int = 3
) -> float | None:
    """How fast the validation score still rose, per epoch, when the full learning rate ended:
    the score validated last at the largest rate of ``learning_rates`` (one per epoch, epoch 1
    first) minus the one validated last at least ``window`` epochs before it, divided by the
    epochs between them. Near zero: the run had levelled off before its rate was lowered;
    large: the schedule cut it short. None without two such validations."""
    if not curve or not learning_rates:
        return None
    peak = max(learning_rates)
    last = max(epoch for epoch, rate in enumerate(learning_rates, start=1) if rate == peak)
    at_peak = [(e, v) for e, v in curve if e <= last]
    if not at_peak:
        return None
    end_epoch, end_value = at_peak[-1]
    before = [(e, v) for e, v in curve if e <= end_epoch - window]
    if not before:
        return None
    start_epoch, start_value = before[-1]
    return (float(end_value) - float(start_value)) / (end_epoch - start_epoch)
