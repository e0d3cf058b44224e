"""``|dL/dy|`` at every exchange site: the gradient magnitude Theorem 1 is stated in.

For each site and each (modality, channel) the monitor takes the L2 norm of the loss gradient
at the norm's output over the batch and all positions, once per backward pass, and averages
those norms over the passes it has seen. The hooks only read gradients; training is unchanged.
"""

from __future__ import annotations

from collections.abc import Collection

from torch import Tensor, nn

from cenfusion.nn import exchange_sites, modality_view


class OutputGradientMonitor:
    """Record ``|dL/dy|: (M, C)`` at the output of every exchange site of ``model``.

    Use as a context manager, or call :meth:`close` to remove the hooks. Forward passes without
    gradient (evaluation, ``torch.no_grad``) are ignored. The output is the site's *returned*
    tensor, i.e. after the exchange when exchange is on (for a model without exchange, the
    norm's output itself). ``sites`` limits it to those sites' names (default: every site).
    """

    def __init__(self, model: nn.Module, sites: Collection[str] | None = None) -> None:
        self._sums: dict[str, Tensor] = {}
        self._counts: dict[str, int] = {}
        chosen = [(n, norm) for n, norm in exchange_sites(model) if sites is None or n in sites]
        self._order = [name for name, _ in chosen]
        self._handles = [
            norm.register_forward_hook(self._forward_hook(name, norm.num_modalities))
            for name, norm in chosen
        ]
        if not self._handles:
            where = "" if sites is None else f" among {sorted(sites)}"
            raise ValueError(f"{type(model).__name__} has no exchange sites{where} to monitor")

    def _forward_hook(self, name: str, num_modalities: int):
        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            if output.requires_grad:
                output.register_hook(lambda grad: self._record(name, num_modalities, grad))

        return hook

    def _record(self, name: str, num_modalities: int, grad: Tensor) -> None:
        per_modality = modality_view(grad.detach().float(), num_modalities)  # (M, B, C, H, W)
        norms = per_modality.square().sum(dim=(1, *range(3, per_modality.dim()))).sqrt()
        if name in self._sums:
            self._sums[name] += norms
            self._counts[name] += 1
        else:
            self._sums[name] = norms
            self._counts[name] = 1

    def mean(self) -> dict[str, Tensor]:
        """``{site: mean over the recorded backward passes of |dL/dy|}``, each ``(M, C)`` on CPU,
        in module order. Empty until a backward pass has gone through the sites.
        """
        return {
            name: (self._sums[name] / self._counts[name]).cpu()
            for name in self._order
            if name in self._sums
        }

    @property
    def passes(self) -> int:
        """How many backward passes have been recorded (at the first site)."""
        return max(self._counts.values(), default=0)

    def reset(self) -> None:
        """Forget what was recorded (e.g. at the start of an epoch)."""
        self._sums.clear()
        self._counts.clear()

    def close(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> OutputGradientMonitor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
