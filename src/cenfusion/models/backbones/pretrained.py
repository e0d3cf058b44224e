"""ImageNet initialisation from a local torchvision-format ResNet state dict.

Nothing is downloaded: the user names a ``.pth`` file (e.g. torchvision's
``resnet50-19c8e357.pth``). Key names match ours one for one; each BatchNorm tensor of shape
``(C,)`` is copied into every modality's row of our ``(M, C)`` norm tensors (and, for the
unshared-convolution ablation, each filter bank into every modality's row).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

IGNORED_PREFIXES = ("fc.",)  # the ImageNet classifier has no place in a dense-prediction trunk
FUSION_PREFIX = "fusion."


def read_state_dict(path: str | Path, what: str = "checkpoint") -> dict[str, Tensor]:
    """``torch.load(path, weights_only=True)`` with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist (nothing is downloaded)")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling errors have many types; all mean the same here
        raise ValueError(
            f"{what} {str(path)!r} could not be read as a weights-only torch file: "
            f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        ) from error
    if (
        isinstance(loaded, dict)
        and "state_dict" in loaded
        and isinstance(loaded["state_dict"], dict)
    ):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise ValueError(f"{what} {str(path)!r}: expected a state dict of tensors")
    return loaded


def load_torchvision_resnet(model: nn.Module, source: str | Path | dict[str, Tensor]) -> None:
    """Copy a torchvision ResNet state dict into ``model`` (a CEN or plain ResNet), strictly.

    Raises ``ValueError`` naming the file and the first missing, unexpected or mismatched key.
    """
    name = "state dict" if isinstance(source, dict) else f"ImageNet weights {str(source)!r}"
    state = (
        dict(source) if isinstance(source, dict) else read_state_dict(source, "ImageNet weights")
    )
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(IGNORED_PREFIXES)}
    # a fusion baseline's layers (``fusion.layer2...``) are not part of the ImageNet trunk
    target = {k: v for k, v in model.state_dict().items() if not k.startswith(FUSION_PREFIX)}
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"first missing key {missing[0]!r} ({len(missing)} missing)")
        if unexpected:
            parts.append(f"first unexpected key {unexpected[0]!r} ({len(unexpected)} unexpected)")
        raise ValueError(f"{name} does not fit this {type(model).__name__}: {'; '.join(parts)}")
    converted = {}
    for key, ours in target.items():
        theirs = state[key]
        if theirs.shape == ours.shape:
            converted[key] = theirs
        elif ours.dim() == theirs.dim() + 1 and theirs.shape == ours.shape[1:]:
            converted[key] = theirs.unsqueeze(0).expand_as(ours)  # one copy per modality
        else:
            raise ValueError(
                f"{name}: key {key!r} has shape {tuple(theirs.shape)}, this model expects "
                f"{tuple(ours.shape)}"
            )
    model.load_state_dict(converted, strict=False)  # every trunk key was checked above


def torchvision_state(backbone: nn.Module, modality: int = 0) -> dict[str, Tensor]:
    """The reverse of :func:`load_torchvision_resnet`: a CEN ResNet's trunk as a torchvision
    state dict, every per-modality tensor (``(M, ...)`` norms, an unshared filter bank) taken
    from row ``modality``. What a model trained here hands on as ``model.pretrained`` (the
    pretrained-start regime of a comparison: every method begins from the same trunk)."""
    num_modalities = int(getattr(backbone, "num_modalities", 1))
    if not 0 <= modality < num_modalities:
        raise ValueError(f"modality {modality}: the backbone has {num_modalities} modalities")
    state = {}
    for key, value in backbone.state_dict().items():
        if key.startswith(FUSION_PREFIX):
            continue
        stacked = value.dim() >= 1 and _is_stacked(backbone, key)
        state[key] = value[modality].clone() if stacked else value.clone()
    return state


def _is_stacked(backbone: nn.Module, key: str) -> bool:
    """Whether the module holding ``key`` keeps one row per modality (a private norm or an
    unshared convolution) rather than one shared tensor."""
    module = backbone.get_submodule(key.rsplit(".", 1)[0])
    return hasattr(module, "num_modalities")
