"""Switch the exchange off at chosen sites of a trained model: what each site's exchange carries.

A model evaluated with the exchange off at some sites keeps everything else (the scaling
factors, the statistics, the other sites' exchange); a channel below θ there keeps its own,
near-constant value instead of the other modalities'. The drop in the scores is what the
exchange at those sites carries (``cenfusion evaluate --exchange-off layer1``).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from cenfusion.analysis.exchange_stats import stage_of
from cenfusion.nn import exchange_sites


def matches_site(site: str, pattern: str) -> bool:
    """Whether ``pattern``'s dotted parts are a contiguous run of ``site``'s: ``layer3`` names
    ``backbone.layer3.0.bn1`` and ``backbone.layer3.1.bn1``, ``layer3.0`` only the first."""
    parts, wanted = site.split("."), pattern.split(".")
    return any(parts[i : i + len(wanted)] == wanted for i in range(len(parts) - len(wanted) + 1))


def switch_exchange_off(model: nn.Module, patterns: Sequence[str]) -> list[str]:
    """Switch the exchange off (in place) at every exchange site that one of ``patterns``
    names (:func:`matches_site`); returns those sites. The sites stay sites (their L1 term is
    kept, as in the ``private-bn-l1`` ablation). A pattern that names no site that exchanges
    (``model.exchange_stages`` may leave some out) is a ``ValueError`` listing those sites."""
    sites = dict(exchange_sites(model, exchanging=True))
    if not sites:
        raise ValueError("exchange off: the model has no exchange sites that exchange")
    unknown = [p for p in patterns if not any(matches_site(site, p) for site in sites)]
    if unknown:
        raise ValueError(
            f"exchange off: {', '.join(map(repr, unknown))} names no exchange site that "
            f"exchanges; the sites that do are {', '.join(sites)}"
        )
    chosen = [site for site in sites if any(matches_site(site, p) for p in patterns)]
    for site in chosen:
        sites[site].exchange_threshold = None
    return chosen


def exchanging_sites_by_stage(model: nn.Module) -> dict[str, list[str]]:
    """``{stage: [site, ...]}``: the sites that exchange (a threshold set), grouped by their
    stage (:func:`~cenfusion.analysis.exchange_stats.stage_of`), in the model's order; what
    to switch off together to learn what each stage's exchange carries."""
    stages: dict[str, list[str]] = {}
    for name, _ in exchange_sites(model, exchanging=True):
        stages.setdefault(stage_of(name), []).append(name)
    return stages
