"""``cenfusion export CKPT --format onnx|torchscript -o OUT``: a trained model for inference.

The exported model takes one input per modality (named after it) and returns one output per
modality (``out_<modality>``) plus the ``ensemble``; batch size, height and width are dynamic
(height and width in multiples of 32 for segmentation, of ``2**num_downs`` for translation).
"""

from __future__ import annotations

import argparse

from cenfusion.export import export_checkpoint


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="write a trained model as ONNX or TorchScript for inference"
    )
    parser.add_argument("checkpoint", help="a cenfusion checkpoint (.pt)")
    parser.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    parser.add_argument("-o", "--output", required=True, help="the .onnx or .pt file to write")
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="height and width of the example input used to trace (the result is dynamic)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = export_checkpoint(
        args.checkpoint, args.output, args.format, tuple(args.size) if args.size else None
    )
    print(
        f"wrote {path} ({args.format}): inputs named after the modalities, outputs "
        "out_<modality> and ensemble"
    )
    return 0
