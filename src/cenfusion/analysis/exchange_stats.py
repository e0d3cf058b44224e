"""Per-site statistics of the scaling factors: how many channels each modality exchanges."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cenfusion.nn import chunk_bounds, exchange_mask, exchange_sites


@dataclass(frozen=True)
class ExchangeStats:
    """One exchange site: per modality, the channels below the threshold and |gamma| summary."""

    site: str
    num_channels: int
    exchanged: tuple[int, ...]
    mean_abs_gamma: tuple[float, ...]

    @property
    def exchanged_fraction(self) -> tuple[float, ...]:
        return tuple(n / self.num_channels for n in self.exchanged)


def exchange_statistics(model: nn.Module, threshold: float | None = None) -> list[ExchangeStats]:
    """Statistics for every exchange site of ``model``.

    ``threshold`` defaults to each site's own; give one to ask "what would exchange at theta"
    for a model trained with exchange off.
    """
    stats = []
    for name, norm in exchange_sites(model):
        theta = threshold if threshold is not None else norm.exchange_threshold
        gamma = norm.weight.detach()
        mask = (
            exchange_mask(gamma, theta)
            if theta is not None
            else torch.zeros_like(gamma, dtype=bool)
        )
        stats.append(
            ExchangeStats(
                site=name,
                num_channels=norm.num_features,
                exchanged=tuple(int(v) for v in mask.sum(dim=1)),
                mean_abs_gamma=tuple(float(v) for v in gamma.abs().mean(dim=1)),
            )
        )
    return stats


def exchanged_fraction(model: nn.Module) -> float:
    """Fraction of all (modality, channel) pairs at exchange sites that are exchanged."""
    stats = exchange_statistics(model)
    total = sum(s.num_channels * len(s.exchanged) for s in stats)
    return sum(sum(s.exchanged) for s in stats) / total if total else 0.0


def exchanged_fraction_by_stage(model: nn.Module) -> dict[str, float]:
    """``{stage: fraction}``: exchanged (modality, channel) pairs of the sites of each stage.

    A site's stage is the first part of its name that names a block group (``layer2`` of
    ``backbone.layer2.1.bn1``, ``down3`` of ``generator.down.3.norm`` as ``down3``), so the log
    shows where in the network the modalities trade channels.
    """
    totals: dict[str, list[int]] = {}
    for stats in exchange_statistics(model):
        stage = stage_of(stats.site)
        pair = totals.setdefault(stage, [0, 0])
        pair[0] += sum(stats.exchanged)
        pair[1] += stats.num_channels * len(stats.exchanged)
    return {stage: done / total for stage, (done, total) in totals.items() if total}


def penalised_share_below_threshold(
    model: nn.Module, kept_threshold: float | None = None
) -> dict[str, list[float]]:
    """``{site: [share of modality m's penalised chunk with |gamma| < theta, ...]}``.

    With the disjoint L1 term modality ``m`` is pushed to give away chunk ``m`` of every site;
    this says how much of that chunk it has given away (1.0: the whole chunk, as a too strong
    lambda does; values in between: the data kept some). Sites without a threshold (exchange
    off) are left out; with ``kept_threshold`` it is the other way round: only those sites,
    measured against it (what the L1 term collapses where nothing is exchanged).
    """
    shares = {}
    for name, norm in exchange_sites(model, exchanging=kept_threshold is None):
        theta = norm.exchange_threshold if kept_threshold is None else kept_threshold
        gamma = norm.weight.detach().abs()
        row = []
        for m in range(norm.num_modalities):
            start, stop = chunk_bounds(norm.num_features, norm.num_modalities, m)
            row.append(float((gamma[m, start:stop] < theta).float().mean()))
        shares[name] = row
    return shares


def stage_of(site: str) -> str:
    """The stage of an exchange site: the first part of its name that names a block group
    (``layer2`` of ``backbone.layer2.1.bn1``; ``down3`` of ``generator.down.3.norm``)."""
    parts = site.split(".")
    for index, part in enumerate(parts):
        if part.startswith("layer"):
            return part
        if part == "down" and index + 1 < len(parts):
            return f"down{int(parts[index + 1]) + 1}"
    return parts[0]
