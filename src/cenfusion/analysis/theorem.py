"""Theorem 1 of the paper: without exchange, the L1 term makes scaling factors collapse.

At ``gamma = 0`` the training loss ``L + lam * |gamma|`` has a local minimum exactly when
``|dL/dgamma| <= lam``. With ``dL/dgamma = sum_i dL/dy_i * x_hat_i`` over the channel's
positions and normalised inputs ``x_hat_i ~ N(0, 1)``, ``dL/dgamma ~ N(0, |dL/dy|^2)`` (``|.|``
the L2 norm over batch and positions), so ``gamma`` is attracted to 0 with probability
``2 * Phi(lam / |dL/dy|) - 1``. A channel collapsed this way is wasted unless it is exchanged.
:func:`attraction_check` sets that prediction beside the observed share of collapsed factors.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from cenfusion.nn import chunk_bounds, exchange_sites


def attraction_probability(lam: float | Tensor, grad: float | Tensor) -> float | Tensor:
    """``2 * Phi(lam / |grad|) - 1 = erf(lam / (|grad| * sqrt(2)))``: Theorem 1's probability.

    ``grad`` is ``|dL/dy|`` of a channel (the L2 norm of the loss gradient at the norm's output);
    ``grad = 0`` gives 1 (nothing pulls gamma away from 0), also for ``lam = 0``. Python numbers
    give a float; tensors broadcast and give a tensor.
    """
    if not isinstance(lam, Tensor) and not isinstance(grad, Tensor):
        if lam < 0:
            raise ValueError(f"lam: expected >= 0, got {lam}")
        if math.isnan(grad):
            return math.nan
        if grad == 0:
            return 1.0
        return math.erf(lam / (abs(grad) * math.sqrt(2.0)))
    lam_t = lam if isinstance(lam, Tensor) else torch.tensor(float(lam))
    grad_t = grad if isinstance(grad, Tensor) else torch.tensor(float(grad))
    if not lam_t.is_floating_point():
        lam_t = lam_t.float()
    if not grad_t.is_floating_point():
        grad_t = grad_t.float()
    if bool((lam_t < 0).any()):
        raise ValueError(f"lam: expected >= 0, got {lam_t.min().item()} among its values")
    magnitude = grad_t.abs()
    # lam / 0 = inf gives erf = 1 already, except 0 / 0; the where covers both.
    ratio = lam_t / (magnitude * math.sqrt(2.0))
    probability = torch.special.erf(ratio)
    return torch.where(magnitude == 0, torch.ones_like(probability), probability)


@dataclass(frozen=True)
class AttractionCheck:
    """Penalised scaling factors: observed share below ``threshold`` vs Theorem 1's prediction.

    ``predicted_probability`` is the mean of :func:`attraction_probability` over the penalised
    factors, each with its own channel's ``|dL/dy|``.
    """

    num_penalised: int
    num_collapsed: int
    collapsed_fraction: float
    predicted_probability: float
    lam: float
    threshold: float

    def as_dict(self) -> dict[str, float | int]:
        """Plain numbers, for a metrics log."""
        return asdict(self)


def attraction_check(
    model: nn.Module,
    lam: float,
    grad_norms: Mapping[str, Tensor] | float,
    threshold: float,
    mode: str = "disjoint",
    sites: Collection[str] | None = None,
) -> AttractionCheck:
    """Theorem 1 on ``model`` (meant for sites trained without exchange).

    ``grad_norms``: ``{site: |dL/dy| of shape (M, C)}`` for every exchange site checked (what
    :class:`~cenfusion.analysis.OutputGradientMonitor` records), or one number for all channels.
    ``lam`` is the L1 weight on each penalised ``|gamma|``; ``mode`` the sparsity mode
    (``disjoint``: modality ``m``'s chunk ``m``; ``all``: every channel). ``sites`` checks
    those sites only (default: every site), e.g. the ones a partial exchange leaves alone.
    """
    if mode not in ("disjoint", "all"):
        raise ValueError(
            f"sparsity mode: expected 'disjoint' or 'all' (Theorem 1 needs penalised scaling "
            f"factors), got {mode!r}"
        )
    collapsed, predicted, count = 0, 0.0, 0
    for name, norm in exchange_sites(model):
        if sites is not None and name not in sites:
            continue
        gamma = norm.weight.detach().float().cpu().abs()
        grads = _site_grads(grad_norms, name, tuple(gamma.shape))
        mask = torch.zeros_like(gamma, dtype=torch.bool)
        if mode == "all":
            mask[:] = True
        else:
            for m in range(norm.num_modalities):
                start, stop = chunk_bounds(norm.num_features, norm.num_modalities, m)
                mask[m, start:stop] = True
        collapsed += int((gamma[mask] < threshold).sum())
        predicted += float(attraction_probability(float(lam), grads[mask]).double().sum())
        count += int(mask.sum())
    if count == 0:
        what = (
            "the model has no exchange sites"
            if sites is None
            else f"no exchange site in {sorted(sites)}"
        )
        raise ValueError(f"{what}: no scaling factor is penalised")
    return AttractionCheck(
        num_penalised=count,
        num_collapsed=collapsed,
        collapsed_fraction=collapsed / count,
        predicted_probability=predicted / count,
        lam=float(lam),
        threshold=float(threshold),
    )


def _site_grads(grad_norms: Mapping[str, Tensor] | float, site: str, shape: tuple) -> Tensor:
    if not isinstance(grad_norms, Mapping):
        return torch.full(shape, float(grad_norms))
    if site not in grad_norms:
        raise ValueError(
            f"grad_norms: no |dL/dy| for exchange site {site!r} (it has {sorted(grad_norms)[:4]}"
            f"{', ...' if len(grad_norms) > 4 else ''})"
        )
    grads = torch.as_tensor(grad_norms[site]).detach().float().cpu()
    if tuple(grads.shape) != shape:
        raise ValueError(
            f"grad_norms[{site!r}]: expected shape {shape} (modalities, channels), "
            f"got {tuple(grads.shape)}"
        )
    return grads
