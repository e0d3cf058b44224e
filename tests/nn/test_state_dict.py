"""state_dict_fit: the one comparison behind every "does this state dict fit" error."""

import torch

from cenfusion.nn import state_dict_fit


def test_a_fitting_state_dict_fits():
    module = torch.nn.Conv2d(3, 4, 1)
    fit = state_dict_fit(module.state_dict(), module.state_dict())
    assert fit.fits and fit.describe() == ""


def test_missing_unexpected_and_mismatched_keys_are_named():
    expected = {"a": torch.zeros(2), "b": torch.zeros(3), "c": torch.zeros(1)}
    given = {"a": torch.zeros(5), "b": torch.zeros(3), "d": torch.zeros(1)}
    fit = state_dict_fit(expected, given)
    assert not fit.fits
    assert (
        fit.missing == ["c"] and fit.unexpected == ["d"] and fit.mismatched == ["a: (5,) vs (2,)"]
    )
    assert fit.describe() == "missing ['c']; unexpected ['d']; shape mismatch ['a: (5,) vs (2,)']"


def test_optional_keys_may_be_absent():
    expected = {"w": torch.zeros(1), "num_batches_tracked": torch.zeros(())}
    assert state_dict_fit(expected, {"w": torch.zeros(1)}, ["num_batches_tracked"]).fits
    assert not state_dict_fit(expected, {"w": torch.zeros(1)}).fits
