"""The learned ensemble of the per-modality predictions.

``ens = sum_m softmax(alpha)_m * out_m.detach()``: the detach means the ensemble's loss trains
``alpha`` only and never pushes the branches towards each other.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cenfusion.nn.stacking import modality_view


class Ensemble(nn.Module):
    """Softmax-weighted sum of the ``M`` branch outputs; ``alpha`` starts at ones (equal)."""

    def __init__(self, num_modalities: int) -> None:
        super().__init__()
        self.num_modalities = num_modalities
        self.alpha = nn.Parameter(torch.ones(num_modalities))

    def restrict_modalities(self, rows: list[int]) -> None:
        """Keep the α of the modalities ``rows``: the softmax then runs over those only."""
        index = torch.tensor(rows, device=self.alpha.device)
        self.alpha = nn.Parameter(self.alpha.detach().index_select(0, index))
        self.num_modalities = len(rows)

    def weights(self) -> Tensor:
        """``softmax(alpha)``: the weight of each modality in the ensemble."""
        return torch.softmax(self.alpha, dim=0)

    def forward(self, outputs: Tensor, present: Tensor | None = None) -> Tensor:
        """outputs: ``(M*B, ...)`` stacked branch outputs -> ``(B, ...)`` ensemble.
        ``present``: an ``(M, B)`` presence mask; each sample's softmax then runs over the α
        of its present modalities (:mod:`cenfusion.nn.presence`)."""
        per_modality = modality_view(outputs.detach(), self.num_modalities)
        if present is None:
            weights = self.weights().to(per_modality.dtype)
            return torch.tensordot(weights, per_modality, dims=1)
        logits = self.alpha.view(-1, 1).expand(-1, present.shape[1])
        logits = logits.masked_fill(~present.to(logits.device), float("-inf"))
        weights = torch.softmax(logits, dim=0).to(per_modality.dtype)  # (M, B)
        weights = weights.view(*weights.shape, *([1] * (per_modality.dim() - 2)))
        # an absent row never enters, whatever it holds (a placeholder may be NaN)
        kept = torch.where(weights > 0, per_modality, torch.zeros((), dtype=per_modality.dtype))
        return (weights * kept).sum(dim=0)
