"""Tiny models with exchange sites, and checkpoints of them, for the analysis tests."""

from __future__ import annotations

import json

import torch
from torch import nn

from cenfusion.config import load_config
from cenfusion.engine.checkpoint import save_checkpoint
from cenfusion.nn import ModalityBatchNorm2d, exchange_sites
from cenfusion.tasks import get_task


class TwoSites(nn.Module):
    """conv -> exchange site -> conv -> exchange site, over stacked modalities."""

    def __init__(self, num_modalities: int, channels: int = 8, threshold: float | None = 0.1):
        super().__init__()
        self.conv1 = nn.Conv2d(3, channels, 3, padding=1)
        self.norm1 = ModalityBatchNorm2d(
            channels, num_modalities, exchange_threshold=threshold, exchange_site=True
        )
        self.conv2 = nn.Conv2d(channels, 2 * channels, 3, padding=1)
        self.norm2 = ModalityBatchNorm2d(
            2 * channels, num_modalities, exchange_threshold=threshold, exchange_site=True
        )
        self.plain = ModalityBatchNorm2d(2 * channels, num_modalities)  # not a site

    def forward_stacked(self, x: torch.Tensor) -> torch.Tensor:
        return self.plain(self.norm2(self.conv2(self.norm1(self.conv1(x)))))


def set_gammas(model: nn.Module, seed: int, low_share: float = 0.4) -> None:
    """Random gammas of the exchange sites in [-1, 1], about ``low_share`` of them below 0.05."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, module in exchange_sites(model):
            gamma = torch.rand(module.weight.shape, generator=generator) * 2 - 1
            low = torch.rand(module.weight.shape, generator=generator) < low_share
            small = (torch.rand(module.weight.shape, generator=generator) - 0.5) * 0.1
            module.weight.copy_(torch.where(low, small, gamma))


SEGMENTATION = [
    "model.backbone=resnet18",
    "model.num_classes=5",
    "model.decoder_channels=[16, 8]",
]
TRANSLATION = [
    "task=translation",
    "model.arch=pix2pix",
    "model.modalities=[texture, reshading]",
    "model.target=rgb",
    "model.ngf=4",
    "model.ndf=4",
    "model.num_downs=5",
    "data.format=taskonomy",
]


def write_checkpoint(path, overrides: list[str], seed: int = 0):
    """Build the model a config describes, give it varied gammas, save it as training does."""
    config = load_config(None, [f"output_dir={path.parent}", *overrides])
    torch.manual_seed(seed)
    model = get_task(config.task).build_model(config)
    set_gammas(model, seed)
    save_checkpoint({"model": model.state_dict(), "config": json.dumps(config.to_dict())}, path)
    return path, model, config
