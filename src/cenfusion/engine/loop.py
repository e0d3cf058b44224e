"""Pieces every training loop shares: the per-epoch data order."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset


def epoch_loader(
    dataset: Dataset, batch_size: int, workers: int, seed: int, epoch: int
) -> DataLoader:
    """A shuffled loader whose order is a function of (seed, epoch) only.

    A resumed run therefore sees exactly the batches the uninterrupted run saw.
    """
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=len(dataset) > batch_size,
        num_workers=workers,
        generator=generator,
    )


def steps_in_epoch(loader: DataLoader, max_steps: int | None) -> int:
    """The batches one epoch trains on: the whole loader, or its first ``max_steps``."""
    return min(len(loader), max_steps) if max_steps else len(loader)
