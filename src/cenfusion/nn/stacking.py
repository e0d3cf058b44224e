"""One tensor for all modalities: stacked on the batch axis, modality-major.

Modality ``m`` of a batch of ``B`` samples occupies rows ``m*B:(m+1)*B`` of a ``(M*B, ...)``
tensor, so a shared convolution is one call over every modality. Splitting uses slicing (not
``torch.chunk``) because the ONNX exporter keeps a dynamic batch only with slices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor


def stack_modalities(
    inputs: Mapping[str, Tensor] | Sequence[Tensor],
    modalities: Sequence[str],
    channels: int | None = None,
) -> Tensor:
    """Validate per-modality inputs and stack them into one ``(M*B, C, H, W)`` tensor.

    ``inputs`` is a ``{name: (B, C, H, W)}`` mapping or a sequence in the order of
    ``modalities``. With ``channels`` given, 1-channel inputs are tiled to ``channels`` (the
    paper feeds depth to the shared RGB stem that way). Raises ``ValueError`` naming the
    modality and the shapes on a missing or extra modality or mismatched batch/spatial sizes.
    """
    tensors = _ordered(inputs, modalities)
    reference_name, reference = modalities[0], tensors[0]
    checked = []
    for name, tensor in zip(modalities, tensors, strict=True):
        if not isinstance(tensor, Tensor):
            raise ValueError(f"modality {name!r}: expected a tensor, got {type(tensor).__name__}")
        if tensor.dim() != 4:
            raise ValueError(
                f"modality {name!r}: expected a (B, C, H, W) tensor, "
                f"got shape {tuple(tensor.shape)}"
            )
        if not tensor.is_floating_point():
            raise ValueError(
                f"modality {name!r}: expected a floating-point tensor, got {tensor.dtype}"
            )
        same_batch = tensor.shape[0] == reference.shape[0]
        if not same_batch or tensor.shape[2:] != reference.shape[2:]:
            raise ValueError(
                f"modality {name!r}: expected batch and spatial size matching "
                f"{reference_name!r} {tuple(reference.shape)}, got {tuple(tensor.shape)}"
            )
        if channels is not None and tensor.shape[1] != channels:
            if tensor.shape[1] != 1:
                raise ValueError(
                    f"modality {name!r}: expected (B, 1|{channels}, H, W), "
                    f"got {tuple(tensor.shape)}"
                )
            tensor = tensor.expand(-1, channels, -1, -1)
        checked.append(tensor)
    if len({t.dtype for t in checked}) > 1:
        dtypes = {name: str(t.dtype) for name, t in zip(modalities, checked, strict=True)}
        raise ValueError(f"modalities must share one dtype, got {dtypes}")
    return torch.cat(checked, dim=0)


def as_stacked(
    inputs: Mapping[str, Tensor] | Sequence[Tensor] | Tensor,
    modalities: Sequence[str],
    channels: int,
) -> Tensor:
    """A model's input edge: stack a dict/list, or check an already stacked tensor.

    A tensor must be ``(M*B, channels, H, W)`` with a batch axis divisible by ``M``; anything
    else goes through :func:`stack_modalities` (with 1-channel inputs tiled to ``channels``).
    """
    if not isinstance(inputs, Tensor):
        return stack_modalities(inputs, modalities, channels=channels)
    if inputs.dim() != 4 or inputs.shape[1] != channels:
        raise ValueError(
            f"stacked input: expected (M*B, {channels}, H, W), got {tuple(inputs.shape)}"
        )
    if inputs.shape[0] % len(modalities):
        raise ValueError(
            f"stacked input of shape {tuple(inputs.shape)}: batch axis must be a multiple of "
            f"{len(modalities)} modalities {list(modalities)}"
        )
    return inputs


def split_modalities(stacked: Tensor, num_modalities: int) -> list[Tensor]:
    """Split a ``(M*B, ...)`` tensor into ``M`` views of shape ``(B, ...)``, by slicing."""
    batch = _batch_size(stacked, num_modalities)
    return [stacked[m * batch : (m + 1) * batch] for m in range(num_modalities)]


def unstack_modalities(stacked: Tensor, modalities: Sequence[str]) -> dict[str, Tensor]:
    """Split a ``(M*B, ...)`` tensor into ``{name: (B, ...)}`` views."""
    return dict(zip(modalities, split_modalities(stacked, len(modalities)), strict=True))


def modality_view(stacked: Tensor, num_modalities: int) -> Tensor:
    """View a ``(M*B, ...)`` tensor as ``(M, B, ...)`` without copying."""
    _batch_size(stacked, num_modalities)
    return stacked.unflatten(0, (num_modalities, -1))


def _batch_size(stacked: Tensor, num_modalities: int) -> int:
    if num_modalities < 1 or stacked.shape[0] % num_modalities:
        raise ValueError(
            f"stacked tensor of shape {tuple(stacked.shape)}: batch axis must be a multiple of "
            f"num_modalities={num_modalities}"
        )
    return stacked.shape[0] // num_modalities


def _ordered(
    inputs: Mapping[str, Tensor] | Sequence[Tensor], modalities: Sequence[str]
) -> list[Tensor]:
    if isinstance(inputs, Mapping):
        missing = [name for name in modalities if name not in inputs]
        extra = [name for name in inputs if name not in modalities]
        if missing or extra:
            shapes = {k: tuple(v.shape) if isinstance(v, Tensor) else v for k, v in inputs.items()}
            parts = []
            if missing:
                parts.append(f"missing modality {', '.join(map(repr, missing))}")
            if extra:
                parts.append(f"unexpected modality {', '.join(map(repr, extra))}")
            raise ValueError(f"{'; '.join(parts)}: expected {list(modalities)}, got {shapes}")
        return [inputs[name] for name in modalities]
    if isinstance(inputs, Tensor):
        raise ValueError(
            f"expected a {{modality: tensor}} dict or a list of {len(modalities)} tensors "
            f"in the order {list(modalities)}, got one tensor of shape {tuple(inputs.shape)}"
        )
    tensors = list(inputs)
    if len(tensors) != len(modalities):
        shapes = [tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__ for t in tensors]
        raise ValueError(
            f"expected {len(modalities)} tensors in the order {list(modalities)}, "
            f"got {len(tensors)}: {shapes}"
        )
    return tensors
