"""``cenfusion export CKPT --format onnx|torchscript|backbone -o OUT``: a trained model.

The exported model takes one input per modality (named after it) and returns one output per
modality (``out_<modality>``) plus the ``ensemble``; batch size, height and width are dynamic
(height and width in multiples of 32 for segmentation, of ``2**num_downs`` for translation).
``backbone`` writes a segmentation model's ResNet trunk as a torchvision-format state dict, the
start of every method in a comparison's pretrained regime (``model.pretrained=OUT``).
"""

from __future__ import annotations

import argparse

from cenfusion.export import FORMATS, export_checkpoint


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="write a trained model as ONNX or TorchScript for inference"
    )
    parser.add_argument("checkpoint", help="a cenfusion checkpoint (.pt)")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="onnx",
        help="onnx, torchscript, or backbone: the segmentation trunk as a torchvision-format "
        "state dict (the first modality's norms) for model.pretrained of later runs",
    )
    parser.add_argument("-o", "--output", required=True, help="the .onnx or .pt file to write")
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="height and width of the example input used to trace (the result is dynamic)",
    )
    parser.add_argument(
        "--speed",
        choices=("exact", "fast"),
        default="exact",
        help="fast: bake this host's inference choice into a torchscript file (bf16 autocast + "
        "channels_last with bf16 hardware, else fp32); onnx and backbone stay fp32",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path, settings = export_checkpoint(
        args.checkpoint,
        args.output,
        args.format,
        tuple(args.size) if args.size else None,
        args.speed,
    )
    if args.format == "backbone":
        print(f"wrote {path}: the ResNet trunk in torchvision's layout (model.pretrained={path})")
        return 0
    print(
        f"wrote {path} ({args.format}): inputs named after the modalities, outputs "
        "out_<modality> and ensemble"
        + (f"; speed fast: {settings.describe()}" if args.speed == "fast" else "")
    )
    return 0
