"""A convolution with its own weights per modality: the "unshared convs" ablation of the paper.

CEN shares every convolution between the modalities; this layer is what it is compared with.
Its weight is one ``(M, C_out, C_in/groups, k, k)`` tensor (row ``m`` is modality ``m``'s filter
bank, the same layout as the private norms' ``(M, C)`` parameters), applied slice by slice to
the stacked ``(M*B, C, H, W)`` tensor.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cenfusion.nn.stacking import split_modalities


class ModalityConv2d(nn.Module):
    """``M`` independent ``nn.Conv2d`` of one shape over the stacked batch."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        num_modalities: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if num_modalities < 1:
            raise ValueError(f"num_modalities must be >= 1, got {num_modalities}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = (kernel_size, kernel_size)
        self.num_modalities = num_modalities
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
        shape = (num_modalities, out_channels, in_channels // groups, kernel_size, kernel_size)
        self.weight = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.empty(num_modalities, out_channels)) if bias else None
        self.reset_parameters()

    def restrict_modalities(self, rows: list[int]) -> None:
        """Keep only the filter banks of the modalities ``rows`` (in that order)."""
        index = torch.tensor(rows, device=self.weight.device)
        self.weight = nn.Parameter(self.weight.detach().index_select(0, index))
        if self.bias is not None:
            self.bias = nn.Parameter(self.bias.detach().index_select(0, index))
        self.num_modalities = len(rows)

    def reset_parameters(self) -> None:
        """``nn.Conv2d``'s initialisation, drawn for each modality's filter bank."""
        for m in range(self.num_modalities):
            nn.init.kaiming_uniform_(self.weight[m], a=math.sqrt(5))
            if self.bias is not None:
                fan_in = self.weight[m][0].numel()
                bound = 1 / math.sqrt(fan_in) if fan_in else 0.0
                nn.init.uniform_(self.bias[m], -bound, bound)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"num_modalities={self.num_modalities}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
            f"bias={self.bias is not None}"
        )

    def forward(self, x: Tensor) -> Tensor:
        """x: ``(M*B, C_in, H, W)`` -> ``(M*B, C_out, H', W')``, modality ``m`` by filter ``m``."""
        if x.dim() != 4 or x.shape[1] != self.in_channels or x.shape[0] % self.num_modalities:
            raise ValueError(
                f"ModalityConv2d: expected input (M*B, {self.in_channels}, H, W) with M = "
                f"{self.num_modalities}, got {tuple(x.shape)}"
            )
        outputs = [
            F.conv2d(
                x_m,
                self.weight[m],
                None if self.bias is None else self.bias[m],
                self.stride,
                self.padding,
                self.dilation,
                self.groups,
            )
            for m, x_m in enumerate(split_modalities(x, self.num_modalities))
        ]
        return torch.cat(outputs)
