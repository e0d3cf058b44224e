"""channel_exchange against the channel-by-channel reference (paper Eq. 6)."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cenfusion.nn import channel_exchange, exchange_mask, split_modalities
from tests.reference import reference_exchange

THRESHOLD = 0.5


def gammas_for(case: str, num_modalities: int, channels: int) -> torch.Tensor:
    """Scaling factors that exchange no channel, some channels, or every channel."""
    g = torch.Generator().manual_seed(num_modalities * 100 + channels)
    if case == "none":
        return 1.0 + torch.rand(num_modalities, channels, generator=g, dtype=torch.float64)
    if case == "all":
        return 0.4 * torch.rand(num_modalities, channels, generator=g, dtype=torch.float64) - 0.2
    values = torch.rand(num_modalities, channels, generator=g, dtype=torch.float64) * 2 - 1
    values[0, 0], values[-1, -1] = 0.01, -0.01  # surely below, with a negative gamma as well
    values[0, 1] = 0.9
    return values


@pytest.mark.parametrize("num_modalities", [2, 3, 4])
@pytest.mark.parametrize("case", ["none", "some", "all"])
def test_exchange_replaces_channels_below_threshold_with_mean_of_others(num_modalities, case):
    batch, channels = 2, 6
    gamma = gammas_for(case, num_modalities, channels)
    y = torch.randn(num_modalities * batch, channels, 5, 4, dtype=torch.float64, requires_grad=True)
    fast = channel_exchange(y, gamma, THRESHOLD, num_modalities)
    ref = torch.cat(reference_exchange(split_modalities(y, num_modalities), list(gamma), THRESHOLD))
    torch.testing.assert_close(fast, ref, atol=1e-6, rtol=0)
    upstream = torch.randn_like(fast)
    (grad_fast,) = torch.autograd.grad(fast, y, upstream)
    (grad_ref,) = torch.autograd.grad(ref, y, upstream)
    torch.testing.assert_close(grad_fast, grad_ref, atol=1e-6, rtol=0)
    exchanged = exchange_mask(gamma, THRESHOLD)
    expected_count = {"none": 0, "all": num_modalities * channels}.get(case)
    if expected_count is not None:
        assert int(exchanged.sum()) == expected_count
    else:
        assert 0 < int(exchanged.sum()) < num_modalities * channels


def test_two_modalities_swap_exactly_and_gamma_gets_no_gradient_through_the_mask():
    gamma = torch.tensor([[1.0, 0.001, 1.0], [0.001, 1.0, 1.0]], requires_grad=True)
    y = torch.randn(2, 3, 4, 4, requires_grad=True)
    out = channel_exchange(y, gamma, 0.02, 2)
    assert torch.equal(out[0, 1], y[1, 1]) and torch.equal(out[1, 0], y[0, 0])
    assert torch.equal(out[0, 0], y[0, 0]) and torch.equal(out[:, 2], y[:, 2])
    out.sum().backward()
    assert gamma.grad is None
    # modality 1 takes channel 0 from modality 0 and modality 0 takes channel 1 from modality 1:
    # the source gets the gradient of both places, the replaced value none
    per_channel = torch.tensor([[2.0, 0.0, 1.0], [0.0, 2.0, 1.0]])
    assert torch.equal(y.grad, per_channel[:, :, None, None].expand_as(y))


def test_single_modality_is_a_no_op():
    y = torch.randn(3, 4, 2, 2)
    assert channel_exchange(y, torch.zeros(1, 4), 0.5, 1) is y


def test_wrong_gamma_shape_is_named():
    with pytest.raises(ValueError, match=r"gamma: expected shape \(2, 4\)"):
        channel_exchange(torch.randn(4, 4, 2, 2), torch.ones(2, 3), 0.5, 2)


def test_exchange_keeps_channels_last_memory_format():
    y = torch.randn(4, 8, 5, 5).to(memory_format=torch.channels_last)
    gamma = gammas_for("some", 2, 8).float()
    out = channel_exchange(y, gamma, THRESHOLD, 2)
    ref = torch.cat(reference_exchange(split_modalities(y, 2), list(gamma), THRESHOLD))
    torch.testing.assert_close(out, ref, atol=0, rtol=0)


@given(
    num_modalities=st.integers(1, 4),
    batch=st.integers(1, 3),
    channels=st.integers(1, 9),
    height=st.integers(1, 4),
    threshold=st.floats(0.0, 1.5),
    seed=st.integers(0, 2**16),
)
def test_exchange_matches_reference_for_any_shape_and_threshold(
    num_modalities, batch, channels, height, threshold, seed
):
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(num_modalities * batch, channels, height, 3, generator=g, dtype=torch.float64)
    gamma = torch.randn(num_modalities, channels, generator=g, dtype=torch.float64)
    fast = channel_exchange(y, gamma, threshold, num_modalities)
    ref = torch.cat(reference_exchange(split_modalities(y, num_modalities), list(gamma), threshold))
    assert fast.shape == y.shape
    torch.testing.assert_close(fast, ref, atol=1e-12, rtol=0)
