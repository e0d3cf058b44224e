"""Feature maps at one exchange site, averaged over channel groups defined by gamma.

The paper's visualisation: at a layer, split the channels by which modalities keep them
(``|gamma| >= theta``) and show each branch's mean feature map over each group. For two
modalities the groups are its three: (gamma_rgb ~ 0, gamma_depth > 0), (gamma_rgb > 0,
gamma_depth ~ 0) and (both > 0). For ``M`` modalities they are, per modality ``m``, "only ``m``
keeps the channel" (every other modality is below ``theta``), plus "every modality keeps it";
for ``M = 2`` that is exactly the paper's three. Channels in no group (below ``theta`` in every
modality, or for ``M > 2`` kept by some but not all) are not shown.

The features are, by default, each branch's own post-norm output ``y_m = gamma * x_hat + beta``
*before* the exchange at that site (a channel that ``m`` gives away is then nearly constant in
``m``'s branch: it carries nothing of ``m``). After the exchange, that channel shows the other
modalities' values instead (``after_exchange=True``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from cenfusion.nn import channel_exchange, modality_view


@dataclass(frozen=True)
class ChannelGroup:
    """A set of channels of one site, named by which modalities keep them."""

    key: str  # "only_<modality>" or "all"
    label: str  # e.g. "γ_rgb < θ, γ_depth ≥ θ"
    channels: tuple[int, ...]


@dataclass(frozen=True)
class GroupFeatures:
    """A group's mean feature map per modality branch: ``maps: (M, h, w)``, None if empty."""

    group: ChannelGroup
    maps: Tensor | None


def channel_groups(
    gamma: Tensor, threshold: float, modalities: Sequence[str]
) -> list[ChannelGroup]:
    """The groups of the paper's visualisation for ``gamma: (M, C)`` (see the module doc)."""
    num_modalities = len(modalities)
    if gamma.dim() != 2 or gamma.shape[0] != num_modalities:
        raise ValueError(
            f"gamma: expected shape ({num_modalities}, C) for modalities {tuple(modalities)}, "
            f"got {tuple(gamma.shape)}"
        )
    kept = gamma.detach().abs() >= threshold  # (M, C)
    groups = []
    for m, name in enumerate(modalities):
        others = torch.cat([kept[:m], kept[m + 1 :]])
        only = kept[m] & ~others.any(dim=0)
        label = ", ".join(
            f"γ_{other} {'≥' if k == m else '<'} θ" for k, other in enumerate(modalities)
        )
        groups.append(ChannelGroup(f"only_{name}", label, _indices(only)))
    everyone = kept.all(dim=0)
    label = "all γ ≥ θ" if num_modalities > 2 else ", ".join(f"γ_{n} ≥ θ" for n in modalities)
    groups.append(ChannelGroup("all", label, _indices(everyone)))
    return groups


def _indices(mask: Tensor) -> tuple[int, ...]:
    return tuple(int(i) for i in mask.nonzero().flatten())


def group_feature_maps(
    features: Tensor, gamma: Tensor, threshold: float, modalities: Sequence[str]
) -> list[GroupFeatures]:
    """Mean over each group's channels of ``features: (M, C, h, w)`` (one sample, per branch)."""
    if features.dim() != 4 or features.shape[:2] != gamma.shape:
        raise ValueError(
            f"features: expected (M, C, h, w) with (M, C) = {tuple(gamma.shape)} of gamma, "
            f"got {tuple(features.shape)}"
        )
    result = []
    for group in channel_groups(gamma, threshold, modalities):
        maps = None
        if group.channels:
            maps = features[:, list(group.channels)].float().mean(dim=1)
        result.append(GroupFeatures(group, maps))
    return result


@torch.no_grad()
def site_features(
    model: nn.Module,
    site: str,
    inputs: Tensor,
    num_modalities: int,
    after_exchange: bool = False,
) -> Tensor:
    """Run ``model`` on stacked ``inputs: (M*B, C, H, W)``; the output of norm ``site``.

    Returns ``(M, B, C, h, w)``: each branch's own post-norm features ``y_m`` (before the
    exchange at this site; every earlier site exchanges as usual), or with ``after_exchange``
    what the next layer sees. The model runs in its current mode (call ``eval()`` first for
    inference behaviour); ``forward_stacked`` is used where the model has it.
    """
    modules = dict(model.named_modules())
    if site not in modules:
        raise ValueError(f"model has no module named {site!r}")
    norm = modules[site]
    captured: list[Tensor] = []
    handle = norm.register_forward_hook(
        lambda module, args, output: captured.append(output.detach())
    )
    threshold = getattr(norm, "exchange_threshold", None)
    try:
        if threshold is not None:
            norm.exchange_threshold = None  # the site's own output, y_m; restored below
        forward = getattr(model, "forward_stacked", model)
        forward(inputs)
    finally:
        handle.remove()
        if threshold is not None:
            norm.exchange_threshold = threshold
    if not captured:
        raise RuntimeError(f"module {site!r} did not run in the forward pass")
    features = captured[0]
    if after_exchange and threshold is not None:
        features = channel_exchange(features, norm.weight.detach(), threshold, num_modalities)
    return modality_view(features, num_modalities).cpu()


def display_images(inputs: Mapping[str, Tensor]) -> dict[str, np.ndarray]:
    """Per modality, a display image ``(H, W, 3)`` in [0, 1] of a normalised ``(C, H, W)``
    input (stretched to its own range)."""
    return {name: _display(tensor) for name, tensor in inputs.items()}


def sample_feature_groups(
    model: nn.Module,
    inputs: Mapping[str, Tensor],
    site: str,
    threshold: float,
    after_exchange: bool = False,
    mode: contextlib.AbstractContextManager | None = None,
) -> tuple[list[GroupFeatures], dict[str, np.ndarray]]:
    """The paper's feature-map view of one input set at exchange site ``site``.

    ``inputs``: ``{modality: (C, H, W)}`` as the model was trained to see them (the task reads
    them from files); ``mode``: the inference mode to run in (default: ``model.eval()``; a
    translation generator runs in its configured mode, as ``cenfusion predict`` does). Groups
    the site's channels by ``|gamma| >= threshold``; the features are each branch's own (before
    the exchange at ``site``) unless ``after_exchange``. Returns the groups and the display
    images.
    """
    modules = dict(model.named_modules())
    if site not in modules or not hasattr(modules[site], "weight"):
        raise ValueError(f"model has no exchange site named {site!r}")
    norm = modules[site]
    sizes = {name: tuple(t.shape[-2:]) for name, t in inputs.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"modalities differ in size: {sizes}")
    stacked = model.stack({name: tensor[None] for name, tensor in inputs.items()})
    model.eval()
    with mode if mode is not None else contextlib.nullcontext():
        features = site_features(model, site, stacked, norm.num_modalities, after_exchange)
    gamma = norm.weight.detach().float().cpu()
    groups = group_feature_maps(features[:, 0], gamma, threshold, tuple(model.modalities))
    return groups, display_images(inputs)


def _display(image: Tensor) -> np.ndarray:
    """``(C, H, W)`` normalised input -> ``(H, W, 3)`` in [0, 1], grey for one channel."""
    array = image.float().numpy()
    if array.shape[0] == 1:
        array = np.repeat(array, 3, axis=0)
    finite = np.isfinite(array)
    low = float(array[finite].min()) if finite.any() else 0.0
    high = float(array[finite].max()) if finite.any() else 1.0
    scaled = (np.nan_to_num(array, nan=low) - low) / (high - low if high > low else 1.0)
    return np.clip(scaled, 0.0, 1.0).transpose(1, 2, 0)
