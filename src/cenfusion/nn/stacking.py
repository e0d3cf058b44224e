"""One tensor for all modalities: stacked on the batch axis, modality-major.

Modality ``m`` of a batch of ``B`` samples occupies rows ``m*B:(m+1)*B`` of a ``(M*B, ...)``
tensor, so a shared convolution is one call over every modality. Splitting uses slicing (not
``torch.chunk``) because the ONNX exporter keeps a dynamic batch only with slices.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor


def stack_modalities(
    inputs: Mapping[str, Tensor] | Sequence[Tensor],
    modalities: Sequence[str],
    channels: int | None = None,
    like: Tensor | None = None,
) -> Tensor:
    """Validate per-modality inputs and stack them into one ``(M*B, C, H, W)`` tensor.

    ``inputs`` is a ``{name: (B, C, H, W)}`` mapping or a sequence in the order of
    ``modalities``. With ``channels`` given, 1-channel inputs are tiled to ``channels`` (the
    paper feeds depth to the shared RGB stem that way). With ``like`` (a weight of the model
    the inputs are for), their device and dtype must match it (any floating dtype under
    autocast). Raises ``ValueError`` naming the modality and the shapes on a missing or extra
    modality, an empty image, mismatched batch/spatial sizes, dtypes or devices.
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
        if tensor.shape[2] < 1 or tensor.shape[3] < 1:
            raise ValueError(
                f"modality {name!r}: expected an image of at least 1x1 pixels, "
                f"got shape {tuple(tensor.shape)}"
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
    for name, tensor in zip(modalities, checked, strict=True):
        check_like(tensor, like, f"modality {name!r}")
    return torch.cat(checked, dim=0)


def check_like(x: Tensor, like: Tensor | None, what: str) -> None:
    """Refuse an input on another device, or of another dtype (outside autocast), than the
    weight ``like``, before a convolution fails on it deep inside torch."""
    if like is None:
        return
    if x.device != like.device:
        raise ValueError(
            f"{what}: on device {x.device}, the model's weights on {like.device}; move the "
            f"inputs there (.to({str(like.device)!r}))"
        )
    if x.dtype != like.dtype and not torch.is_autocast_enabled(x.device.type):
        raise ValueError(
            f"{what}: dtype {x.dtype}, the model's weights are {like.dtype}; convert the "
            f"inputs (.to({like.dtype})) or run under torch.autocast"
        )


def as_stacked(
    inputs: Mapping[str, Tensor] | Sequence[Tensor] | Tensor,
    modalities: Sequence[str],
    channels: int,
    like: Tensor | None = None,
) -> Tensor:
    """A model's input edge: stack a dict/list, or check an already stacked tensor.

    A tensor must be a floating ``(M*B, channels, H, W)`` with a batch axis divisible by ``M``;
    anything else goes through :func:`stack_modalities` (with 1-channel inputs tiled to
    ``channels``). ``like``: see :func:`stack_modalities`.
    """
    if not isinstance(inputs, Tensor):
        return stack_modalities(inputs, modalities, channels=channels, like=like)
    if inputs.dim() != 4 or inputs.shape[1] != channels:
        raise ValueError(
            f"stacked input: expected (M*B, {channels}, H, W), got {tuple(inputs.shape)}"
        )
    if inputs.shape[0] % len(modalities):
        raise ValueError(
            f"stacked input of shape {tuple(inputs.shape)}: batch axis must be a multiple of "
            f"{len(modalities)} modalities {list(modalities)}"
        )
    if not inputs.is_floating_point() or inputs.shape[2] < 1 or inputs.shape[3] < 1:
        raise ValueError(
            f"stacked input: expected a floating-point (M*B, {channels}, H >= 1, W >= 1) "
            f"tensor, got {inputs.dtype} {tuple(inputs.shape)}"
        )
    check_like(inputs, like, "stacked input")
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
    if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Iterable):
        raise ValueError(
            f"expected a {{modality: tensor}} dict or a list of {len(modalities)} tensors "
            f"in the order {list(modalities)}, got {type(inputs).__name__}"
        )
    tensors = list(inputs)
    if len(tensors) != len(modalities):
        shapes = [tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__ for t in tensors]
        raise ValueError(
            f"expected {len(modalities)} tensors in the order {list(modalities)}, "
            f"got {len(tensors)}: {shapes}"
        )
    return tensors
