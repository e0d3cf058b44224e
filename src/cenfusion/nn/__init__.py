"""The method's building blocks: stacked modalities, private norms, exchange, L1, ensemble."""

from cenfusion.nn.ensemble import Ensemble
from cenfusion.nn.exchange import channel_exchange, exchange_mask
from cenfusion.nn.modality_conv import ModalityConv2d
from cenfusion.nn.norm import ModalityBatchNorm2d, ModalityInstanceNorm2d
from cenfusion.nn.sparsity import (
    SPARSITY_MODES,
    chunk_bounds,
    exchange_sites,
    penalised_scaling_factors,
    sparsity_penalty,
)
from cenfusion.nn.stacking import (
    as_stacked,
    modality_view,
    split_modalities,
    stack_modalities,
    unstack_modalities,
)

__all__ = [
    "SPARSITY_MODES",
    "Ensemble",
    "as_stacked",
    "ModalityBatchNorm2d",
    "ModalityConv2d",
    "ModalityInstanceNorm2d",
    "channel_exchange",
    "chunk_bounds",
    "exchange_mask",
    "exchange_sites",
    "modality_view",
    "penalised_scaling_factors",
    "sparsity_penalty",
    "split_modalities",
    "stack_modalities",
    "unstack_modalities",
]
