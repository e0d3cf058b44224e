"""The public translation code's generator checkpoints (``checkpoint-gen.pkl``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from cenfusion.compat.official import load_official_translation
from cenfusion.config import Config
from cenfusion.tasks.segmentation.official import modality_names


def recognises_official(official: Mapping[str, Tensor]) -> bool:
    """The public U-Net generator's first convolution is ``conv1.conv.module``."""
    return "conv1.conv.module.weight" in official


def import_official(
    official: Mapping[str, Tensor], modalities: list[str] | None
) -> tuple[dict[str, Any], str]:
    """A cenfusion checkpoint payload of a public generator, and what it is."""
    count = int(official["alpha"].shape[0]) if "alpha" in official else 0
    names = modality_names(modalities, count, [])
    model = load_official_translation(official, modalities=tuple(names))
    generator = model.generator
    config = Config(task="translation")
    config.model.modalities = names
    config.model.ngf = int(generator.down[0].conv.weight.shape[0])
    config.model.num_downs = len(generator.down)
    payload = {
        "model": model.state_dict(),
        "epoch": -1,
        "config": json.dumps(config.to_dict()),
        "official_unused_norms": model.official_unused_norms,
    }
    what = (
        f"CEN pix2pix generator, ngf {config.model.ngf}, {config.model.num_downs} levels, "
        f"modalities {names}"
    )
    return payload, what


def export_official(payload: Mapping[str, Any], official: dict[str, Tensor]) -> tuple[Any, str]:
    """The public code's ``checkpoint-gen.pkl``: a plain state dict."""
    return official, f"public generator, {len(official)} keys"
