"""A CEN segmentation model: CEN backbone + shared decoder + per-modality logits + ensemble."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from cenfusion.models.backbones import CENResNet
from cenfusion.nn import Ensemble


class CENSegmentationModel(nn.Module):
    """``forward`` maps per-modality images to ``{modality: logits, ..., "ensemble": logits}``.

    The logits come out at the decoder's resolution (1/4 of the input for RefineNet, 1/8 for
    PSPNet); losses and metrics upsample them to the label size. ``forward_stacked`` is the
    same network on an already stacked ``(M*B, 3, H, W)`` tensor, returning stacked logits.
    """

    def __init__(self, backbone: CENResNet, decoder: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.decoder = decoder
        self.ensemble = Ensemble(backbone.num_modalities)
        self.num_classes = num_classes

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.backbone.modalities

    @property
    def num_modalities(self) -> int:
        return self.backbone.num_modalities

    def forward_stacked(self, x: Tensor) -> Tensor:
        """x: ``(M*B, 3, H, W)`` -> per-modality logits ``(M*B, K, h, w)``."""
        return self.decoder(self.backbone.forward_features(x))

    def forward(
        self, inputs: Mapping[str, Tensor] | Sequence[Tensor] | Tensor
    ) -> dict[str, Tensor]:
        logits = self.forward_stacked(self.backbone.stack(inputs))
        return self.ensemble.named_outputs(logits, self.modalities)

    def encoder_parameters(self) -> list[nn.Parameter]:
        """The backbone's parameters (the paper gives them a smaller learning rate)."""
        return list(self.backbone.parameters())

    def decoder_parameters(self) -> list[nn.Parameter]:
        """Decoder and ensemble parameters."""
        return [*self.decoder.parameters(), *self.ensemble.parameters()]
