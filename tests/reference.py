"""Plain, slow reference versions of the CEN blocks: lists of tensors and Python loops.

Written for obviousness, not speed: one ``nn.BatchNorm2d``/``nn.InstanceNorm2d`` per modality,
exchange by a loop over modalities and channels, the L1 term and the ensemble by loops. The fast
versions in ``cenfusion.nn`` must match these.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def reference_exchange(ys: list[Tensor], gammas: list[Tensor], threshold: float) -> list[Tensor]:
    """Paper Eq. 6, channel by channel: below threshold, take the mean of the others."""
    num = len(ys)
    if num == 1:
        return [ys[0]]
    outs = []
    for m in range(num):
        channels = []
        for c in range(ys[m].shape[1]):
            if abs(float(gammas[m][c])) >= threshold:
                channels.append(ys[m][:, c])
            else:
                others = [ys[n][:, c] for n in range(num) if n != m]
                total = others[0]
                for other in others[1:]:
                    total = total + other
                channels.append(total / len(others))
        outs.append(torch.stack(channels, dim=1))
    return outs


class ReferenceModalityNorm(nn.Module):
    """M independent torch norms, then the reference exchange."""

    def __init__(
        self,
        num_features: int,
        num_modalities: int,
        kind: str = "batch",
        threshold: float | None = None,
    ) -> None:
        super().__init__()
        if kind == "batch":
            make = lambda: nn.BatchNorm2d(num_features)  # noqa: E731
        else:
            make = lambda: nn.InstanceNorm2d(  # noqa: E731
                num_features, affine=True, track_running_stats=True
            )
        self.norms = nn.ModuleList(make() for _ in range(num_modalities))
        self.threshold = threshold

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        ys = [norm(x) for norm, x in zip(self.norms, xs, strict=True)]
        if self.threshold is None:
            return ys
        return reference_exchange(ys, [norm.weight for norm in self.norms], self.threshold)

    def load_from_stacked(self, stacked: nn.Module) -> None:
        """Copy row m of the fast norm's ``(M, C)`` tensors into reference norm m."""
        with torch.no_grad():
            for m, norm in enumerate(self.norms):
                norm.weight.copy_(stacked.weight[m])
                norm.bias.copy_(stacked.bias[m])
                norm.running_mean.copy_(stacked.running_mean[m])
                norm.running_var.copy_(stacked.running_var[m])


def reference_penalised_factors(norms: list[list[Tensor]], mode: str) -> list[Tensor]:
    """For each site (a list of M gamma vectors), the entries the L1 term covers, one by one."""
    picked = []
    for gammas in norms:
        num = len(gammas)
        for m, gamma in enumerate(gammas):
            size = gamma.shape[0]
            for c in range(size):
                in_chunk = m * size // num <= c < (m + 1) * size // num
                if mode == "all" or (mode == "disjoint" and in_chunk):
                    picked.append(gamma[c])
    return picked


def reference_ensemble(outs: list[Tensor], alpha: Tensor) -> Tensor:
    weights = [torch.exp(a) for a in alpha]
    total = sum(weights)
    ens = torch.zeros_like(outs[0])
    for w, out in zip(weights, outs, strict=True):
        ens = ens + (w / total) * out.detach()
    return ens
