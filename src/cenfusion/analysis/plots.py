"""The paper's figures of what the fusion learned, drawn with matplotlib (the ``plot`` extra).

matplotlib is imported only when a figure is drawn, and figures are rendered by the Agg canvas
directly (no pyplot, no global backend switch), so importing cenfusion never needs it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from cenfusion.analysis.feature_maps import GroupFeatures
from cenfusion.analysis.scaling_factors import spread_sites


def new_figure(width: float, height: float) -> Any:
    """A matplotlib ``Figure`` on the Agg canvas; a clear error names the extra when missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise RuntimeError(
            "plots need matplotlib, which is not installed: pip install 'cenfusion[plot]' "
            "(or pip install 'matplotlib>=3.7')"
        ) from error
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _colours(count: int) -> list:
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    return [palette(i % 10) for i in range(count)]


def _save(figure: Any, output: str | Path, dpi: int) -> Path:
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=dpi)
    return output


def _short(site: str) -> str:
    return site.removeprefix("backbone.").removeprefix("generator.")


def plot_scaling_factors(
    factors: Mapping[str, Tensor],
    modalities: Sequence[str],
    thresholds: Mapping[str, float],
    layers: Sequence[str] | None,
    output: str | Path,
    channels: int = 128,
    dpi: int = 100,
) -> Path:
    """Draw the scaling-factor figures to ``output`` (PNG); returns the path.

    ``factors``: ``{site: gamma (M, C)}`` for every exchange site, ``thresholds``: ``{site:
    theta}``. Top: the share of channels each modality exchanges (``|gamma| < theta``) at every
    site. Then one row per site in ``layers`` (None: the first, middle and last site): left,
    ``|gamma|`` of the first ``channels`` channels per modality with ``theta``; right, each
    modality's share ``|gamma_m| / sum_m' |gamma_m'|`` per channel (stacked to 1; a channel
    with all gammas 0 is left blank).
    """
    if not factors:
        raise ValueError("no exchange sites to plot")
    if layers is None:
        layers = spread_sites(list(factors))
    unknown = [layer for layer in layers if layer not in factors]
    if unknown:
        raise ValueError(f"layers {unknown} are not exchange sites ({list(factors)[:4]}, ...)")
    num_modalities = len(modalities)
    colours = _colours(num_modalities)
    figure = new_figure(16, 3.4 * (len(layers) + 1))
    grid = figure.add_gridspec(len(layers) + 1, 2)

    overview = figure.add_subplot(grid[0, :])
    sites = list(factors)
    positions = np.arange(len(sites))
    width = 0.8 / num_modalities
    anything = False
    for m, name in enumerate(modalities):
        fractions = [float((factors[s][m].abs() < thresholds[s]).float().mean()) for s in sites]
        anything = anything or any(fractions)
        overview.bar(
            positions + (m - (num_modalities - 1) / 2) * width,
            fractions,
            width,
            label=name,
            color=colours[m],
        )
    overview.set_xticks(positions, [_short(s) for s in sites], rotation=60, ha="right")
    overview.set_ylabel("share of channels exchanged")
    overview.set_ylim(0, 1)
    overview.set_title("Channels exchanged per site: share with |γ| < θ, per modality")
    overview.legend(title="modality", loc="upper left")
    overview.grid(axis="y", alpha=0.3)
    if not anything:
        overview.text(
            0.5, 0.5, "no channel is below θ at any site", transform=overview.transAxes,
            ha="center", va="center", color="dimgray",
        )  # fmt: skip

    for row, layer in enumerate(layers, start=1):
        gamma = factors[layer][:, :channels].abs().float().numpy()  # (M, n)
        shown, total_channels = gamma.shape[1], factors[layer].shape[1]
        of = f" of {total_channels}" if shown < total_channels else ""
        index = np.arange(shown)
        left = figure.add_subplot(grid[row, 0])
        for m, name in enumerate(modalities):
            left.bar(
                index + (m - (num_modalities - 1) / 2) * width,
                gamma[m],
                width,
                label=name,
                color=colours[m],
            )
        left.axhline(thresholds[layer], color="black", linestyle="--", linewidth=1)
        left.plot([], [], color="black", linestyle="--", label=f"θ = {thresholds[layer]:g}")
        left.set_xlim(-1, shown)
        top = max(float(gamma.max()), thresholds[layer])
        left.set_ylim(0, 1.3 * top if top > 0 else 1.0)  # headroom for the legend
        left.set_xlabel("channel")
        left.set_ylabel("|γ|")
        left.set_title(f"{_short(layer)}: scaling factors of channels 0–{shown - 1}{of}")
        left.legend(loc="upper right", ncols=num_modalities + 1, fontsize="small")

        right = figure.add_subplot(grid[row, 1])
        total = gamma.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(total > 0, gamma / total, np.nan)
        bottom = np.zeros(shown)
        for m, name in enumerate(modalities):
            heights = np.nan_to_num(share[m])
            right.bar(index, heights, 1.0, bottom=bottom, label=name, color=colours[m])
            bottom += heights
        right.set_xlim(-0.5, shown - 0.5)
        right.set_ylim(0, 1.22)  # headroom for the legend
        right.set_yticks(np.linspace(0, 1, 6))
        right.set_xlabel("channel")
        right.set_ylabel("|γ_m| / Σ |γ|")
        right.set_title(
            f"{_short(layer)}: each modality's share of |γ|, channels 0–{shown - 1}{of}"
        )
        right.legend(loc="upper right", ncols=num_modalities, fontsize="small")
    return _save(figure, output, dpi)


def plot_feature_groups(
    groups: Sequence[GroupFeatures],
    modalities: Sequence[str],
    images: Mapping[str, np.ndarray],
    site: str,
    threshold: float,
    output: str | Path,
    after_exchange: bool = False,
    dpi: int = 100,
) -> Path:
    """Draw the inputs and each group's mean feature map per branch to ``output`` (PNG).

    One row per group (see :func:`cenfusion.analysis.channel_groups`), one column per
    modality's branch; a row shares one colour scale so the branches can be compared.
    """
    num_modalities = len(modalities)
    rows = 1 + len(groups)
    figure = new_figure(3.2 * num_modalities + 1.2, 2.9 * rows)
    axes = figure.subplots(rows, num_modalities, squeeze=False)
    when = "after" if after_exchange else "before"
    figure.suptitle(
        f"Mean feature maps at {_short(site)}, {when} its exchange\n"
        f"channels grouped by which modalities keep them (|γ| ≥ θ = {threshold:g})"
    )
    for m, name in enumerate(modalities):
        axes[0, m].imshow(images[name])
        axes[0, m].set_title(f"input: {name}")
        axes[0, m].set_axis_off()
    for row, features in enumerate(groups, start=1):
        group = features.group
        caption = f"{group.label}\n({len(group.channels)} channels)"
        if features.maps is None:
            for m in range(num_modalities):
                axes[row, m].set_xticks([])
                axes[row, m].set_yticks([])
                axes[row, m].text(0.5, 0.5, "no channels", ha="center", va="center")
            axes[row, 0].set_ylabel(caption)
            continue
        maps = features.maps.numpy()
        low, high = float(maps.min()), float(maps.max())
        for m, name in enumerate(modalities):
            image = axes[row, m].imshow(maps[m], cmap="viridis", vmin=low, vmax=high)
            axes[row, m].set_title(f"{name} branch")
            axes[row, m].set_xticks([])
            axes[row, m].set_yticks([])
        axes[row, 0].set_ylabel(caption)
        figure.colorbar(image, ax=list(axes[row]), shrink=0.85, label="mean activation")
    return _save(figure, output, dpi)


def plot_exchange_history(
    history: Sequence[Mapping[str, Any]],
    modalities: Sequence[str],
    output: str | Path,
    dpi: int = 100,
) -> Path:
    """How each modality gave its penalised channels away over training, to ``output`` (PNG).

    ``history``: a run's per-epoch records (``metrics.jsonl``, or a checkpoint's history) with
    ``penalised_below_theta``. One panel per modality, one line per exchange site (early sites
    light, deep ones dark): the share of the modality's penalised chunk below θ after each
    epoch. A learned exchange keeps lines apart and below 1; a too strong λ sends every line to
    1 at the same epoch.
    """
    records = [r for r in history if r.get("penalised_below_theta")]
    if not records:
        raise ValueError(
            "no epoch records with penalised_below_theta (runs with exchange on, written by "
            "this version, have them)"
        )
    from matplotlib import colormaps

    sites = list(records[-1]["penalised_below_theta"])
    epochs = [int(r["epoch"]) for r in records]
    shades = colormaps["viridis"]
    figure = new_figure(5.5 * len(modalities), 3.8)
    axes = figure.subplots(1, len(modalities), squeeze=False)[0]
    for m, (axis, name) in enumerate(zip(axes, modalities, strict=True)):
        for index, site in enumerate(sites):
            values = [r["penalised_below_theta"].get(site, [None] * (m + 1))[m] for r in records]
            colour = shades(0.9 * (1 - index / max(len(sites) - 1, 1)))
            axis.plot(epochs, values, color=colour, linewidth=1.2, label=_short(site))
        axis.set_title(f"{name}: its penalised channels below θ")
        axis.set_xlabel("epoch")
        axis.set_ylim(-0.02, 1.02)
        axis.set_ylabel("share of the penalised chunk")
    if len(sites) <= 12:
        axes[-1].legend(fontsize=7, loc="lower right")
    return _save(figure, output, dpi)
