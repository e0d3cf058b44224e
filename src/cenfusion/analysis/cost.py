"""What a model costs: parameters, fusion parameters and FLOPs per part, for any input size.

FLOPs are counted by torch's own counter (``torch.utils.flop_counter.FlopCounterMode``: two per
multiply-add of the matrix products and convolutions; elementwise operations are not counted),
on one forward pass in evaluation mode. Parts are the model's top-level children (a CEN
segmentation model: ``backbone``, ``decoder``, ``ensemble``; a translation generator: its
encoder and decoder blocks). The stacked network runs every modality through the same
weights in one batch, so each branch costs the part's FLOPs divided by the number of
modalities.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from cenfusion.models.fusion import fusion_parameter_count


@dataclass
class ModelCost:
    """Parameters and forward FLOPs, in total and per top-level part."""

    parameters: int
    fusion_parameters: int
    flops: int
    flops_per_part: dict[str, int] = field(default_factory=dict)
    parameters_per_part: dict[str, int] = field(default_factory=dict)
    num_modalities: int = 1

    def format(self, title: str = "") -> str:
        lines = [title] if title else []
        header = f"{'part':<16}{'params':>12}{'GFLOP':>12}{'GFLOP/branch':>14}"
        lines += [header, "-" * len(header)]
        for part, flops in self.flops_per_part.items():
            params = self.parameters_per_part.get(part, 0)
            per_branch = flops / self.num_modalities / 1e9
            lines.append(f"{part:<16}{params:>12,}{flops / 1e9:>12.2f}{per_branch:>14.2f}")
        lines.append(f"{'total':<16}{self.parameters:>12,}{self.flops / 1e9:>12.2f}")
        lines.append(f"fusion parameters: {self.fusion_parameters:,}")
        return "\n".join(lines)


def _flops_below(module: nn.Module, name: str, counts: Mapping[str, Mapping]) -> int:
    """FLOPs of ``module``: its own count when it was called as a module, else the sum over
    its children (a part whose method the model calls directly, or a list of blocks)."""
    if name in counts:
        return int(sum(counts[name].values()))
    return sum(_flops_below(c, f"{name}.{n}", counts) for n, c in module.named_children())


def model_cost(model: nn.Module, inputs: Mapping[str, Tensor] | Tensor) -> ModelCost:
    """Count ``model``'s parameters and the FLOPs of one forward pass on ``inputs``."""
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(inputs)
    finally:
        model.train(was_training)
    counts = counter.get_flop_counts()
    root = type(model).__name__  # the counter names modules from the model's class
    per_part = {}
    for name, child in model.named_children():
        flops = _flops_below(child, f"{root}.{name}", counts)
        if flops or any(p.numel() for p in child.parameters()):
            per_part[name] = int(flops)
    total = int(sum(counts.get("Global", {}).values()))
    return ModelCost(
        parameters=sum(p.numel() for p in model.parameters()),
        fusion_parameters=fusion_parameter_count(model),
        flops=total,
        flops_per_part=per_part,
        parameters_per_part={
            name: sum(p.numel() for p in child.parameters())
            for name, child in model.named_children()
            if name in per_part
        },
        num_modalities=int(getattr(model, "num_modalities", 1)),
    )
