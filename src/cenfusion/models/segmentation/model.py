"""A CEN segmentation model: CEN backbone + shared decoder + per-modality logits + ensemble."""

from __future__ import annotations

from torch import Tensor, nn

from cenfusion.models.backbones import CENResNet
from cenfusion.nn import Ensemble, StackedModel


class CENSegmentationModel(StackedModel):
    """``forward`` maps per-modality images to ``{modality: logits, ..., "ensemble": logits}``.

    The logits come out at the decoder's resolution (1/4 of the input for RefineNet, 1/8 for
    PSPNet) unless ``output_size`` asks for the label size (see
    :meth:`~cenfusion.nn.StackedModel.forward`). ``forward_stacked`` is the network on an
    already stacked ``(M*B, 3, H, W)`` tensor, returning stacked logits.
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
    def in_channels(self) -> int:
        return self.backbone.in_channels

    def forward_stacked(self, x: Tensor) -> Tensor:
        """x: ``(M*B, 3, H, W)`` -> per-modality logits ``(M*B, K, h, w)``."""
        return self.decoder(self.backbone.forward_features(x))

    def encoder_parameters(self) -> list[nn.Parameter]:
        """The backbone's parameters (the paper gives them a smaller learning rate)."""
        return list(self.backbone.parameters())

    def decoder_parameters(self) -> list[nn.Parameter]:
        """Decoder and ensemble parameters."""
        return [*self.decoder.parameters(), *self.ensemble.parameters()]


def check_classes_and_dropout(num_classes: int, dropout: float) -> None:
    """The two checks every segmentation builder makes before building anything."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout}")
