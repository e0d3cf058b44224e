"""The fast CPU max pool against ``torch.nn.MaxPool2d``: same values, same gradients."""

import pytest
import torch
from torch import nn

from cenfusion.nn import MaxPool2d


def pooled_and_gradient(pool: nn.Module, x: torch.Tensor, grad: torch.Tensor):
    x = x.detach().clone().requires_grad_()
    out = pool(x)
    out.backward(grad)
    return out.detach(), x.grad


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "shape"),
    [(5, 1, 2, (4, 8, 13, 17)), (3, 2, 1, (2, 16, 24, 30)), (3, 2, 1, (3, 5, 7, 9))],
)
@pytest.mark.parametrize("relu", [False, True], ids=["continuous", "ties-after-relu"])
def test_values_and_gradients_equal_the_stock_pool(kernel, stride, padding, shape, relu):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g)
    if relu:  # half the values tie at zero: the gradient must go where the stock kernel sends it
        x = torch.relu(x)
    grad_shape = nn.MaxPool2d(kernel, stride, padding)(x).shape
    grad = torch.randn(grad_shape, generator=g)
    expected = pooled_and_gradient(nn.MaxPool2d(kernel, stride, padding), x, grad)
    fast = MaxPool2d(kernel, stride, padding)
    out, x_grad = pooled_and_gradient(fast, x, grad)
    assert torch.equal(out, expected[0])
    assert torch.equal(x_grad, expected[1])
    assert out.is_contiguous()
    with torch.no_grad():
        assert torch.equal(fast(x), expected[0])


def test_other_inputs_take_the_stock_kernel():
    """Channels-last inputs, tracing and the options the fast route lacks are left alone."""

    def route(pool: nn.Module, x: torch.Tensor) -> str:
        return type(pool(x).grad_fn).__name__

    x = torch.randn(2, 4, 9, 9, requires_grad=True)
    assert route(MaxPool2d(3, 1, 1), x) == "_ChannelsLastMaxPoolBackward"
    stock = route(nn.MaxPool2d(3, 1, 1), x)
    assert route(MaxPool2d(3, 1, 1), x.contiguous(memory_format=torch.channels_last)) == stock
    assert route(MaxPool2d(3, 1, 1, ceil_mode=True), x) == stock
    assert route(MaxPool2d(3, 1, 1, dilation=2), x) == route(nn.MaxPool2d(3, 1, 1, dilation=2), x)
    traced = torch.jit.trace(MaxPool2d(3, 1, 1), x.detach())
    assert "max_pool2d" in str(traced.graph)
    assert torch.equal(traced(x.detach()), nn.MaxPool2d(3, 1, 1)(x.detach()))
    graph = torch.fx.symbolic_trace(MaxPool2d(3, 1, 1))
    assert torch.equal(graph(x.detach()), nn.MaxPool2d(3, 1, 1)(x.detach()))
