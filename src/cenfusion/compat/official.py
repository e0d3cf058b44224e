"""Checkpoints of the paper's public code (github.com/yikaiw/CEN) <-> cenfusion models.

The public segmentation checkpoint is ``{'segmenter': state_dict, 'epoch_start', 'best_val'}``
with DataParallel ``module.`` prefixes, an inner ``.module.`` per shared conv
(``conv1.module.weight``), one BatchNorm per modality (``bn1.bn_0.weight``), Light-Weight
RefineNet decoder names (``p_ims1d2_outl1_dimred``, ``adapt_stage1_b.0.1_conv``, ...) and
``alpha``. Each official key maps to one cenfusion key, and per-modality norms to one row of our
``(M, C)`` norm tensors. Anything left unmatched on either side is refused with the list.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

# official decoder level (1 = deepest) -> our stage name
_LEVEL_TO_STAGE = {"1": "stage4", "2": "stage3", "3": "stage2", "4": "stage1"}
_RCU_CONV = {"conv": "0", "conv_relu_varout_dimred": "1"}


def _decoder_key(key: str) -> str | None:
    """Our name for an official RefineNet decoder key (without the ``.module`` wrapper)."""
    patterns = [
        (r"p_ims1d2_outl(\d)_dimred\.(weight|bias)", lambda m: f"{_s(m[1])}.reduce.{m[2]}"),
        (
            r"adapt_stage(\d)_b\.0\.(\d)_(conv|conv_relu_varout_dimred)\.(weight|bias)",
            lambda m: f"{_s(m[1])}.adapt.blocks.{int(m[2]) - 1}.{_RCU_CONV[m[3]]}.{m[4]}",
        ),
        (
            r"adapt_stage(\d)_b2_joint_varout_dimred\.(weight|bias)",
            lambda m: f"{_s(m[1])}.adapt_out.{m[2]}",
        ),
        (
            r"mflow_conv_g(\d)_pool\.0\.(\d)_outvar_dimred\.(weight|bias)",
            lambda m: f"{_s(m[1])}.pool.convs.{int(m[2]) - 1}.{m[3]}",
        ),
        (
            r"mflow_conv_g(\d)_b\.0\.(\d)_(conv|conv_relu_varout_dimred)\.(weight|bias)",
            lambda m: f"{_s(m[1])}.refine.blocks.{int(m[2]) - 1}.{_RCU_CONV[m[3]]}.{m[4]}",
        ),
        (
            r"mflow_conv_g(\d)_b3_joint_varout_dimred\.(weight|bias)",
            lambda m: f"{_s(m[1])}.out.{m[2]}",
        ),
        (r"clf_conv\.(weight|bias)", lambda m: f"classifier.{m[1]}"),
    ]
    for pattern, build in patterns:
        match = re.fullmatch(pattern, key)
        if match:
            return "decoder." + build(match)
    return None


def _s(level: str) -> str:
    return _LEVEL_TO_STAGE[level]


_NORM = re.compile(r"(.*)\.bn_(\d+)\.(weight|bias|running_mean|running_var|num_batches_tracked)")


def map_official_key(key: str) -> tuple[str, int | None] | None:
    """``(our key, modality row or None)`` for an official segmentation key; None if unknown."""
    key = key.replace(".module.", ".")
    if key == "alpha":
        return "ensemble.alpha", None
    norm = _NORM.fullmatch(key)
    if norm:
        return f"backbone.{norm[1]}.{norm[3]}", int(norm[2])
    decoder = _decoder_key(key)
    if decoder is not None:
        return decoder, None
    if re.fullmatch(r"(conv1|layer\d\.\d+\.(conv\d|downsample\.0))\.weight", key):
        return f"backbone.{key}", None
    return None


def unwrap_official(checkpoint: Mapping) -> dict[str, Tensor]:
    """The state dict inside a public-code checkpoint, without DataParallel prefixes."""
    state = checkpoint.get("segmenter", checkpoint)
    if not isinstance(state, Mapping):
        raise ValueError("official checkpoint: expected a state dict or {'segmenter': state dict}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def official_to_cenfusion(
    official: Mapping[str, Tensor], target: Mapping[str, Tensor]
) -> dict[str, Tensor]:
    """Convert an official segmentation state dict into the key layout of ``target``.

    Raises ``ValueError`` listing every official key that has no place in ``target``, every
    ``target`` key left unfilled and every shape mismatch.
    """
    rows: dict[str, dict[int, Tensor]] = {}
    converted: dict[str, Tensor] = {}
    unmatched = []
    for key, value in official.items():
        mapped = map_official_key(key)
        if mapped is None or mapped[0] not in target:
            unmatched.append(key)
            continue
        ours, row = mapped
        if row is None:
            converted[ours] = value
        else:
            rows.setdefault(ours, {})[row] = value
    for ours, by_row in rows.items():
        if ours.endswith("num_batches_tracked"):
            converted[ours] = by_row[0]
            continue
        if sorted(by_row) != list(range(len(by_row))):
            unmatched.append(f"{ours} (modalities {sorted(by_row)})")
            continue
        converted[ours] = torch.stack([by_row[m] for m in range(len(by_row))])
    missing = [k for k in target if k not in converted]
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(target[k].shape)}"
        for k, v in converted.items()
        if k in target and v.shape != target[k].shape
    ]
    if unmatched or missing or mismatched:
        parts = []
        if unmatched:
            parts.append(f"{len(unmatched)} checkpoint keys without a place: {unmatched[:8]}")
        if missing:
            parts.append(f"{len(missing)} model keys not in the checkpoint: {missing[:8]}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches: {mismatched[:8]}")
        raise ValueError("official checkpoint does not fit this architecture: " + "; ".join(parts))
    return converted


def cenfusion_to_official(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The reverse of :func:`official_to_cenfusion`, for checking results in the public code.

    Norm tensors of shape ``(M, C)`` become ``M`` per-modality entries; every modality's
    ``num_batches_tracked`` gets our single counter.
    """
    num_modalities = len(state["ensemble.alpha"]) if "ensemble.alpha" in state else None
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        official = official_name(key)
        if official is None:
            raise ValueError(f"no public-code name for cenfusion key {key!r}")
        if "{m}" not in official:
            out[official] = value
        elif key.endswith("num_batches_tracked"):
            for m in range(num_modalities or 1):
                out[official.format(m=m)] = value.clone()
        else:
            for m in range(value.shape[0]):
                out[official.format(m=m)] = value[m].clone()
    return out


_STAGE_TO_LEVEL = {v: k for k, v in _LEVEL_TO_STAGE.items()}
_RCU_NAME = {v: k for k, v in _RCU_CONV.items()}


def official_name(key: str) -> str | None:
    """The public code's key for a cenfusion segmentation key (``{m}`` marks the modality)."""
    if key == "ensemble.alpha":
        return "alpha"
    if key.startswith("backbone."):
        key = key.removeprefix("backbone.")
        norm = re.fullmatch(
            r"(.*(?:bn\d|downsample\.1))\.(weight|bias|running_mean|running_var|num_batches_tracked)",
            key,
        )
        if norm:
            return f"{norm[1]}.bn_{{m}}.{norm[2]}"
        conv = re.fullmatch(r"(conv1|layer\d\.\d+\.(?:conv\d|downsample\.0))\.weight", key)
        return f"{conv[1]}.module.weight" if conv else None
    match = re.fullmatch(r"decoder\.(stage\d)\.(.+)\.(weight|bias)", key)
    if match is None:
        classifier = re.fullmatch(r"decoder\.classifier\.(weight|bias)", key)
        return f"clf_conv.module.{classifier[1]}" if classifier else None
    level, part, param = _STAGE_TO_LEVEL.get(match[1]), match[2], match[3]
    rcu = re.fullmatch(r"(adapt|refine)\.blocks\.(\d+)\.([01])", part)
    if rcu:
        prefix = f"adapt_stage{level}_b" if rcu[1] == "adapt" else f"mflow_conv_g{level}_b"
        return f"{prefix}.0.{int(rcu[2]) + 1}_{_RCU_NAME[rcu[3]]}.module.{param}"
    pool = re.fullmatch(r"pool\.convs\.(\d+)", part)
    if pool:
        return f"mflow_conv_g{level}_pool.0.{int(pool[1]) + 1}_outvar_dimred.module.{param}"
    simple = {
        "reduce": f"p_ims1d2_outl{level}_dimred",
        "adapt_out": f"adapt_stage{level}_b2_joint_varout_dimred",
        "out": f"mflow_conv_g{level}_b3_joint_varout_dimred",
    }
    return f"{simple[part]}.module.{param}" if part in simple else None


def load_official(
    source: str | Path | Mapping,
    task: str = "segmentation",
    **model_kwargs,
) -> nn.Module:
    """Build a cenfusion model and fill it from a public-code checkpoint (path or state dict)."""
    from cenfusion.models import create_model

    if task != "segmentation":
        raise ValueError(f"task: expected 'segmentation', got {task!r}")
    checkpoint = _read_official(source) if isinstance(source, (str, Path)) else source
    official = unwrap_official(checkpoint)
    if "alpha" in official and "modalities" not in model_kwargs:
        model_kwargs["modalities"] = len(official["alpha"])
    model = create_model(task=task, **model_kwargs)
    model.load_state_dict(official_to_cenfusion(official, model.state_dict()))
    return model


def _read_official(path: str | Path) -> Mapping:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"official checkpoint {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"official checkpoint {str(path)!r} could not be read as a weights-only torch file: "
            f"{type(error).__name__}"
        ) from error


__all__ = [
    "cenfusion_to_official",
    "load_official",
    "map_official_key",
    "official_name",
    "official_to_cenfusion",
]
