"""Private norms over the stacked tensor against one torch norm per modality."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cenfusion.nn import ModalityBatchNorm2d, ModalityInstanceNorm2d, split_modalities
from tests.reference import ReferenceModalityNorm

NORMS = {"batch": ModalityBatchNorm2d, "instance": ModalityInstanceNorm2d}


def make_pair(kind, num_modalities, channels, threshold=None, seed=0):
    """A fast norm with random parameters/stats and its reference with the same values."""
    g = torch.Generator().manual_seed(seed)
    fast = NORMS[kind](channels, num_modalities, exchange_threshold=threshold).double()
    with torch.no_grad():
        u = torch.rand(num_modalities, channels, generator=g, dtype=torch.float64)
        fast.weight.copy_(torch.where(u < 0.3, u / 30, 0.5 + u))  # ~30 % below 0.02
        fast.bias.copy_(torch.randn(num_modalities, channels, generator=g) * 0.1)
        fast.running_mean.copy_(torch.randn(num_modalities, channels, generator=g) * 0.1)
        fast.running_var.copy_(torch.rand(num_modalities, channels, generator=g) + 0.5)
    ref = ReferenceModalityNorm(channels, num_modalities, kind, threshold).double()
    ref.load_from_stacked(fast)
    return fast, ref


def compare(fast, ref, x, num_modalities):
    x_fast = x.clone().requires_grad_()
    xs_ref = [t.clone().requires_grad_() for t in split_modalities(x, num_modalities)]
    out_fast = fast(x_fast)
    out_ref = torch.cat(ref(xs_ref))
    torch.testing.assert_close(out_fast, out_ref, atol=1e-6, rtol=0)
    upstream = torch.randn_like(out_fast)
    params_ref = [p for norm in ref.norms for p in (norm.weight, norm.bias)]
    grads_fast = torch.autograd.grad(out_fast, [x_fast, fast.weight, fast.bias], upstream)
    # a modality whose every channel is exchanged away leaves its input unused: zero gradient
    grads_ref = torch.autograd.grad(
        out_ref, [*xs_ref, *params_ref], upstream, materialize_grads=True
    )
    torch.testing.assert_close(
        grads_fast[0], torch.cat(grads_ref[:num_modalities]), atol=1e-6, rtol=0
    )
    ref_weight = torch.stack(grads_ref[num_modalities::2])
    ref_bias = torch.stack(grads_ref[num_modalities + 1 :: 2])
    torch.testing.assert_close(grads_fast[1], ref_weight, atol=1e-6, rtol=0)
    torch.testing.assert_close(grads_fast[2], ref_bias, atol=1e-6, rtol=0)
    for m, norm in enumerate(ref.norms):
        torch.testing.assert_close(fast.running_mean[m], norm.running_mean, atol=1e-12, rtol=0)
        torch.testing.assert_close(fast.running_var[m], norm.running_var, atol=1e-12, rtol=0)


@pytest.mark.parametrize("kind", ["batch", "instance"])
@pytest.mark.parametrize("num_modalities", [1, 2, 3, 4])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("threshold", [None, 0.0, 2e-2, 10.0])
def test_private_norm_matches_one_torch_norm_per_modality(
    kind, num_modalities, training, threshold
):
    fast, ref = make_pair(kind, num_modalities, channels=5, threshold=threshold)
    fast.train(training)
    ref.train(training)
    x = torch.randn(num_modalities * 3, 5, 6, 4, dtype=torch.float64) * 2 + 0.5
    for _ in range(2):  # twice: running statistics must follow step by step
        compare(fast, ref, x, num_modalities)
    assert int(fast.num_batches_tracked) == (2 if training else 0)


@pytest.mark.parametrize("kind", ["batch", "instance"])
def test_channels_last_input_gives_the_same_result(kind):
    fast, ref = make_pair(kind, 2, channels=6, threshold=2e-2)
    x = torch.randn(4, 6, 5, 5, dtype=torch.float64).to(memory_format=torch.channels_last)
    compare(fast, ref, x, 2)


def test_cumulative_average_when_momentum_is_none():
    fast = ModalityBatchNorm2d(3, 2, momentum=None).double()
    ref = [torch.nn.BatchNorm2d(3, momentum=None).double() for _ in range(2)]
    for step in range(3):
        x = torch.randn(4, 3, 2, 2, dtype=torch.float64) + step
        fast(x)
        for m, norm in enumerate(ref):
            norm(x[2 * m : 2 * m + 2])
    for m, norm in enumerate(ref):
        torch.testing.assert_close(fast.running_mean[m], norm.running_mean)
        torch.testing.assert_close(fast.running_var[m], norm.running_var)


def test_state_dict_keys_hold_one_row_per_modality():
    norm = ModalityBatchNorm2d(7, 3)
    shapes = {k: tuple(v.shape) for k, v in norm.state_dict().items()}
    assert shapes == {
        "weight": (3, 7),
        "bias": (3, 7),
        "running_mean": (3, 7),
        "running_var": (3, 7),
        "num_batches_tracked": (),
    }


def test_bad_input_is_named():
    norm = ModalityBatchNorm2d(4, 2)
    with pytest.raises(ValueError, match=r"expected input \(M\*B, 4, H, W\), got \(2, 3, 2, 2\)"):
        norm(torch.randn(2, 3, 2, 2))
    with pytest.raises(ValueError, match="not a multiple of num_modalities=2"):
        norm(torch.randn(3, 4, 2, 2))


def test_traced_path_matches_the_fast_path():
    fast = ModalityBatchNorm2d(4, 2, exchange_threshold=0.5)
    with torch.no_grad():
        fast.weight.copy_(torch.tensor([[1.0, 0.1, 1.0, 2.0], [0.2, 1.0, 1.0, 1.0]]))
        fast.running_var.uniform_(0.5, 1.5)
    fast.eval()
    x = torch.randn(4, 4, 3, 3)
    traced = torch.jit.trace(fast, x)
    torch.testing.assert_close(traced(x), fast(x))


def test_bfloat16_autocast_runs_close_to_float32():
    fast = ModalityBatchNorm2d(8, 2, exchange_threshold=2e-2)
    x = torch.randn(4, 8, 6, 6)
    expected = fast(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = fast(x.bfloat16())
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected, atol=5e-2, rtol=5e-2)


@given(
    num_modalities=st.integers(1, 4),
    batch=st.integers(2, 3),
    channels=st.integers(1, 6),
    size=st.integers(2, 5),
    training=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_batch_norm_matches_reference_for_any_shape(
    num_modalities, batch, channels, size, training, seed
):
    fast, ref = make_pair("batch", num_modalities, channels, threshold=2e-2, seed=seed)
    fast.train(training)
    ref.train(training)
    x = torch.randn(num_modalities * batch, channels, size, size + 1, dtype=torch.float64)
    compare(fast, ref, x, num_modalities)
