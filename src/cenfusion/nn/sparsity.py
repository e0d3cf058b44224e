"""The L1 sparsity term on the scaling factors of the exchanging norms.

``disjoint`` (the paper's default): the ``C`` channels of each exchange site are split into ``M``
contiguous chunks and modality ``m`` is penalised on chunk ``m`` only, so every channel keeps at
least one modality free to carry it. ``all`` penalises every channel of every modality (an
ablation of the paper); ``none`` penalises nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import torch
from torch import Tensor, nn

from cenfusion.nn.norm import ModalityNorm

SparsityMode = Literal["none", "disjoint", "all"]
SPARSITY_MODES: tuple[str, ...] = ("none", "disjoint", "all")


def exchange_sites(
    model: nn.Module, exchanging: bool | None = None
) -> Iterator[tuple[str, nn.Module]]:
    """``(name, norm)`` for every private norm of ``model`` that is an exchange site; with
    ``exchanging``, only the sites that exchange (a threshold set) or only those that do not
    (exchange off, or left out by ``model.exchange_stages``)."""
    for name, module in model.named_modules():
        if (
            isinstance(module, ModalityNorm)
            and module.exchange_site
            and (exchanging is None or exchanging == (module.exchange_threshold is not None))
        ):
            yield name, module


def chunk_bounds(num_features: int, num_modalities: int, modality: int) -> tuple[int, int]:
    """``[start, stop)`` of modality ``modality``'s disjoint chunk of ``num_features`` channels.

    Chunk ``m`` is ``[m*C // M, (m+1)*C // M)``: exactly ``C / M`` channels each when ``M``
    divides ``C``, and for ``M = 2`` the public code's ``[:C // 2]`` / ``[C // 2:]``.
    """
    if not 0 <= modality < num_modalities:
        raise ValueError(f"modality index {modality} out of range for {num_modalities} modalities")
    return modality * num_features // num_modalities, (
        modality + 1
    ) * num_features // num_modalities


def penalised_scaling_factors(
    model: nn.Module, mode: SparsityMode = "disjoint"
) -> Iterator[Tensor]:
    """Yield the scaling factors (views of the norms' ``weight``) that the L1 term covers."""
    if mode not in SPARSITY_MODES:
        raise ValueError(f"sparsity mode: expected one of {SPARSITY_MODES}, got {mode!r}")
    if mode == "none":
        return
    for _, norm in exchange_sites(model):
        if mode == "all":
            yield norm.weight
            continue
        for m in range(norm.num_modalities):
            start, stop = chunk_bounds(norm.num_features, norm.num_modalities, m)
            yield norm.weight[m, start:stop]


def l1_term_count(num_modalities: int, per_output: bool = False) -> int:
    """How many times the L1 term enters the loss: once, or once per output (``M`` branches and
    the ensemble, ``M + 1``) as the public segmentation code counts it. The losses multiply
    their penalty by it and Theorem 1's monitor multiplies λ by it (:func:`effective_lambda`),
    so the two cannot disagree."""
    return num_modalities + 1 if per_output else 1


def effective_lambda(lam: float, num_modalities: int, per_output: bool = False) -> float:
    """The weight each penalised ``|gamma|`` is trained with: ``lam`` times
    :func:`l1_term_count`."""
    return lam * l1_term_count(num_modalities, per_output)


def sparsity_penalty(model: nn.Module, lam: float, mode: SparsityMode = "disjoint") -> Tensor:
    """``lam * sum |gamma|`` over :func:`penalised_scaling_factors` (a scalar tensor)."""
    factors = list(penalised_scaling_factors(model, mode))
    if not factors:
        reference = next(model.parameters(), None)
        device = reference.device if reference is not None else None
        return torch.zeros((), device=device)
    return lam * torch.stack([f.abs().sum() for f in factors]).sum()
