"""The converted model: the user's network over stacked modalities, its input edge, the ensemble."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from cenfusion.nn import Ensemble, StackedModel, StackedOutputs, stack_modalities


class MultimodalModel(StackedModel):
    """A network converted by :func:`cenfusion.convert`, with the modalities at its edge.

    ``network`` runs on one stacked ``(M*B, C, H, W)`` tensor (modality-major): its
    convolutions and linears are shared, its norms private. ``forward`` takes a
    ``{modality: (B, C, H, W)}`` dict, a list in ``modalities`` order, or an already stacked
    tensor; extra arguments go to ``network`` unchanged. With ``ensemble`` (the network ends in
    a prediction) the output is ``{modality: (B, ...), ..., "ensemble": (B, ...)}``; otherwise
    the network's own output, stacked (a list of ``(M*B, ...)`` features for a backbone).
    """

    def __init__(
        self,
        network: nn.Module,
        modalities: Sequence[str],
        in_channels: int | None = None,
        prediction: bool | None = True,
        exchange_norms: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.network = network
        self.modalities = tuple(modalities)
        self.in_channels = in_channels
        # None: not known when converting (the graph could not be traced); decided per call.
        self.prediction = prediction
        self.exchange_norms = tuple(exchange_norms)
        self.training = network.training  # the converted model is in the mode the input was
        self.ensemble = None
        if prediction is not False:
            # alpha lives where the network's weights do (a double model gets a double alpha)
            reference = next((p for p in network.parameters() if p.is_floating_point()), None)
            self.ensemble = Ensemble(self.num_modalities)
            if reference is not None:
                self.ensemble.to(device=reference.device, dtype=reference.dtype)

    def stack(self, inputs: Mapping[str, Tensor] | Sequence[Tensor] | Tensor) -> Tensor:
        """Validate inputs and stack them into ``(M*B, C, ...)``; 1-channel inputs are tiled
        to ``in_channels`` (the first convolution's input width)."""
        if not isinstance(inputs, Tensor):
            return stack_modalities(inputs, self.modalities, channels=self.in_channels)
        channels_differ = (
            inputs.dim() == 4
            and self.in_channels is not None
            and inputs.shape[1] != self.in_channels
        )
        if inputs.dim() < 1 or inputs.shape[0] % self.num_modalities or channels_differ:
            channels = self.in_channels if self.in_channels is not None else "C"
            raise ValueError(
                f"stacked input: expected (M*B, {channels}, H, W) with the batch axis a multiple "
                f"of {self.num_modalities} modalities {list(self.modalities)}, "
                f"got {tuple(inputs.shape)}"
            )
        return inputs

    def forward(
        self, inputs: Mapping[str, Tensor] | Sequence[Tensor] | Tensor, *args: Any, **kwargs: Any
    ) -> Any:
        out = self.network(self.stack(inputs), *args, **kwargs)
        if self.ensemble is None or (self.prediction is None and not isinstance(out, Tensor)):
            return out
        if not isinstance(out, Tensor):
            raise ValueError(
                f"converted with prediction=True, but the network returned "
                f"{type(out).__name__}, not one tensor; convert with prediction=False"
            )
        return StackedOutputs(out, self.ensemble(out)).named(self.modalities)

    def extra_repr(self) -> str:
        return f"modalities={self.modalities}, exchange_norms={len(self.exchange_norms)}"
