"""``cenfusion demo``: a short end-to-end run of a CEN ResNet on random multimodal data.

Until the segmentation task lands this is the main job of ``make demo``: it builds a CEN
backbone over two modalities, trains it for a few steps with a per-modality 1x1 head, the
ensemble and the disjoint L1 term (a strong lambda so that channels start exchanging), and
prints what happened: losses, exchanged channels per stage, and the parameter count.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from tqdm import tqdm

from cenfusion.analysis.exchange_stats import exchange_statistics, exchanged_fraction
from cenfusion.models.backbones import create_backbone
from cenfusion.nn import Ensemble, sparsity_penalty


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="train a CEN ResNet for a few steps on random data and report"
    )
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--modalities", default="rgb,depth", help="comma-separated names")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--size", default="120x160", help="HxW of the random inputs")
    parser.add_argument("--lam", type=float, default=5e-2, help="L1 weight (strong on purpose)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    torch.manual_seed(args.seed)
    modalities = tuple(name.strip() for name in args.modalities.split(",") if name.strip())
    height, width = (int(v) for v in args.size.lower().split("x"))
    backbone = create_backbone(args.backbone, modalities)
    num_classes = 5
    head = nn.Conv2d(backbone.feature_channels[-1], num_classes, 1)
    ensemble = Ensemble(len(modalities))
    params = [*backbone.parameters(), *head.parameters(), *ensemble.parameters()]
    optimiser = torch.optim.SGD(params, lr=0.05, momentum=0.9)
    inputs = {
        name: torch.randn(args.batch_size, 3 if i == 0 else 1, height, width)
        for i, name in enumerate(modalities)
    }
    stride = backbone.feature_strides[-1]
    target_size = (args.batch_size, -(-height // stride), -(-width // stride))
    target = torch.randint(0, num_classes, target_size)
    print(
        f"CEN {args.backbone} over {list(modalities)}: {sum(p.numel() for p in params):,} "
        f"parameters, {len(exchange_statistics(backbone))} exchange sites, "
        f"inputs {args.batch_size}x{height}x{width}"
    )
    start = time.perf_counter()
    progress = tqdm(range(args.steps), desc="training", unit="step")
    for _ in progress:
        logits = head(backbone(inputs)[-1])
        per_modality = logits.split(args.batch_size)
        task = sum(nn.functional.cross_entropy(out, target) for out in per_modality)
        task = task + nn.functional.cross_entropy(ensemble(logits), target)
        penalty = sparsity_penalty(backbone, args.lam)
        optimiser.zero_grad()
        (task + penalty).backward()
        optimiser.step()
        progress.set_postfix(
            loss=f"{task.item():.3f}",
            l1=f"{penalty.item():.3f}",
            exchanged=f"{exchanged_fraction(backbone):.1%}",
        )
    elapsed = time.perf_counter() - start
    print(f"\n{args.steps} steps in {elapsed:.1f} s ({elapsed / args.steps * 1e3:.0f} ms/step)")
    print(f"ensemble weights softmax(alpha): {ensemble.weights().detach().numpy().round(3)}")
    print(_stage_table(backbone, modalities))
    return 0


def _stage_table(backbone: nn.Module, modalities: tuple[str, ...]) -> str:
    rows = {}
    for stats in exchange_statistics(backbone):
        stage = stats.site.split(".")[0]
        exchanged, channels = rows.get(stage, ((0,) * len(modalities), 0))
        rows[stage] = (
            tuple(a + b for a, b in zip(exchanged, stats.exchanged, strict=True)),
            channels + stats.num_channels,
        )
    header = f"{'stage':<8}" + "".join(f"{name + ' exch.':>16}" for name in modalities)
    lines = [header, "-" * len(header)]
    for stage, (exchanged, channels) in rows.items():
        cells = "".join(f"{f'{n}/{channels} ({n / channels:.1%})':>16}" for n in exchanged)
        lines.append(f"{stage:<8}{cells}")
    return "\n".join(lines)
