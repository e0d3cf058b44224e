"""The public segmentation code's checkpoints: what they hold and how they are written back."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from cenfusion.compat.official import load_official_segmentation
from cenfusion.config import Config

LAYER3_BLOCKS_TO_BACKBONE = {6: "resnet50", 23: "resnet101", 36: "resnet152"}


def recognises_official(official: Mapping[str, Tensor]) -> bool:
    """A public-code RefineNet state dict has a classifier and ResNet layers."""
    return "clf_conv.module.weight" in official or any(k.startswith("layer3.") for k in official)


def infer_settings(official: Mapping[str, Tensor]) -> dict[str, Any]:
    """Backbone, class count and modality count of a public-code RefineNet state dict."""
    blocks = {int(k.split(".")[1]) for k in official if k.startswith("layer3.")}
    if not blocks or max(blocks) + 1 not in LAYER3_BLOCKS_TO_BACKBONE:
        raise ValueError(
            "official checkpoint: cannot tell the ResNet depth (layer3 has "
            f"{max(blocks) + 1 if blocks else 0} blocks; expected 6, 23 or 36)"
        )
    classifier = official.get("clf_conv.module.weight")
    if classifier is None or "alpha" not in official:
        raise ValueError("official checkpoint: no 'clf_conv.module.weight' or 'alpha' key")
    return {
        "backbone": LAYER3_BLOCKS_TO_BACKBONE[max(blocks) + 1],
        "num_classes": int(classifier.shape[0]),
        "num_modalities": int(official["alpha"].shape[0]),
    }


def modality_names(given: list[str] | None, count: int, default: list[str]) -> list[str]:
    """``given`` (``--modalities``), else ``default`` when it has ``count`` names, else
    ``m0 .. m{count-1}``."""
    if given:
        names = list(given)
    else:
        names = default if len(default) == count else [f"m{i}" for i in range(count)]
    if len(names) != count:
        raise ValueError(f"--modalities names {len(names)} modalities, the checkpoint has {count}")
    return names


def import_official(
    official: Mapping[str, Tensor], modalities: list[str] | None
) -> tuple[dict[str, Any], str]:
    """A cenfusion checkpoint payload of a public RefineNet, and what it is."""
    settings = infer_settings(official)
    names = modality_names(modalities, settings["num_modalities"], ["rgb", "depth"])
    model = load_official_segmentation(
        official,
        backbone=settings["backbone"],
        num_classes=settings["num_classes"],
        modalities=tuple(names),
    )
    config = Config(task="segmentation")
    config.model.backbone = settings["backbone"]
    config.model.num_classes = settings["num_classes"]
    config.model.modalities = names
    config.model.pretrained = None
    payload = {"model": model.state_dict(), "epoch": -1, "config": json.dumps(config.to_dict())}
    what = (
        f"RefineNet-{settings['backbone']}, {settings['num_classes']} classes, modalities {names}"
    )
    return payload, what


def export_official(payload: Mapping[str, Any], official: dict[str, Tensor]) -> tuple[Any, str]:
    """The public code's checkpoint layout (``{'segmenter': ..., 'epoch_start', 'best_val'}``)."""
    epoch = int(payload.get("epoch", -1)) + 1
    saved = {
        "segmenter": {f"module.{k}": v for k, v in official.items()},
        "epoch_start": epoch,
        "best_val": 0.0,
    }
    return saved, f"public code format, {len(official)} keys"
