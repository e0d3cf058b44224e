"""Time the CEN ResNet backbone against the list-of-tensors design and a unimodal ResNet.

    python benchmarks/bench_core.py [--backbone resnet50] [--modalities 2 3] [--repeats 5]

For each M: inference (eval, no_grad) and a training step (train mode, forward + backward of
the sum of the feature means) of
  - ``stacked``: cenfusion's CEN ResNet (one tensor for all modalities),
  - ``list``: the same network in the public code's design (benchmarks/list_baseline.py),
    with the same weights; its features are checked equal to ``stacked``'s before timing,
  - ``unimodal``: a plain ResNet (``nn.BatchNorm2d``) on one modality, batch B.
Each variant is timed round-robin (stacked, list, unimodal, stacked, ...) so that the drift of
a shared machine falls on all three alike. Reports medians after warm-up, the speed-up of
``stacked`` over ``list`` and the fusion overhead ``time(stacked, M) / (M * time(unimodal))``;
writes benchmarks/results/core.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cenfusion  # noqa: E402
from benchmarks.list_baseline import ListResNet  # noqa: E402
from benchmarks.run import interleaved_medians  # noqa: E402
from cenfusion.nn import ModalityBatchNorm2d  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def realistic_scaling_factors(model: torch.nn.Module, seed: int = 0) -> None:
    """~30 % of the scaling factors below the threshold, so the exchange really runs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, ModalityBatchNorm2d):
                u = torch.rand(module.weight.shape, generator=g)
                module.weight.copy_(torch.where(u < 0.3, u / 30, 0.5 + u))


def step_fn(model: torch.nn.Module, inputs, training: bool) -> Callable[[], None]:
    def features(out):
        return [o if isinstance(o, torch.Tensor) else torch.cat(o) for o in out]

    if training:
        model.train()

        def step() -> None:
            model.zero_grad(set_to_none=True)
            loss = sum(f.float().mean() for f in features(model(inputs)))
            loss.backward()

        return step
    model.eval()

    def infer() -> None:
        with torch.no_grad():
            model(inputs)

    return infer


def check_equal(stacked, twin, inputs) -> float:
    stacked.eval()
    twin.eval()
    with torch.no_grad():
        ours = stacked(inputs)
        theirs = twin(inputs)
    diff = max((a - torch.cat(b)).abs().max().item() for a, b in zip(ours, theirs, strict=True))
    if diff > 1e-4:
        raise AssertionError(f"stacked and list versions differ by {diff}")
    return diff


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--modalities", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "core.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batch, size = args.batch_size, args.size

    unimodal = cenfusion.create_plain_backbone(args.backbone)
    x = torch.randn(batch, 3, size, size)
    rows = []
    for num in args.modalities:
        stacked = cenfusion.create_backbone(args.backbone, num)
        realistic_scaling_factors(stacked)
        twin = ListResNet(stacked)
        inputs = [torch.randn(batch, 3, size, size) for _ in range(num)]
        max_diff = check_equal(stacked, twin, inputs)
        for mode in ("infer", "train"):
            training = mode == "train"
            t = interleaved_medians(
                {
                    "stacked": step_fn(stacked, inputs, training),
                    "list": step_fn(twin, inputs, training),
                    "unimodal": step_fn(unimodal, x, training),
                },
                args.warmup,
                args.repeats,
                "cpu",
            )
            rows.append(
                {
                    "backbone": args.backbone,
                    "modalities": num,
                    "mode": mode,
                    "stacked_ms": t["stacked"] * 1e3,
                    "list_ms": t["list"] * 1e3,
                    "unimodal_ms": t["unimodal"] * 1e3,
                    "speedup_vs_list": t["list"] / t["stacked"],
                    "fusion_overhead": t["stacked"] / (num * t["unimodal"]),
                    "list_fusion_overhead": t["list"] / (num * t["unimodal"]),
                    "max_abs_diff": max_diff,
                }
            )
    print_table(rows, args)
    write_json(rows, args)
    return 0


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    print(
        f"\n{args.backbone}, batch {args.batch_size} x 3 x {args.size} x {args.size} per modality, "
        f"fp32, {torch.get_num_threads()} threads, median of {args.repeats} after "
        f"{args.warmup} warm-up"
    )
    header = (
        f"{'M':>2} {'mode':<6}{'stacked ms':>12}{'list ms':>10}{'unimodal ms':>13}"
        f"{'vs list':>9}{'overhead':>10}{'list ovh.':>11}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['modalities']:>2} {r['mode']:<6}{r['stacked_ms']:>12.1f}{r['list_ms']:>10.1f}"
            f"{r['unimodal_ms']:>13.1f}{r['speedup_vs_list']:>8.2f}x{r['fusion_overhead']:>10.3f}"
            f"{r['list_fusion_overhead']:>11.3f}"
        )


def write_json(rows: list[dict], args: argparse.Namespace) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "device": "cpu",
    }
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    payload = {"machine": machine, "settings": settings, "rows": rows}
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
