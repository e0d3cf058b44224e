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
from pathlib import Path

import torch

from cenfusion.compat.official import cenfusion_to_official, read_official, unwrap_official
from cenfusion.engine.checkpoint import checkpoint_config, load_checkpoint, save_checkpoint
from cenfusion.tasks import TASKS, get_task


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


def run_import(args: argparse.Namespace) -> int:
    official = unwrap_official(read_official(args.checkpoint))
    task = next((t for t in TASKS.values() if t.recognises_official(official)), None)
    if task is None:
        raise ValueError(
            f"{args.checkpoint}: not a checkpoint of the public code (neither a RefineNet with "
            "'clf_conv' and ResNet 'layer3' keys nor a U-Net generator with 'conv1.conv')"
        )
    modalities = [m.strip() for m in args.modalities.split(",")] if args.modalities else None
    payload, what = task.import_official(official, modalities)
    save_checkpoint(payload, args.output)
    print(f"imported {args.checkpoint}: {what} -> {args.output}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    payload = load_checkpoint(args.checkpoint)
    config = checkpoint_config(payload, args.checkpoint)
    # the public code's trunk has a site at every norm and exchanges at each; site_stages is
    # a segmentation key, hence the default
    for key in ("exchange_stages", "site_stages"):
        stages = getattr(config.model, key, "all")
        if stages != "all":
            raise ValueError(
                f"{args.checkpoint}: model.{key} is {stages!r}, but the public code exchanges "
                "at every site: its copy would predict differently"
            )
    task = get_task(config.task)
    official = cenfusion_to_official(payload["model"], payload.get("official_unused_norms"))
    saved, what = task.export_official(payload, official)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(saved, output)
    print(f"exported {args.checkpoint} -> {output} ({what})")
    return 0
