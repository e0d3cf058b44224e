"""The scaling factors gamma of every exchange site, and what they say about the exchange.

A channel ``c`` of modality ``m`` is *exchanged* (it takes the other modalities' values) where
``|gamma[m, c]| < theta`` (paper Eq. 6). Per site and modality this module counts those channels
and summarises ``|gamma|``, so that one can see how much each modality gives away at each depth.
A model trained with exchange off has no threshold of its own: pass ``threshold`` to ask what
*would* exchange at ``theta``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from cenfusion.nn import exchange_mask, exchange_sites


@dataclass(frozen=True)
class SiteStatistics:
    """One exchange site: per modality (in ``modalities`` order), exchanged channels and |gamma|.

    ``all_below`` counts the channels that every modality gives away: after the exchange they
    carry only near-zero values, so they are lost to the whole network.
    """

    site: str
    modalities: tuple[str, ...]
    num_channels: int
    threshold: float
    exchanged: tuple[int, ...]
    abs_mean: tuple[float, ...]
    abs_median: tuple[float, ...]
    abs_min: tuple[float, ...]
    abs_max: tuple[float, ...]
    all_below: int

    @property
    def exchanged_fraction(self) -> tuple[float, ...]:
        return tuple(n / self.num_channels for n in self.exchanged)

    def as_dict(self) -> dict:
        """Plain numbers and lists, for JSON."""
        return {**asdict(self), "exchanged_fraction": list(self.exchanged_fraction)}


def scaling_factors(model: nn.Module) -> dict[str, Tensor]:
    """``{site name: gamma}`` for every exchange site; gamma is a detached CPU copy ``(M, C)``."""
    return {
        name: norm.weight.detach().float().cpu().clone() for name, norm in exchange_sites(model)
    }


def site_thresholds(model: nn.Module, threshold: float | None = None) -> dict[str, float]:
    """``{site name: theta}``: ``threshold`` if given, else each site's own.

    A site without a threshold of its own (exchange off) needs ``threshold``; the error says so.
    """
    thresholds = {}
    for name, norm in exchange_sites(model):
        theta = threshold if threshold is not None else norm.exchange_threshold
        if theta is None:
            raise ValueError(
                f"exchange site {name!r} has no exchange threshold (the model does not exchange "
                "there: exchange off, or model.exchange_stages leaves it out): give a threshold "
                "to count the channels below it"
            )
        thresholds[name] = float(theta)
    return thresholds


def modality_names(model: nn.Module, num_modalities: int) -> tuple[str, ...]:
    """The model's modality names, or ``m0, m1, ...`` for a bare module without them."""
    names = getattr(model, "modalities", None)
    if names is None:
        return tuple(f"m{m}" for m in range(num_modalities))
    names = tuple(names)
    if len(names) != num_modalities:
        raise ValueError(
            f"model names {len(names)} modalities {names}, but its norms have {num_modalities}"
        )
    return names


def gamma_statistics(
    site: str, gamma: Tensor, threshold: float, modalities: Sequence[str]
) -> SiteStatistics:
    """Statistics of one site's scaling factors ``gamma: (M, C)`` at ``threshold``.

    The median is the interpolated one (the mean of the two middle values for even ``C``).
    """
    if gamma.dim() != 2 or gamma.shape[0] != len(modalities):
        raise ValueError(
            f"site {site!r}: expected gamma of shape ({len(modalities)}, C) for modalities "
            f"{tuple(modalities)}, got {tuple(gamma.shape)}"
        )
    magnitude = gamma.detach().float().abs()
    below = exchange_mask(magnitude, threshold)
    return SiteStatistics(
        site=site,
        modalities=tuple(modalities),
        num_channels=int(gamma.shape[1]),
        threshold=float(threshold),
        exchanged=tuple(int(v) for v in below.sum(dim=1)),
        abs_mean=tuple(float(v) for v in magnitude.mean(dim=1)),
        abs_median=tuple(float(v) for v in torch.quantile(magnitude, 0.5, dim=1)),
        abs_min=tuple(float(v) for v in magnitude.amin(dim=1)),
        abs_max=tuple(float(v) for v in magnitude.amax(dim=1)),
        all_below=int(below.all(dim=0).sum()),
    )


def site_statistics(model: nn.Module, threshold: float | None = None) -> list[SiteStatistics]:
    """:class:`SiteStatistics` for every exchange site of ``model``, in module order.

    ``threshold`` defaults to each site's own (see :func:`site_thresholds`).
    """
    thresholds = site_thresholds(model, threshold)
    stats = []
    for name, gamma in scaling_factors(model).items():
        names = modality_names(model, gamma.shape[0])
        stats.append(gamma_statistics(name, gamma, thresholds[name], names))
    return stats


def format_statistics(stats: Sequence[SiteStatistics]) -> str:
    """Two plain-text tables: one row per (site, modality), then the totals per modality."""
    if not stats:
        return "no exchange sites"
    site_width = max(len("site"), *(len(s.site) for s in stats))
    modality_width = max(len("modality"), *(len(m) for s in stats for m in s.modalities))
    header = (
        f"{'site':<{site_width}}  {'modality':<{modality_width}}  {'C':>5}  "
        f"{'exchanged':>15}  {'|γ| mean':>9}  {'median':>9}  {'min':>9}  {'max':>9}"
    )
    lines = [header, "-" * len(header)]
    for s in stats:
        for m, name in enumerate(s.modalities):
            count = f"{s.exchanged[m]} ({s.exchanged_fraction[m]:.1%})"
            lines.append(
                f"{s.site if m == 0 else '':<{site_width}}  {name:<{modality_width}}  "
                f"{s.num_channels if m == 0 else '':>5}  {count:>15}  {s.abs_mean[m]:>9.4f}  "
                f"{s.abs_median[m]:>9.4f}  {s.abs_min[m]:>9.4f}  {s.abs_max[m]:>9.4f}"
            )
    lines += ["", _summary(stats, modality_width)]
    return "\n".join(lines)


def _summary(stats: Sequence[SiteStatistics], width: int) -> str:
    modalities = stats[0].modalities
    total = sum(s.num_channels for s in stats)
    thresholds = sorted({s.threshold for s in stats})
    theta = ", ".join(f"{t:g}" for t in thresholds)
    header = f"{'modality':<{width}}  {'exchanged':>17}  {'channels':>8}  {'mean |γ|':>9}"
    lines = [
        f"summary over {len(stats)} exchange sites (θ = {theta})",
        header,
        "-" * len(header),
    ]
    for m, name in enumerate(modalities):
        exchanged = sum(s.exchanged[m] for s in stats)
        mean = sum(s.abs_mean[m] * s.num_channels for s in stats) / total
        count = f"{exchanged} ({exchanged / total:.1%})"
        lines.append(f"{name:<{width}}  {count:>17}  {total:>8}  {mean:>9.4f}")
    lost = sum(s.all_below for s in stats)
    lines.append(f"channels below θ in every modality (lost): {lost} ({lost / total:.1%})")
    return "\n".join(lines)


def find_site(sites: Sequence[str], requested: str) -> str:
    """The site named ``requested``: its full name, or a unique dotted suffix of it.

    ``layer2.1.bn2`` finds ``backbone.layer2.1.bn2``. An unknown or ambiguous name is a
    ``ValueError`` that lists the sites.
    """
    if requested in sites:
        return requested
    matches = [site for site in sites if site.endswith("." + requested)]
    if len(matches) == 1:
        return matches[0]
    shown = ", ".join(sites) if sites else "(none)"
    if matches:
        raise ValueError(f"layer {requested!r} is ambiguous: it names {', '.join(matches)}")
    raise ValueError(f"unknown layer {requested!r}: the exchange sites are {shown}")


def spread_sites(sites: Sequence[str], count: int = 3) -> list[str]:
    """The first, middle and last site (fewer when there are fewer): the layers the
    scaling-factor figure draws by default."""
    picks = sorted({round(i * (len(sites) - 1) / max(count - 1, 1)) for i in range(count)})
    return [sites[i] for i in picks]
