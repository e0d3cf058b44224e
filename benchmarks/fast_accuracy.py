"""How exact ``fast`` inference is on a trained segmentation model: the share of pixels whose
ensemble argmax agrees with fp32, and the mIoU of both, on a split of its data.

    python -m benchmarks.fast_accuracy CONFIG [KEY=VALUE ...] --checkpoint CKPT [--split test]
        [--limit N]
        [--json benchmarks/results/fast_accuracy_<host>.json]

The model runs twice per batch, once as it is (fp32, ``exact``) and once under
``cenfusion.accelerate(model, speed="fast")`` (this host's choice, printed); a host without bf16
hardware gets fp32 for both, and the table says so. Prints a table and writes JSON with the
machine's facts. Accuracy only: run it under any load.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from cenfusion.config import load_config
from cenfusion.engine.speed import accelerate, host_capabilities
from cenfusion.experiments.runner import machine_info
from cenfusion.metrics.segmentation import ConfusionMatrix
from cenfusion.tasks import get_task


def measure(
    config_path: str, overrides: list[str], checkpoint: str, split: str, limit: int | None
) -> dict:
    config = load_config(config_path, overrides)
    task = get_task(config.task)
    model = task.model_with_weights(config, checkpoint).eval()
    dataset = task.build_datasets(config, (split,))[split]
    fast = accelerate(model, mode="inference", speed="fast")
    names = [*model.modalities, "ensemble"]
    matrices = {(kind, name): ConfusionMatrix(config.model.num_classes) for kind in
                ("exact", "fast") for name in names}  # fmt: skip
    agree = labelled_agree = pixels = labelled = 0
    loader = DataLoader(dataset, batch_size=1)
    start = time.monotonic()
    with torch.no_grad():
        for index, batch in enumerate(loader):
            if limit is not None and index >= limit:
                break
            label = batch["label"]
            inputs = {m: batch[m] for m in model.modalities}
            size = tuple(label.shape[-2:])
            outputs = {"exact": model(inputs, size), "fast": fast(inputs, size)}
            for kind, named in outputs.items():
                for name in names:
                    matrices[kind, name].update(named[name].argmax(dim=1), label)
            same = outputs["exact"]["ensemble"].argmax(1) == outputs["fast"]["ensemble"].argmax(1)
            valid = label != config.data.ignore_index
            agree += int(same.sum())
            pixels += same.numel()
            labelled_agree += int(same[valid].sum())
            labelled += int(valid.sum())
    scores = {f"{kind} {name}": matrices[kind, name].compute().mean_iou for kind, name in matrices}
    return {
        "config": config_path,
        "overrides": overrides,
        "checkpoint": checkpoint,
        "split": split,
        "images": min(len(dataset), limit or len(dataset)),
        "fast_settings": fast.settings.describe(),
        "host": host_capabilities().__dict__,
        "machine": machine_info(),
        "argmax_agreement": agree / max(pixels, 1),
        "argmax_agreement_labelled": labelled_agree / max(labelled, 1),
        "mean_iou": scores,
        "seconds": time.monotonic() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--limit", type=int, default=None, help="the first N images only")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = measure(args.config, args.overrides, args.checkpoint, args.split, args.limit)
    print(f"host: {result['machine']['processor']} ({result['machine']['cpu_capability']}); "
          f"fast = {result['fast_settings']}")  # fmt: skip
    print(f"{result['images']} {args.split} images; ensemble argmax equal to fp32 on "
          f"{100 * result['argmax_agreement']:.2f} % of pixels "
          f"({100 * result['argmax_agreement_labelled']:.2f} % of labelled ones)")  # fmt: skip
    print(f"{'output':<12}{'exact mIoU':>12}{'fast mIoU':>12}")
    names = [key.split(" ", 1)[1] for key in result["mean_iou"] if key.startswith("exact ")]
    for name in names:
        exact, fast = result["mean_iou"][f"exact {name}"], result["mean_iou"][f"fast {name}"]
        print(f"{name:<12}{100 * exact:>12.2f}{100 * fast:>12.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
