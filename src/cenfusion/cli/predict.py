"""``cenfusion predict --checkpoint CKPT --rgb a.png --depth b.png -o out.png``.

One flag per modality of the model (its names, e.g. ``--rgb``, ``--depth``, ``--thermal``, or
for translation ``--reshading``, ``--edge_texture``), each a file or, for a batch, a folder;
folders are matched by file name stem. Leaving modalities out predicts from the others (a
camera missing): their branches and their ensemble, with a warning.

Segmentation checkpoints: writes the colour-coded mask, ``*_overlay.png`` (mask over the RGB
image) and ``*_labels.png`` (class indices).

Translation checkpoints: each input is read with the training data's per-domain
preprocessing; writes the ensemble's translation to the output PNG and each branch's to
``*_<modality>.png``, at the generator's resolution (``data.val_resize``, else the input size
when it is a multiple of ``2 ** model.num_downs``, else ``data.crop_size``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from cenfusion.engine.speed import apply_inference_speed
from cenfusion.tasks import load_trained


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="segment or translate images with a trained checkpoint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("-o", "--output", required=True, help="output PNG, or folder for folders")
    parser.add_argument(
        "--speed",
        choices=("exact", "fast"),
        default="exact",
        help="fast: this host's fastest settings for inference (bf16 + channels_last with bf16 "
        "hardware, else fp32)",
    )
    parser.set_defaults(func=run, accepts_extra=True)


def parse_modality_flags(extra: list[str]) -> dict[str, Path]:
    """``--rgb a.png --depth b.png`` -> ``{"rgb": Path("a.png"), "depth": Path("b.png")}``."""
    if len(extra) % 2 or not all(flag.startswith("--") for flag in extra[::2]):
        raise ValueError(f"expected --<modality> PATH pairs, got {extra}")
    inputs: dict[str, Path] = {}
    for flag, path in zip(extra[::2], extra[1::2], strict=True):
        if flag[2:] in inputs:
            raise ValueError(f"{flag} is given twice ({str(inputs[flag[2:]])!r} and {path!r})")
        inputs[flag[2:]] = Path(path)
    return inputs


def check_modalities(inputs: dict[str, Path], modalities: Sequence[str]) -> list[str]:
    """The model's modalities missing from ``inputs`` (a camera missing is allowed); refuses
    no input at all and a modality the model does not take."""
    flags = " ".join(f"--{m}" for m in modalities)
    if not inputs:
        raise ValueError(
            f"no input given: this checkpoint's model takes {flags} (each a file "
            "or a folder; any non-empty subset)"
        )
    unknown = [m for m in inputs if m not in modalities]
    if unknown:
        raise ValueError(
            f"--{unknown[0]}: this checkpoint's model takes {flags}, not --{unknown[0]}"
        )
    return [m for m in modalities if m not in inputs]


def run(args: argparse.Namespace) -> int:
    inputs = parse_modality_flags(args.extra)
    for name, path in inputs.items():
        if not path.exists():
            raise FileNotFoundError(f"--{name}: {str(path)!r} does not exist")
    task, model, config = load_trained(args.checkpoint)
    missing = check_modalities(inputs, model.modalities)
    if missing:
        given = ", ".join(inputs)
        message = f"no --{' --'.join(missing)}: predicting from {given} only (their ensemble)"
        print(f"cenfusion predict: {message}", file=sys.stderr)
        model = model.with_modalities([m for m in model.modalities if m in inputs])
    if args.speed != "exact":
        settings = apply_inference_speed(model, config, args.speed)
        print(f"cenfusion predict: speed {args.speed}: {settings.describe()}", file=sys.stderr)
    output = Path(args.output)
    if all(path.is_dir() for path in inputs.values()):
        first = next(iter(inputs))
        count = 0
        for file in sorted(inputs[first].iterdir()):
            matches = {name: _match(folder, file.stem) for name, folder in inputs.items()}
            task.predict_files(model, config, matches, output / f"{file.stem}.png")
            count += 1
        print(f"wrote {count} {task.prediction_noun} to {output}")
        return 0
    paths = task.predict_files(model, config, inputs, output)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _match(folder: Path, stem: str) -> Path:
    candidates = sorted(folder.glob(f"{stem}.*"))
    if not candidates:
        raise FileNotFoundError(f"no file named {stem}.* in {str(folder)!r}")
    return candidates[0]
