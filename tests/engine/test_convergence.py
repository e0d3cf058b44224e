"""``train.until_converged``: the trainer trains on past the schedule, at its last rates, until
the validation score gained less than ``train.converged_gain`` over the last quarter."""

import pytest
import torch

from cenfusion.engine.convergence import has_converged, last_quarter_gain, rise_at_full_rate
from cenfusion.tasks import get_task

SEGMENTATION = get_task("segmentation")
TWO_STAGES = (
    "optim.stages=[{epochs: 1, encoder_lr: 0.01, decoder_lr: 0.02}, "
    "{epochs: 1, encoder_lr: 0.001, decoder_lr: 0.002}]"
)


def scripted(trainer, scores):
    """Validation scores by epoch instead of the measured ones (the rule, not the network)."""
    trainer.parts.validation_score = lambda record: scores[record["epoch"]]
    return trainer


def test_the_gain_is_the_last_score_minus_the_last_one_at_or_before_three_quarters():
    curve = [[1, 0.1], [2, 0.3], [3, 0.32], [4, 0.321]]
    assert last_quarter_gain(curve, 4) == pytest.approx(0.321 - 0.32)  # mark 3.0
    assert last_quarter_gain(curve[:3], 3) == pytest.approx(0.32 - 0.3)  # mark 2.25
    assert last_quarter_gain(curve[:1], 1) is None  # nothing at or before 0.75
    assert has_converged(curve, 4, 0.005) and not has_converged(curve[:3], 3, 0.005)
    assert not has_converged(curve[:1], 1, 0.005)  # not measurable is not converged


def test_the_rise_at_full_rate_is_the_climb_per_epoch_over_the_last_epochs_at_the_top_rate():
    # warm-up at a tenth, the full rate for epochs 2-6, then a tenth: the climb from epoch 3
    # (0.3) to 6 (0.6) is 0.1 an epoch, however flat the curve is after the step
    rates = [0.001, 0.01, 0.01, 0.01, 0.01, 0.01, 0.001, 0.001]
    curve = [[e, v] for e, v in enumerate([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.62, 0.62], start=1)]
    assert rise_at_full_rate(curve, rates) == pytest.approx(0.1)
    # validated every other epoch: the last validation at the full rate (6) against the last
    # one at least three epochs before it (2), over the four epochs between them
    sparse = [c for c in curve if c[0] % 2 == 0]
    assert rise_at_full_rate(sparse, rates) == pytest.approx((0.6 - 0.2) / 4)
    assert rise_at_full_rate(curve[:2], rates) is None  # nothing three epochs before epoch 2
    assert rise_at_full_rate([], rates) is None and rise_at_full_rate(curve, []) is None


def test_the_schedule_is_extended_at_its_last_rates_until_converged(tiny_config, tmp_path):
    config = tiny_config(TWO_STAGES, "train.until_converged=5", f"output_dir={tmp_path}")
    # gains over the last quarter: after 2 epochs 0.2, after 3 0.02, after 4 0.001 < 0.005
    trainer = scripted(
        SEGMENTATION.trainer(config, progress=False), {1: 0.1, 2: 0.3, 3: 0.32, 4: 0.321}
    )
    history = trainer.fit()
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert [r["lr_encoder"] for r in history] == [0.01, 0.001, 0.001, 0.001]
    assert [r["lr_decoder"] for r in history] == [0.02, 0.002, 0.002, 0.002]
    assert all("val" in r for r in history[2:])  # every added epoch is validated


def test_the_extension_stops_at_its_allowance_and_zero_is_the_schedule(tiny_config, tmp_path):
    rising = {epoch: 0.1 * epoch for epoch in range(1, 10)}
    config = tiny_config(TWO_STAGES, "train.until_converged=2", f"output_dir={tmp_path / 'a'}")
    assert len(scripted(SEGMENTATION.trainer(config, progress=False), rising).fit()) == 4
    config = tiny_config(TWO_STAGES, f"output_dir={tmp_path / 'b'}")
    assert len(scripted(SEGMENTATION.trainer(config, progress=False), rising).fit()) == 2


def test_a_finished_schedule_resumed_with_an_allowance_trains_on_exactly(tiny_config, tmp_path):
    scores = {1: 0.1, 2: 0.3, 3: 0.32, 4: 0.321}
    whole = tiny_config(TWO_STAGES, "train.until_converged=5", f"output_dir={tmp_path / 'w'}")
    expected = scripted(SEGMENTATION.trainer(whole, progress=False), scores)
    expected.fit()
    # the protocol's way: a tuning run stops at the schedule, the chosen one trains on later
    first = tiny_config(TWO_STAGES, f"output_dir={tmp_path / 'r'}")
    assert len(scripted(SEGMENTATION.trainer(first, progress=False), scores).fit()) == 2
    again = tiny_config(TWO_STAGES, "train.until_converged=5", f"output_dir={tmp_path / 'r'}")
    resumed = scripted(SEGMENTATION.trainer(again, resume=True, progress=False), scores)
    assert [r["epoch"] for r in resumed.fit()] == [1, 2, 3, 4]
    for key, value in expected.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_each_task_scores_validation_larger_is_better():
    record = {"val": {"ensemble": {"mean_iou": 0.4, "l1": 0.08}}}
    assert SEGMENTATION.validation_score(record) == pytest.approx(0.4)
    assert get_task("translation").validation_score(record) == pytest.approx(-0.08)
    assert SEGMENTATION.validation_score({"epoch": 3}) is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.until_converged=-1"], "train.until_converged: expected >= 0"),
        (["train.until_converged=2", "train.eval_every=0"], "needs validation"),
        (["train.converged_gain=0"], "train.converged_gain: expected a positive number"),
    ],
)
def test_bad_convergence_settings_are_refused(tiny_config, overrides, message):
    with pytest.raises(ValueError, match=message):
        SEGMENTATION.trainer(tiny_config(*overrides), progress=False)
