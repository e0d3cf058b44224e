"""Channel exchanging for any CNN: convert a user's model into a multimodal CEN model.

``cenfusion.convert(model, modalities)`` keeps every convolution and linear shared, gives every
norm one set of parameters per modality and inserts exchange after the chosen norms
(:mod:`.sites` documents the default rule). It works by module replacement (:mod:`.walk`) and,
for norms called as functions, by torch.fx (:mod:`.fx`).
"""

from cenfusion.convert.api import convert
from cenfusion.convert.model import MultimodalModel
from cenfusion.convert.norms import (
    ModalityGroupNorm,
    ModalityInstanceNorm2dNoStats,
    modality_norm_from,
)
from cenfusion.convert.sites import default_sites

__all__ = [
    "ModalityGroupNorm",
    "ModalityInstanceNorm2dNoStats",
    "MultimodalModel",
    "convert",
    "default_sites",
    "modality_norm_from",
]
