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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from cenfusion.models import create_model
from cenfusion.nn import state_dict_fit

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
    _stack_modality_rows(rows, converted, unmatched)
    _refuse_unless_fit("official checkpoint does not fit this architecture", target, converted,
                       unmatched)  # fmt: skip
    return converted


def _stack_modality_rows(
    rows: dict[str, dict[int, Tensor]], converted: dict[str, Tensor], unmatched: list[str]
) -> None:
    """Per-modality public tensors -> one ``(M, ...)`` tensor each (one counter for all)."""
    for ours, by_row in rows.items():
        if ours.endswith("num_batches_tracked"):
            converted[ours] = by_row[0]
            continue
        if sorted(by_row) != list(range(len(by_row))):
            unmatched.append(f"{ours} (modalities {sorted(by_row)})")
            continue
        converted[ours] = torch.stack([by_row[m] for m in range(len(by_row))])


def _refuse_unless_fit(
    what: str,
    target: Mapping[str, Tensor],
    converted: Mapping[str, Tensor],
    unmatched: list[str],
    missing: Sequence[str] = (),
    mismatched: Sequence[str] = (),
) -> None:
    """Raise ``ValueError`` listing unplaced checkpoint keys, unfilled keys and shape mismatches."""
    fit = state_dict_fit(target, converted)
    missing = fit.missing + list(missing)
    mismatched = [f"{m} (checkpoint vs model)" for m in fit.mismatched] + list(mismatched)
    if unmatched or missing or mismatched:
        parts = []
        if unmatched:
            parts.append(f"{len(unmatched)} checkpoint keys without a place: {unmatched[:8]}")
        if missing:
            parts.append(f"{len(missing)} model keys not in the checkpoint: {missing[:8]}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches: {mismatched[:8]}")
        raise ValueError(f"{what}: " + "; ".join(parts))


def cenfusion_to_official(
    state: Mapping[str, Tensor], unused_norms: Mapping[str, Tensor] | None = None
) -> dict[str, Tensor]:
    """The reverse of :func:`official_to_cenfusion`, for checking results in the public code.

    A translation state dict (a ``CENPix2Pix``'s, or its generator's) gets the public
    generator's names instead (:func:`cenfusion_to_official_translation`, which takes
    ``unused_norms``).

    Norm tensors of shape ``(M, C)`` become ``M`` per-modality entries; every modality's
    ``num_batches_tracked`` gets our single counter.
    """
    if any(k.startswith(("generator.", "down.0.")) for k in state):
        return cenfusion_to_official_translation(state, unused_norms)
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
    """Build a cenfusion model and fill it from a public-code checkpoint (path or state dict).

    ``task="translation"``: the public generator's state dict (``checkpoint-gen.pkl``) fills
    ``model.generator`` of a ``CENPix2Pix``; the discriminator keeps its fresh initialisation.
    """
    if task not in OFFICIAL_LOADERS:
        raise ValueError(f"task: expected one of {tuple(OFFICIAL_LOADERS)}, got {task!r}")
    checkpoint = read_official(source) if isinstance(source, (str, Path)) else source
    return OFFICIAL_LOADERS[task](checkpoint, **model_kwargs)


def load_official_segmentation(checkpoint: Mapping, **model_kwargs) -> nn.Module:
    """A RefineNet filled from the public segmentation code's checkpoint (or state dict)."""
    official = unwrap_official(checkpoint)
    if "alpha" in official and "modalities" not in model_kwargs:
        model_kwargs["modalities"] = len(official["alpha"])
    model = create_model("segmentation", **model_kwargs)
    model.load_state_dict(official_to_cenfusion(official, model.state_dict()))
    return model


def load_official_translation(checkpoint: Mapping, **model_kwargs) -> nn.Module:
    """A pix2pix model whose generator is the public translation code's (a plain state dict,
    ``checkpoint-gen.pkl``); model settings not given are read from it (modalities from alpha,
    ngf, num_downs, channels from the conv shapes)."""
    official = {k.removeprefix("module."): v for k, v in checkpoint.items()}
    model = create_model("translation", **_infer_translation_kwargs(official, model_kwargs))
    generator = model.generator
    generator.load_state_dict(official_translation_to_cenfusion(official, generator.state_dict()))
    # kept beside the model (not in it) so that exporting gives the checkpoint back exactly
    model.official_unused_norms = unused_translation_norms(official)
    return model


def read_official(path: str | Path) -> Mapping:
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


# --- translation: the public pix2pix generator (image2image_translation/models/model.py) ---
#
# A plain generator state dict: ``conv{k}.conv.module.{weight,bias}`` (encoder block k, 1-based),
# ``conv{k}.insnorm_conv.insnorm_{m}.*`` (modality m's InstanceNorm of block k),
# ``deconv{k}.deconv.module.*``, ``deconv{k}.insnorm_deconv.insnorm_{m}.*`` and ``alpha``.
# Ours: ``down.{k-1}.conv.*``, ``down.{k-1}.norm.*`` rows m, ``up.{k-1}.*``, ``ensemble.alpha``
# (inside ``CENPix2Pix.generator``). The public code builds an InstanceNorm in every block but
# calls none in encoder blocks 1 and 8 or in the last decoder block: those entries (random in
# the fixtures, L1-shrunk in trained checkpoints) cannot change the output. Import checks that
# they are there with the right shapes and drops them; export writes them as a freshly built
# public generator holds them (weight 1, bias 0, running mean 0, variance 1, counter 0), so the
# public code loads the export with strict=True.

_T_CONV = re.compile(r"(?:conv(\d+)\.conv|deconv(\d+)\.deconv)\.module\.(weight|bias)")
_T_NORM = re.compile(
    r"(?:conv(\d+)\.insnorm_conv|deconv(\d+)\.insnorm_deconv)\.insnorm_(\d+)\."
    r"(weight|bias|running_mean|running_var|num_batches_tracked)"
)
_NORM_FIELDS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
UNUSED_NORM = "<unused public-code norm>"


def map_official_translation_key(key: str, num_downs: int = 8) -> tuple[str, int | None] | None:
    """``(our generator key, modality row or None)`` for an official translation key.

    None if the key is unknown; ``(UNUSED_NORM, m)`` for a norm the public forward never calls
    (encoder blocks 1 and ``num_downs``, decoder block ``num_downs``).
    """
    if key == "alpha":
        return "ensemble.alpha", None
    conv = _T_CONV.fullmatch(key)
    if conv:
        block = f"down.{int(conv[1]) - 1}" if conv[1] else f"up.{int(conv[2]) - 1}"
        return f"{block}.conv.{conv[3]}", None
    norm = _T_NORM.fullmatch(key)
    if norm:
        encoder = norm[1] is not None
        number = int(norm[1] if encoder else norm[2])
        if number == num_downs or (encoder and number == 1):
            return UNUSED_NORM, int(norm[3])
        block = f"down.{number - 1}" if encoder else f"up.{number - 1}"
        return f"{block}.norm.{norm[4]}", int(norm[3])
    return None


def _unused_norm_keys(
    num_downs: int, num_modalities: int, widths: Mapping[str, int]
) -> dict[str, tuple[int, ...]]:
    """The public keys of the never-called norms, with their shapes."""
    keys: dict[str, tuple[int, ...]] = {}
    names = ("conv1.insnorm_conv", f"conv{num_downs}.insnorm_conv")
    for name in (*names, f"deconv{num_downs}.insnorm_deconv"):
        channels = widths[name.split(".")[0]]
        for m in range(num_modalities):
            for field in _NORM_FIELDS:
                shape = () if field == "num_batches_tracked" else (channels,)
                keys[f"{name}.insnorm_{m}.{field}"] = shape
    return keys


def _generator_geometry(state: Mapping[str, Tensor]) -> tuple[int, int, dict[str, int]]:
    """(num_downs, num_modalities, output channels of conv1 / conv{last} / deconv{last}).

    ``state`` is one of our generator state dicts (keys ``down.{i}.conv.weight`` ...).
    """
    num_downs = sum(1 for k in state if re.fullmatch(r"down\.\d+\.conv\.weight", k))
    if num_downs == 0 or "ensemble.alpha" not in state:
        raise ValueError(
            "expected a cenfusion translation generator state dict (keys 'down.0.conv.weight', "
            f"..., 'ensemble.alpha'), got keys {list(state)[:4]}"
        )
    widths = {
        "conv1": state["down.0.conv.weight"].shape[0],
        f"conv{num_downs}": state[f"down.{num_downs - 1}.conv.weight"].shape[0],
        f"deconv{num_downs}": state[f"up.{num_downs - 1}.conv.weight"].shape[1],
    }
    return num_downs, len(state["ensemble.alpha"]), widths


def official_translation_to_cenfusion(
    official: Mapping[str, Tensor], target: Mapping[str, Tensor]
) -> dict[str, Tensor]:
    """Convert a public generator state dict into the layout of ``target`` (our generator's).

    Raises ``ValueError`` listing every official key without a place, every ``target`` key
    left unfilled (and never-called public norms that are absent) and every shape mismatch.
    """
    num_downs, num_modalities, widths = _generator_geometry(target)
    expected_unused = _unused_norm_keys(num_downs, num_modalities, widths)
    rows: dict[str, dict[int, Tensor]] = {}
    converted: dict[str, Tensor] = {}
    unmatched, unused_mismatched = [], []
    for key, value in official.items():
        mapped = map_official_translation_key(key, num_downs)
        if mapped is not None and mapped[0] == UNUSED_NORM:
            if key not in expected_unused:
                unmatched.append(key)
            elif tuple(value.shape) != expected_unused[key]:
                unused_mismatched.append(
                    f"{key}: checkpoint {tuple(value.shape)} vs {expected_unused[key]}"
                )
            continue
        if mapped is None or mapped[0] not in target:
            unmatched.append(key)
            continue
        ours, row = mapped
        if row is None:
            converted[ours] = value
        else:
            rows.setdefault(ours, {})[row] = value
    _stack_modality_rows(rows, converted, unmatched)
    _refuse_unless_fit(
        "official translation checkpoint does not fit this generator",
        target,
        converted,
        unmatched,
        missing=[k for k in expected_unused if k not in official],
        mismatched=unused_mismatched,
    )
    return converted


def official_translation_name(key: str) -> str | None:
    """The public code's key for a cenfusion generator key (``{m}`` marks the modality)."""
    if key == "ensemble.alpha":
        return "alpha"
    match = re.fullmatch(r"(down|up)\.(\d+)\.(conv|norm)\.(\w+)", key)
    if match is None:
        return None
    kind = "conv" if match[1] == "down" else "deconv"
    block = f"{kind}{int(match[2]) + 1}"
    if match[3] == "conv":
        return f"{block}.{kind}.module.{match[4]}" if match[4] in ("weight", "bias") else None
    if match[4] not in _NORM_FIELDS:
        return None
    return f"{block}.insnorm_{kind}.insnorm_{{m}}.{match[4]}"


def unused_translation_norms(official: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The entries of the norms the public generator builds but never calls, as they are."""
    num_downs = _infer_translation_kwargs(official, {}).get("num_downs", 8)
    return {
        key: value.clone()
        for key, value in official.items()
        if (mapped := map_official_translation_key(key, num_downs)) is not None
        and mapped[0] == UNUSED_NORM
    }


def cenfusion_to_official_translation(
    state: Mapping[str, Tensor], unused_norms: Mapping[str, Tensor] | None = None
) -> dict[str, Tensor]:
    """Our generator's state dict -> the public generator's (``checkpoint-gen.pkl`` layout).

    Accepts the generator's own keys or a whole ``CENPix2Pix`` state dict (``generator.*``;
    the discriminator, which the public code saves in a file of its own, is left out). The
    never-called norms get ``unused_norms`` (what :func:`load_official` kept from the imported
    checkpoint, so import then export is the identity) or else their initial values.
    """
    if any(k.startswith("generator.") for k in state):
        state = {
            k.removeprefix("generator."): v for k, v in state.items() if k.startswith("generator.")
        }
    num_downs, num_modalities, widths = _generator_geometry(state)
    if "down.0.norm.weight" in state:
        raise ValueError(
            "this generator has a norm in its first encoder block (model.first_block_norm), "
            "which the public code builds but never calls: its export would lose that norm; "
            "expected a generator without it"
        )
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        official = official_translation_name(key)
        if official is None:
            raise ValueError(f"no public-code name for cenfusion generator key {key!r}")
        if "{m}" not in official:
            out[official] = value
        elif key.endswith("num_batches_tracked"):
            for m in range(num_modalities):
                out[official.format(m=m)] = value.clone()
        else:
            for m in range(value.shape[0]):
                out[official.format(m=m)] = value[m].clone()
    for key, shape in _unused_norm_keys(num_downs, num_modalities, widths).items():
        field = key.rsplit(".", 1)[1]
        kept = (unused_norms or {}).get(key)
        if kept is not None and tuple(kept.shape) == tuple(shape):
            out[key] = kept.clone()
        elif field == "num_batches_tracked":
            out[key] = torch.tensor(0)
        elif field in ("weight", "running_var"):
            out[key] = torch.ones(shape)
        else:
            out[key] = torch.zeros(shape)
    return out


def _infer_translation_kwargs(official: Mapping[str, Tensor], kwargs: dict) -> dict:
    """Fill modalities, ngf, num_downs and channel counts from the checkpoint when not given."""
    kwargs = dict(kwargs)
    if "alpha" in official and "modalities" not in kwargs:
        kwargs["modalities"] = len(official["alpha"])
    first = official.get("conv1.conv.module.weight")
    if first is not None and first.dim() == 4:
        kwargs.setdefault("ngf", first.shape[0])
        kwargs.setdefault("in_channels", first.shape[1])
    pattern = re.compile(r"conv(\d+)\.conv\.module\.weight")
    blocks = [int(m[1]) for k in official if (m := pattern.fullmatch(k))]
    if blocks:
        kwargs.setdefault("num_downs", max(blocks))
        last = official.get(f"deconv{max(blocks)}.deconv.module.weight")
        if last is not None and last.dim() == 4:
            kwargs.setdefault("out_channels", last.shape[1])
    return kwargs


__all__ = [
    "UNUSED_NORM",
    "cenfusion_to_official",
    "cenfusion_to_official_translation",
    "load_official",
    "map_official_key",
    "map_official_translation_key",
    "official_name",
    "official_to_cenfusion",
    "official_translation_name",
    "official_translation_to_cenfusion",
    "unused_translation_norms",
]


OFFICIAL_LOADERS: dict[str, Callable[..., nn.Module]] = {
    "segmentation": load_official_segmentation,
    "translation": load_official_translation,
}
"""``{task: loader}``: how each task's public-code checkpoint becomes a cenfusion model."""
