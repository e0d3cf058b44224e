"""Two CPU ideas for the stacked model, measured before anything is built into the library.

    python -m benchmarks.bench_layouts [--model refinenet-resnet50] [--modalities 2 3]

- ``chunked``: every shared convolution runs once per modality slice and the slices are
  concatenated (same weights, same maths): on a 2-core AVX2 CPU oneDNN ran the convolutions of
  one batch of M*B slower than M batches of B (``README.md``), so this would keep the stacked
  design's norms and exchange with the list design's convolutions.
- ``folded`` (inference only): each eval-mode private BatchNorm folded into the convolution
  before it, one weight per modality (``W_m = W * scale_m``, bias ``shift_m``): no norm pass at
  all; the exchange still runs after, on the same values.

Both are timed round-robin against the stacked default and the list design (``list_baseline``),
outputs checked equal first; writes ``results/layouts.json``. Nothing here is used by the
library: the figures decide whether it should be.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.list_baseline import list_twin
from benchmarks.run import MODELS, RESULTS, Settings, build_cen, interleaved_medians, machine_info
from cenfusion.nn import ModalityBatchNorm2d, channel_exchange, split_modalities


class ChunkedConv(nn.Module):
    """A shared convolution run per modality slice, the results concatenated."""

    def __init__(self, conv: nn.Conv2d, num_modalities: int) -> None:
        super().__init__()
        self.conv = conv
        self.num_modalities = num_modalities

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.conv(x_m) for x_m in split_modalities(x, self.num_modalities)])


def chunked(model: nn.Module, num_modalities: int) -> nn.Module:
    """A copy of ``model`` whose every ``nn.Conv2d`` runs per modality."""
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) is nn.Conv2d:
                setattr(parent, name, ChunkedConv(child, num_modalities))
    return model


class FoldedConvNorm(nn.Module):
    """conv -> eval-mode private BatchNorm as one convolution per modality (+ the exchange)."""

    def __init__(self, conv: nn.Conv2d, norm: ModalityBatchNorm2d) -> None:
        super().__init__()
        scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)  # (M, C)
        shift = norm.bias - norm.running_mean * scale
        if conv.bias is not None:
            shift = shift + conv.bias * scale
        self.weight = nn.Parameter(conv.weight[None] * scale[:, :, None, None, None])
        self.bias = nn.Parameter(shift)
        self.register_buffer("gamma", norm.weight.detach().clone())
        self.threshold = norm.exchange_threshold
        self.num_modalities = norm.num_modalities
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation

    def forward(self, x: Tensor) -> Tensor:
        y = torch.cat(
            [
                F.conv2d(
                    x_m, self.weight[m], self.bias[m], self.stride, self.padding, self.dilation
                )
                for m, x_m in enumerate(split_modalities(x, self.num_modalities))
            ]
        )
        if self.threshold is None:
            return y
        return channel_exchange(y, self.gamma, self.threshold, self.num_modalities)


def folded(model: nn.Module) -> nn.Module:
    """An eval-only copy of a segmentation model with every conv + private BN folded (a norm
    is folded into the convolution registered just before it: conv1/bn1, downsample 0/1)."""
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        for parent in list(model.modules()):
            names = [n for n, _ in parent.named_children()]
            for conv_name, norm_name in zip(names, names[1:], strict=False):
                conv, norm = getattr(parent, conv_name), getattr(parent, norm_name)
                if type(conv) is nn.Conv2d and isinstance(norm, ModalityBatchNorm2d):
                    setattr(parent, conv_name, FoldedConvNorm(conv, norm))
                    setattr(parent, norm_name, nn.Identity())
    return model


def infer_fn(model: nn.Module, inputs: object) -> Callable[[], None]:
    def run() -> None:
        with torch.no_grad():
            model(inputs)

    return run


def train_fn(model: nn.Module, inputs: object) -> Callable[[], None]:
    optimiser = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def run() -> None:
        out = model(inputs)
        out = out.values() if isinstance(out, dict) else out
        sum(o.square().mean() for o in out).backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="refinenet-resnet50", choices=list(MODELS))
    parser.add_argument("--modalities", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--decoder-channels", type=int, nargs=2, default=[512, 256])
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "layouts.json")
    args = parser.parse_args(argv)
    settings = Settings(
        size=args.size, batch_size=args.batch_size, decoder_channels=tuple(args.decoder_channels)
    )
    rows = []
    for m in args.modalities:
        cen = build_cen(args.model, m, settings)
        images = [torch.randn(args.batch_size, 3, args.size, args.size) for _ in range(m)]
        x = torch.cat(images)
        models = {"stacked": cen, "chunked": chunked(cen, m), "list": list_twin(cen)}
        if MODELS[args.model].task == "segmentation":
            models["folded"] = folded(cen)
        for model in models.values():
            model.eval()
        with torch.no_grad():
            reference = torch.cat(list(cen(x).values()))
            for name, model in models.items():
                out = model(images if name == "list" else x)
                out = torch.cat(list(out.values()) if isinstance(out, dict) else out)
                error = float((out - reference).norm() / reference.norm())
                assert error < 1e-4, (name, error)

        inputs = {n: images if n == "list" else x for n in models}
        t_infer = interleaved_medians(
            {n: infer_fn(models[n], inputs[n]) for n in models}, args.warmup, args.repeats, "cpu"
        )
        for model in models.values():
            model.train()
        trainable = [n for n in models if n != "folded"]
        t_train = interleaved_medians(
            {n: train_fn(models[n], inputs[n]) for n in trainable}, args.warmup, args.repeats, "cpu"
        )
        for mode, times in (("infer", t_infer), ("train", t_train)):
            for name, seconds in times.items():
                rows.append(
                    {"model": args.model, "modalities": m, "mode": mode, "variant": name,
                     "ms": seconds * 1e3, "vs_stacked": times["stacked"] / seconds,
                     "vs_list": times["list"] / seconds}
                )  # fmt: skip
                r = rows[-1]
                print(
                    f"M={m} {mode:<6}{name:<9}{r['ms']:>9.1f} ms  x{r['vs_stacked']:.2f} of "
                    f"stacked  x{r['vs_list']:.2f} of list",
                    flush=True,
                )
    payload = {"machine": machine_info(settings), "settings": vars(args), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
