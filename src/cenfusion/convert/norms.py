"""Private norms for the per-sample layers a user's model may hold: GroupNorm, InstanceNorm.

Their statistics are per sample, so the stacked ``(M*B, C, ...)`` tensor is normalised in one
call; only the affine step is per modality. Both subclass the library's private-norm base, so
:func:`cenfusion.nn.sparsity_penalty` and :func:`cenfusion.analysis.exchange_statistics` find
them as exchange sites with no change: ``weight``/``bias`` are ``(M, C)``, row ``m`` is
modality ``m``'s gamma/beta. They keep no running statistics (there are none to keep).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cenfusion.nn.norm import ModalityBatchNorm2d, ModalityInstanceNorm2d, ModalityNorm

__all__ = ["ModalityGroupNorm", "ModalityInstanceNorm2dNoStats", "modality_norm_from"]


class _PerSampleModalityNorm(ModalityNorm):
    """Per-sample normalisation of the whole stack, then each modality's own gamma and beta."""

    def __init__(
        self,
        num_features: int,
        num_modalities: int,
        eps: float = 1e-5,
        exchange_threshold: float | None = None,
        exchange_site: bool | None = None,
    ) -> None:
        super().__init__(
            num_features,
            num_modalities,
            eps=eps,
            momentum=None,
            exchange_threshold=exchange_threshold,
            exchange_site=exchange_site,
        )
        # Statistics come from each sample alone: no buffers (None buffers stay out of
        # state_dict, as in a torch norm built with track_running_stats=False).
        self.running_mean = None
        self.running_var = None
        self.num_batches_tracked = None

    def reset_running_stats(self) -> None:
        """Nothing to reset: per-sample norms keep no running statistics."""

    def _check_input(self, x: Tensor) -> None:
        if x.dim() < 3 or x.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}: expected input (M*B, {self.num_features}, ...), "
                f"got {tuple(x.shape)}"
            )
        if x.shape[0] % self.num_modalities:
            raise ValueError(
                f"{type(self).__name__}: batch axis {x.shape[0]} is not a multiple of "
                f"num_modalities={self.num_modalities}"
            )

    def _normalise(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """x: ``(M*B, C, ...)`` -> ``(M*B, C, ...)``, normalised, scaled per modality, exchanged."""
        self._check_input(x)
        normalised = self._normalise(x).unflatten(0, (self.num_modalities, -1))
        shape = (self.num_modalities, 1, self.num_features, *([1] * (x.dim() - 2)))
        y = normalised * self.weight.view(shape) + self.bias.view(shape)
        return self._exchange(y.flatten(0, 1))


class ModalityGroupNorm(_PerSampleModalityNorm):
    """``nn.GroupNorm(num_groups, num_channels, affine=True)`` with one gamma/beta per modality."""

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        num_modalities: int,
        eps: float = 1e-5,
        exchange_threshold: float | None = None,
        exchange_site: bool | None = None,
    ) -> None:
        if num_channels % num_groups:
            raise ValueError(
                f"ModalityGroupNorm: num_channels={num_channels} is not divisible by "
                f"num_groups={num_groups}"
            )
        super().__init__(num_channels, num_modalities, eps, exchange_threshold, exchange_site)
        self.num_groups = num_groups

    def _normalise(self, x: Tensor) -> Tensor:
        return F.group_norm(x, self.num_groups, None, None, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {super().extra_repr()}"


class ModalityInstanceNorm2dNoStats(_PerSampleModalityNorm):
    """``nn.InstanceNorm2d(affine=True)`` as torch builds it by default (no running statistics).

    Training and evaluation both normalise by each sample's own statistics; the library's
    :class:`~cenfusion.nn.ModalityInstanceNorm2d` is the variant with running statistics.
    """

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(
                f"{type(self).__name__}: expected input (M*B, {self.num_features}, H, W), "
                f"got {tuple(x.shape)}"
            )
        super()._check_input(x)

    def _normalise(self, x: Tensor) -> Tensor:
        return F.instance_norm(x, eps=self.eps)


def modality_norm_from(
    norm: nn.Module,
    num_modalities: int,
    exchange_threshold: float | None = None,
    exchange_site: bool = False,
) -> ModalityNorm:
    """The private-norm twin of a torch norm, every modality's row initialised from ``norm``.

    ``norm`` must already have been checked convertible (see :mod:`cenfusion.convert.walk`):
    an affine ``BatchNorm2d`` with running statistics, an affine ``InstanceNorm2d`` or an affine
    ``GroupNorm``. The twin lives on ``norm``'s device and dtype.
    """
    kwargs = {"exchange_threshold": exchange_threshold, "exchange_site": exchange_site}
    if isinstance(norm, nn.BatchNorm2d):
        twin: ModalityNorm = ModalityBatchNorm2d(
            norm.num_features, num_modalities, eps=norm.eps, momentum=norm.momentum, **kwargs
        )
    elif isinstance(norm, nn.InstanceNorm2d) and norm.track_running_stats:
        twin = ModalityInstanceNorm2d(
            norm.num_features, num_modalities, eps=norm.eps, momentum=norm.momentum, **kwargs
        )
    elif isinstance(norm, nn.InstanceNorm2d):
        twin = ModalityInstanceNorm2dNoStats(
            norm.num_features, num_modalities, eps=norm.eps, **kwargs
        )
    elif isinstance(norm, nn.GroupNorm):
        twin = ModalityGroupNorm(
            norm.num_groups, norm.num_channels, num_modalities, eps=norm.eps, **kwargs
        )
    else:
        raise TypeError(f"no private norm for {type(norm).__name__}")
    twin = twin.to(device=norm.weight.device, dtype=norm.weight.dtype)
    twin.train(norm.training)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            source, target = getattr(norm, name, None), getattr(twin, name, None)
            if source is not None and target is not None:
                target.copy_(source.expand_as(target))
        counter = getattr(norm, "num_batches_tracked", None)
        if getattr(twin, "num_batches_tracked", None) is not None and counter is not None:
            twin.num_batches_tracked.copy_(counter)
    for name in ("weight", "bias"):
        getattr(twin, name).requires_grad_(getattr(norm, name).requires_grad)
    return twin
