"""``cenfusion import-official`` / ``export-official``: the public CEN code's checkpoints.

``import-official CKPT -o OUT.pt`` reads a checkpoint of the public code, a segmentation one
(``{'segmenter': state_dict, ...}``) or a translation generator (``checkpoint-gen.pkl``, a plain
state dict), infers the architecture from its tensors (backbone depth from the number of layer3
blocks, classes from the classifier, ngf and depth of the U-Net from its convolutions,
modalities from ``alpha``), maps every key and writes a cenfusion checkpoint that
``evaluate``/``predict`` take. ``export-official OUT.pt -o CKPT`` writes the reverse, for
checking results in the public code; importing then exporting gives the checkpoint back.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

LAYER3_BLOCKS_TO_BACKBONE = {6: "resnet50", 23: "resnet101", 36: "resnet152"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    importer = subparsers.add_parser(
        "import-official", help="convert a public CEN code checkpoint to cenfusion"
    )
    importer.add_argument("checkpoint", help="the public code's checkpoint (.pth.tar / .pt)")
    importer.add_argument("-o", "--output", required=True, help="cenfusion checkpoint to write")
    importer.add_argument(
        "--modalities", default=None, help="comma-separated names (default: rgb,depth for M=2)"
    )
    importer.set_defaults(func=run_import)
    exporter = subparsers.add_parser(
        "export-official", help="write a cenfusion checkpoint in the public code's format"
    )
    exporter.add_argument("checkpoint", help="a cenfusion checkpoint")
    exporter.add_argument("-o", "--output", required=True)
    exporter.set_defaults(func=run_export)


def infer_segmentation_settings(official: dict) -> dict:
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


def _modality_names(args: argparse.Namespace, count: int, default: list[str]) -> list[str]:
    if args.modalities:
        names = [name.strip() for name in args.modalities.split(",")]
    else:
        names = default if len(default) == count else [f"m{i}" for i in range(count)]
    if len(names) != count:
        raise ValueError(f"--modalities names {len(names)} modalities, the checkpoint has {count}")
    return names


def run_import(args: argparse.Namespace) -> int:
    from cenfusion.compat.official import _read_official, load_official, unwrap_official
    from cenfusion.config import Config
    from cenfusion.engine.checkpoint import save_checkpoint

    checkpoint = _read_official(args.checkpoint)
    official = unwrap_official(checkpoint)
    if "conv1.conv.module.weight" in official:
        return _import_translation(args, official)
    settings = infer_segmentation_settings(official)
    modalities = _modality_names(args, settings["num_modalities"], ["rgb", "depth"])
    model = load_official(
        official,
        backbone=settings["backbone"],
        num_classes=settings["num_classes"],
        modalities=tuple(modalities),
    )
    config = Config()
    config.model.backbone = settings["backbone"]
    config.model.num_classes = settings["num_classes"]
    config.model.modalities = modalities
    config.model.pretrained = None
    payload = {"model": model.state_dict(), "epoch": -1, "config": json.dumps(config.to_dict())}
    save_checkpoint(payload, args.output)
    print(
        f"imported {args.checkpoint}: RefineNet-{settings['backbone']}, "
        f"{settings['num_classes']} classes, modalities {modalities} -> {args.output}"
    )
    return 0


def _import_translation(args: argparse.Namespace, official: dict) -> int:
    from cenfusion.compat.official import load_official
    from cenfusion.config import Config
    from cenfusion.engine.checkpoint import save_checkpoint

    count = int(official["alpha"].shape[0]) if "alpha" in official else 0
    modalities = _modality_names(args, count, [])
    model = load_official(official, task="translation", modalities=tuple(modalities))
    generator = model.generator
    config = Config(task="translation")
    config.model.arch = "pix2pix"
    config.model.modalities = modalities
    config.model.ngf = int(generator.down[0].conv.weight.shape[0])
    config.model.num_downs = len(generator.down)
    payload = {
        "model": model.state_dict(),
        "epoch": -1,
        "config": json.dumps(config.to_dict()),
        "official_unused_norms": model.official_unused_norms,
    }
    save_checkpoint(payload, args.output)
    print(
        f"imported {args.checkpoint}: CEN pix2pix generator, ngf {config.model.ngf}, "
        f"{config.model.num_downs} levels, modalities {modalities} -> {args.output}"
    )
    return 0


def run_export(args: argparse.Namespace) -> int:
    import torch

    from cenfusion.compat.official import cenfusion_to_official
    from cenfusion.engine.checkpoint import load_checkpoint

    payload = load_checkpoint(args.checkpoint)
    official = cenfusion_to_official(payload["model"], payload.get("official_unused_norms"))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if json.loads(payload.get("config", "{}")).get("task") == "translation":
        torch.save(official, output)  # the public code's checkpoint-gen.pkl: a plain state dict
        print(f"exported {args.checkpoint} -> {output} (public generator, {len(official)} keys)")
        return 0
    epoch = int(payload.get("epoch", -1)) + 1
    torch.save(
        {"segmenter": {f"module.{k}": v for k, v in official.items()}, "epoch_start": epoch,
         "best_val": 0.0},
        output,
    )  # fmt: skip
    print(f"exported {args.checkpoint} -> {output} (public code format, {len(official)} keys)")
    return 0
