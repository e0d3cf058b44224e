"""Per-epoch probes of what the exchange does, for the trainer's log and progress bar.

A probe follows the :class:`cenfusion.engine.trainer.EpochProbe` protocol: ``begin_epoch``
before the first step, ``live`` after every step (strings for the progress bar) and
``end_epoch`` for the entries of the epoch's record. The task objects hand them to the
trainer, so the training loop itself knows nothing of exchange statistics or Theorem 1.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from cenfusion.analysis.exchange_stats import (
    exchanged_fraction,
    exchanged_fraction_by_stage,
    penalised_share_below_threshold,
)
from cenfusion.analysis.output_gradients import OutputGradientMonitor
from cenfusion.analysis.theorem import attraction_check
from cenfusion.nn import exchange_sites


class ExchangeProbe:
    """The share of (modality, channel) pairs below θ: overall, per stage, and per site and
    modality the share of its penalised chunk.

    Record entries ``exchanged``, ``exchanged_per_stage`` and ``penalised_below_theta``
    (``{site: [share per modality]}``); the bar shows ``exchanged``. A model that exchanges at
    some sites only (``model.exchange_stages``) also gets ``penalised_below_theta_kept``: the
    same shares at the sites that do not exchange, against ``threshold`` (the configured θ).
    """

    def __init__(self, model: nn.Module, threshold: float | None = None) -> None:
        self.model = model
        partial = any(exchange_sites(model, exchanging=True)) and any(
            exchange_sites(model, exchanging=False)
        )
        self.kept_threshold = threshold if partial else None

    def begin_epoch(self) -> None:
        pass

    def live(self) -> dict[str, str]:
        return {"exchanged": f"{exchanged_fraction(self.model):.1%}"}

    def end_epoch(self) -> dict[str, Any]:
        record = {
            "exchanged": exchanged_fraction(self.model),
            "exchanged_per_stage": exchanged_fraction_by_stage(self.model),
            "penalised_below_theta": penalised_share_below_threshold(self.model),
        }
        if self.kept_threshold is not None:
            kept = penalised_share_below_threshold(self.model, self.kept_threshold)
            record["penalised_below_theta_kept"] = kept
        return record


class TheoremProbe:
    """Theorem 1 where nothing is exchanged: the fraction of penalised factors that collapsed
    below ``threshold`` beside the predicted ``2 Phi(lam / |dL/dy|) - 1``.

    It checks the exchange sites that do not exchange: every site of a network trained with
    exchange off, the sites outside ``model.exchange_stages`` of a partial exchange. ``lam``
    is the weight each penalised ``|gamma|`` is trained with
    (:func:`cenfusion.nn.effective_lambda`). The probe does nothing (no hooks, no record entry)
    when every site exchanges, nothing is penalised (``sparsity: none``, ``lam <= 0``) or the
    network has no exchange sites. Record entry ``theorem1``.
    """

    def __init__(self, network: nn.Module, lam: float, threshold: float, sparsity: str) -> None:
        self.network = network
        self.lam = lam
        self.threshold = threshold
        self.sparsity = sparsity
        self.sites = [name for name, _ in exchange_sites(network, exchanging=False)]
        self.active = sparsity != "none" and lam > 0 and bool(self.sites)
        self.monitor: OutputGradientMonitor | None = None

    def begin_epoch(self) -> None:
        if self.active:
            self.monitor = OutputGradientMonitor(self.network, self.sites)

    def live(self) -> dict[str, str]:
        return {}

    def end_epoch(self) -> dict[str, Any]:
        if self.monitor is None:
            return {}
        try:
            gradients = self.monitor.mean()
            if not gradients:
                return {"theorem1": {}}
            check = attraction_check(
                self.network, self.lam, gradients, self.threshold, self.sparsity, self.sites
            )
            return {"theorem1": check.as_dict()}
        finally:
            self.monitor.close()
            self.monitor = None
