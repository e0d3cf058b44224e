"""ModalityConv2d (the unshared-convs ablation) against M separate nn.Conv2d."""

import pytest
import torch
from torch import nn

from cenfusion.nn import ModalityConv2d


@pytest.mark.parametrize("groups, bias", [(1, True), (1, False), (2, True)])
def test_modality_conv_equals_one_conv2d_per_modality(groups, bias):
    torch.manual_seed(0)
    num_modalities, batch = 3, 2
    layer = ModalityConv2d(4, 6, 3, num_modalities, stride=2, padding=1, groups=groups, bias=bias)
    references = []
    for m in range(num_modalities):
        conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=groups, bias=bias)
        with torch.no_grad():
            conv.weight.copy_(layer.weight[m])
            if bias:
                conv.bias.copy_(layer.bias[m])
        references.append(conv)
    x = torch.randn(num_modalities * batch, 4, 9, 9, requires_grad=True)
    y = layer(x)
    expected = torch.cat([references[m](x[m * batch : (m + 1) * batch]) for m in range(3)])
    torch.testing.assert_close(y, expected)
    y.square().sum().backward()
    expected.square().sum().backward()
    for m in range(num_modalities):
        torch.testing.assert_close(layer.weight.grad[m], references[m].weight.grad)


def test_modality_conv_modalities_do_not_share_weights():
    layer = ModalityConv2d(2, 2, 1, 2)
    assert not torch.equal(layer.weight[0], layer.weight[1])
    x = torch.randn(4, 2, 3, 3)
    with torch.no_grad():
        layer.weight[1].zero_()
        layer.bias[1].zero_()
    y = layer(x)
    assert y[2:].abs().max() == 0 and y[:2].abs().max() > 0


def test_modality_conv_refuses_a_batch_that_is_not_stacked():
    with pytest.raises(ValueError, match=r"expected input \(M\*B, 2, H, W\) with M = 3"):
        ModalityConv2d(2, 2, 1, 3)(torch.randn(4, 2, 3, 3))
