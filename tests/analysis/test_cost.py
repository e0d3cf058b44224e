"""Parameters and FLOPs per part: parts add up, branches share them, a convolution by hand."""

import pytest
import torch
from torch import nn

from cenfusion.analysis.cost import model_cost
from cenfusion.models import create_model


class OneConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)

    def forward(self, x):
        return self.conv(x)


def test_a_convolution_costs_two_flops_per_multiply_add():
    cost = model_cost(OneConv(), torch.zeros(2, 3, 5, 7))
    assert cost.flops == 2 * (2 * 5 * 7) * 4 * (3 * 3 * 3)  # outputs x multiply-adds each
    assert cost.flops_per_part == {"conv": cost.flops} and cost.parameters == 4 * 3 * 3 * 3


@pytest.mark.parametrize("fusion", ["cen", "concat"])
def test_the_parts_add_up_and_the_batch_scales_them(fusion):
    model = create_model("segmentation", modalities=("rgb", "depth"), backbone="resnet18",
                         num_classes=5, decoder_channels=(8, 8), fusion=fusion)  # fmt: skip
    one = model_cost(model, {m: torch.zeros(1, 3, 64, 64) for m in ("rgb", "depth")})
    two = model_cost(model, {m: torch.zeros(2, 3, 64, 64) for m in ("rgb", "depth")})
    assert sum(one.flops_per_part.values()) == one.flops > 0
    assert two.flops == 2 * one.flops
    assert set(one.flops_per_part) == {"backbone", "decoder", "ensemble"}
    assert (one.fusion_parameters > 0) == (fusion == "concat")
    assert "GFLOP/branch" in one.format()
