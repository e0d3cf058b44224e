"""Pieces every training loop shares: batch sizes, the per-epoch data order, determinism.

**Batch sizes.** ``train.batch_size`` is the global batch of one optimiser step, whatever the
number of processes ``W`` and ``train.accumulate_steps`` ``k``: each process trains on
``batch_size / W`` samples per step, in ``k`` micro-batches of ``batch_size / (W k)``. The same
config therefore takes the same optimiser steps on one process or several, with or without
accumulation (:class:`BatchPlan`).

**Order.** The samples of an epoch are a permutation that is a function of ``(seed, epoch)``
only (:func:`epoch_order`); step ``s`` takes its positions ``[s B, (s + 1) B)``, process ``r``
the ``r``-th slice of those. A resumed run, a run on more processes and an uninterrupted run
therefore see the same global batches; a run resumed mid-epoch starts at its step.

**Augmentation randomness.** By default the transforms draw from the torch RNG of whoever loads
the sample (the training process, or a DataLoader worker seeded from the epoch's generator),
which the checkpoints save and restore. ``train.per_sample_rng: true`` seeds every sample's
draws from ``(seed, epoch, position)`` instead (:class:`SeededSamples`), so that the augmented
batches do not depend on the number of processes or workers either.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cenfusion.config import Config
from cenfusion.engine import distributed
from cenfusion.engine.faults import check_nonfinite_policy


def epoch_order(num_samples: int, seed: int, epoch: int) -> list[int]:
    """The shuffled sample indices of ``epoch``: a function of (seed, epoch) only.

    The same permutation as earlier versions' shuffled DataLoader (which drew its workers' base
    seed from the generator before the permutation), so old runs resume unchanged.
    """
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    torch.empty((), dtype=torch.int64).random_(generator=generator)
    return torch.randperm(num_samples, generator=generator).tolist()


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """The seed of the augmentation of the sample at ``position`` of ``epoch``'s order."""
    return ((seed * 1_000_003 + epoch) * 1_000_000_007 + position) % (2**63)


@dataclass(frozen=True)
class BatchPlan:
    """How one optimiser step's ``batch_size`` samples are split over processes and
    accumulated micro-batches."""

    batch_size: int
    world_size: int = 1
    accumulate_steps: int = 1

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.accumulate_steps < 1:
            raise ValueError(
                f"train.batch_size and train.accumulate_steps must be >= 1, got "
                f"{self.batch_size} and {self.accumulate_steps}"
            )
        parts = self.world_size * self.accumulate_steps
        if self.batch_size % parts:
            raise ValueError(
                f"train.batch_size={self.batch_size} (the global batch of one optimiser step) "
                f"must be a multiple of {self.world_size} process(es) x train.accumulate_steps="
                f"{self.accumulate_steps} = {parts}"
            )

    @property
    def per_process(self) -> int:
        return self.batch_size // self.world_size

    @property
    def micro_batch(self) -> int:
        return self.per_process // self.accumulate_steps

    @property
    def simple(self) -> bool:
        """One process, no accumulation: the loss needs no rescaling."""
        return self.world_size == 1 and self.accumulate_steps == 1

    def steps(self, num_samples: int, max_steps: int | None = None) -> int:
        """Optimiser steps in an epoch of ``num_samples``: full global batches only, except that
        a single process without accumulation takes one short batch when the split is smaller
        than the batch (as before); at most ``max_steps`` when given."""
        if num_samples < 1:
            raise ValueError("the training split is empty")
        if num_samples < self.batch_size:
            if not self.simple:
                raise ValueError(
                    f"the training split has {num_samples} samples, fewer than "
                    f"train.batch_size={self.batch_size}: with several processes or "
                    "accumulation every optimiser step needs a full global batch"
                )
            steps = 1
        else:
            steps = num_samples // self.batch_size
        return min(steps, max_steps) if max_steps else steps


class EpochBatches(Sampler[list]):
    """The micro-batches (lists of sample indices) one process loads in one epoch.

    Yields ``accumulate_steps`` micro-batches per step from ``start_step`` to ``steps``; with
    ``sample_seeds`` each item is ``(index, seed)`` for :class:`SeededSamples`.
    """

    def __init__(
        self,
        num_samples: int,
        plan: BatchPlan,
        seed: int,
        epoch: int,
        rank: int = 0,
        steps: int | None = None,
        start_step: int = 0,
        sample_seeds: bool = False,
    ) -> None:
        self.num_samples = num_samples
        self.plan = plan
        self.seed = seed
        self.epoch = epoch
        self.rank = rank
        self.steps = plan.steps(num_samples) if steps is None else steps
        self.start_step = start_step
        self.sample_seeds = sample_seeds

    def __iter__(self) -> Iterator[list]:
        order = epoch_order(self.num_samples, self.seed, self.epoch)
        plan = self.plan
        for step in range(self.start_step, self.steps):
            begin = step * plan.batch_size
            positions = range(begin, min(begin + plan.batch_size, self.num_samples))
            mine = positions[self.rank * plan.per_process : (self.rank + 1) * plan.per_process]
            for micro in range(plan.accumulate_steps):
                chunk = mine[micro * plan.micro_batch : (micro + 1) * plan.micro_batch]
                if self.sample_seeds:
                    yield [(order[p], sample_seed(self.seed, self.epoch, p)) for p in chunk]
                else:
                    yield [order[p] for p in chunk]

    def __len__(self) -> int:
        return max(self.steps - self.start_step, 0) * self.plan.accumulate_steps


class SeededSamples(Dataset):
    """``dataset[(index, seed)]``: the sample with its augmentation drawn from torch's CPU RNG
    seeded with ``seed``; the caller's random state is left as it was."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int] | int):
        if not isinstance(key, tuple):
            return self.dataset[key]
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            return self.dataset[index]


def seed_worker(worker_id: int) -> None:
    """DataLoader workers: seed Python's and NumPy's RNGs from the worker's torch seed (which
    the epoch's generator fixes), for transforms that draw from them."""
    seed = torch.initial_seed()
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the global RNG user transforms draw from


def epoch_loader(
    dataset: Dataset,
    plan: BatchPlan,
    workers: int,
    seed: int,
    epoch: int,
    rank: int = 0,
    steps: int | None = None,
    start_step: int = 0,
    sample_seeds: bool = False,
) -> DataLoader:
    """A loader of this process's micro-batches of ``epoch`` from ``start_step`` on."""
    sampler = EpochBatches(len(dataset), plan, seed, epoch, rank, steps, start_step, sample_seeds)
    # workers' base seed: drawn first from this generator, as before; other ranks get their own
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch + 7_919 * rank)
    return DataLoader(
        SeededSamples(dataset) if sample_seeds else dataset,
        batch_sampler=sampler,
        num_workers=workers,
        generator=generator,
        worker_init_fn=seed_worker,
    )


def epoch_batches(
    dataset: Dataset,
    plan: BatchPlan,
    workers: int,
    seed: int,
    epoch: int,
    rank: int = 0,
    steps: int | None = None,
    start_step: int = 0,
    sample_seeds: bool = False,
) -> Iterator[dict]:
    """The micro-batches from ``start_step`` exactly as an uninterrupted epoch loads them.

    Skipping ahead is free when the augmentation draws come from the training process (its RNG
    is restored from the checkpoint) or from per-sample seeds; with DataLoader workers drawing
    from their own generators, the skipped batches are loaded and dropped, so that every worker
    reaches the resumed step in the state it had.
    """
    replay = start_step > 0 and workers > 0 and not sample_seeds
    loader = epoch_loader(
        dataset, plan, workers, seed, epoch, rank, steps, 0 if replay else start_step, sample_seeds
    )
    iterator = iter(loader)
    if replay:
        for _ in range(start_step * plan.accumulate_steps):
            next(iterator)
    return iterator


@dataclass
class StepResult:
    """One optimiser step, as every process agrees on it: the logged values of the global
    batch, whether its loss was finite (else the step was not applied) and whether a stop was
    requested anywhere."""

    parts: dict[str, float]
    finite: bool
    stop: bool


@dataclass
class EpochProgress:
    """Where an epoch stands: steps done, sums of the logged values over the applied steps."""

    step: int = 0
    sums: dict[str, float] = dataclasses.field(default_factory=dict)
    applied: int = 0
    skipped: int = 0
    seconds: float = 0.0

    def add(self, result: StepResult) -> None:
        self.step += 1
        if not result.finite:
            self.skipped += 1
            return
        self.applied += 1
        for key, value in result.parts.items():
            self.sums[key] = self.sums.get(key, 0.0) + value

    def means(self) -> dict[str, float]:
        return {key: value / max(self.applied, 1) for key, value in self.sums.items()}

    def to_json(self, epoch: int) -> str:
        return json.dumps({"epoch": epoch, **dataclasses.asdict(self)})

    @classmethod
    def from_json(cls, text: str) -> tuple[int, EpochProgress]:
        data = json.loads(text)
        return data.pop("epoch"), cls(**data)


def check_train_settings(config: Config) -> BatchPlan:
    """The batch plan of this run, after checking the fault and precision settings."""
    t = config.train
    check_nonfinite_policy(t.nonfinite)
    if t.checkpoint_every < 0:
        raise ValueError(f"train.checkpoint_every: expected >= 0, got {t.checkpoint_every}")
    if t.until_converged < 0:
        raise ValueError(f"train.until_converged: expected >= 0, got {t.until_converged}")
    if t.until_converged and not t.eval_every:
        raise ValueError(
            f"train.until_converged={t.until_converged} needs validation: train.eval_every is 0"
        )
    if not (t.converged_gain > 0 and math.isfinite(t.converged_gain)):
        gain = t.converged_gain
        raise ValueError(f"train.converged_gain: expected a positive number, got {gain}")
    return BatchPlan(t.batch_size, distributed.world_size(), t.accumulate_steps)


@contextlib.contextmanager
def deterministic_mode(enabled: bool, seed: int) -> Iterator[None]:
    """``train.deterministic``: deterministic kernels only, cuDNN autotuning off, Python's and
    NumPy's RNGs seeded; the previous settings come back afterwards.

    On the CPU this makes two runs bit-identical. On CUDA a few kernels the segmentation loss
    needs (bilinear upsampling's backward) have no deterministic version; torch then warns
    instead of failing (``warn_only``).
    """
    if not enabled:
        yield
        return
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=torch.cuda.is_available())
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the global RNG user transforms draw from
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.deterministic = previous[2]
        torch.backends.cudnn.benchmark = previous[3]
