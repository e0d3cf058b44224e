"""The method's building blocks: stacked modalities, private norms, exchange, L1, ensemble."""

from cenfusion.nn.ensemble import Ensemble
from cenfusion.nn.exchange import channel_exchange, exchange_mask
from cenfusion.nn.modality_conv import ModalityConv2d
from cenfusion.nn.norm import ModalityBatchNorm2d, ModalityInstanceNorm2d, ModalityNorm
from cenfusion.nn.pooling import MaxPool2d
from cenfusion.nn.presence import absent_rows, check_presence, presence_context, sample_presence
from cenfusion.nn.sparsity import (
    SPARSITY_MODES,
    chunk_bounds,
    effective_lambda,
    exchange_sites,
    l1_term_count,
    penalised_scaling_factors,
    sparsity_penalty,
)
from cenfusion.nn.stacked_model import ModelInputs, StackedModel, StackedOutputs
from cenfusion.nn.stacking import (
    as_stacked,
    modality_view,
    split_modalities,
    stack_modalities,
    unstack_modalities,
)
from cenfusion.nn.state_dict import StateDictFit, state_dict_fit
from cenfusion.nn.sync_norm import SyncBatchNorm2d, SyncModalityBatchNorm2d, convert_sync_batch_norm

__all__ = [
    "MaxPool2d",
    "SPARSITY_MODES",
    "Ensemble",
    "ModelInputs",
    "StackedModel",
    "StackedOutputs",
    "StateDictFit",
    "SyncBatchNorm2d",
    "SyncModalityBatchNorm2d",
    "absent_rows",
    "as_stacked",
    "ModalityBatchNorm2d",
    "ModalityConv2d",
    "ModalityInstanceNorm2d",
    "ModalityNorm",
    "channel_exchange",
    "check_presence",
    "chunk_bounds",
    "convert_sync_batch_norm",
    "effective_lambda",
    "l1_term_count",
    "exchange_mask",
    "exchange_sites",
    "modality_view",
    "penalised_scaling_factors",
    "presence_context",
    "sample_presence",
    "sparsity_penalty",
    "split_modalities",
    "stack_modalities",
    "state_dict_fit",
    "unstack_modalities",
]
