"""Several processes, one training run: torchrun's environment, DDP, shards and reductions.

``torchrun --standalone --nproc_per_node N -m cenfusion train CONFIG`` starts ``N`` copies of the
command; :func:`setup` joins them into one process group (``nccl`` on CUDA, ``gloo`` on the
CPU), one GPU per process. Everything else here degrades to a no-op in a single process, so the
trainers have one code path: with one process nothing is wrapped, reduced or gathered.

What each process does (``train.batch_size`` is the *global* batch of one optimiser step):

- it trains on ``batch_size / world_size`` samples of every step (its slice of the same global
  batch a single process would take, see :mod:`cenfusion.engine.loop`);
- :class:`torch.nn.parallel.DistributedDataParallel` averages the gradients, and the trainers
  scale each process's loss so that the average is the single-process gradient;
- evaluation splits the validation set into contiguous shards; confusion matrices are summed
  and per-image scores gathered in order, so the scores are those of one process;
- only rank 0 prints, writes logs and checkpoints (:func:`is_main`).

Batch normalisation sees only its own process's samples unless ``train.sync_bn`` swaps every
batch norm for the synchronised ones of :mod:`cenfusion.nn.sync_norm`.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

__all__ = [
    "all_gather_objects",
    "barrier",
    "is_main",
    "rank",
    "reduce_step",
    "seed_process",
    "setup",
    "shard_range",
    "sum_int",
    "sum_tensor_",
    "sync_gradients",
    "teardown",
    "world_size",
    "wrap",
]


def setup() -> torch.device:
    """Join torchrun's process group when there is one; return this process's device.

    Reads ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` (set by torchrun). With more than one
    process and no group yet, initialises ``nccl`` when CUDA is available (each process on GPU
    ``LOCAL_RANK``), else ``gloo``. A single process keeps the old default device.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    if world > 1 and not dist.is_initialized():
        if cuda:
            if local_rank >= torch.cuda.device_count():
                raise RuntimeError(
                    f"LOCAL_RANK {local_rank}: this machine has {torch.cuda.device_count()} "
                    "GPU(s); start at most one process per GPU (torchrun --nproc_per_node)"
                )
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if cuda else "gloo")
    if not cuda:
        return torch.device("cpu")
    return torch.device("cuda", local_rank) if world_size() > 1 else torch.device("cuda")


def teardown() -> None:
    """Leave the process group (the end of a ``cenfusion train`` under torchrun)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Rank 0: the one process that prints, logs and writes checkpoints."""
    return rank() == 0


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def seed_process(seed: int) -> None:
    """Give every process but rank 0 its own random stream (after the model is built from the
    shared seed), so that augmentation and dropout differ between processes; rank 0 keeps the
    stream of a single-process run."""
    if rank() > 0:
        torch.manual_seed(seed + 1_000_003 * rank())


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def sum_int(value: int) -> int:
    """The sum of ``value`` over all processes."""
    if world_size() == 1:
        return int(value)
    tensor = torch.tensor([value], dtype=torch.int64, device=_collective_device())
    dist.all_reduce(tensor)
    return int(tensor.item())


def sum_tensor_(tensor: Tensor) -> Tensor:
    """Sum ``tensor`` over all processes, in place (confusion matrices: summed, not averaged)."""
    if world_size() > 1:
        moved = tensor.to(_collective_device())
        dist.all_reduce(moved)
        tensor.copy_(moved)
    return tensor


def reduce_step(
    values: dict[str, float], *flags: bool
) -> tuple[dict[str, float], tuple[bool, ...]]:
    """One collective per optimiser step: the logged values averaged over the processes (each
    process's values are its loss terms, scaled so that this mean is the global batch's) and
    the ``flags`` (non-finite loss, stop requested) true if they are true anywhere."""
    if world_size() == 1:
        return values, tuple(flags)
    keys = list(values)
    packed = torch.tensor(
        [values[k] for k in keys] + [float(f) for f in flags],
        dtype=torch.float64,
        device=_collective_device(),
    )
    dist.all_reduce(packed)
    world = world_size()
    numbers = packed.tolist()
    reduced = {k: numbers[i] / world for i, k in enumerate(keys)}
    return reduced, tuple(number > 0 for number in numbers[len(keys) :])


def all_gather_objects(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every process (``[obj]`` alone)."""
    if world_size() == 1:
        return [obj]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def shard_range(num_items: int) -> range:
    """This process's contiguous share of ``num_items`` evaluation samples; concatenated in rank
    order the shards are ``range(num_items)``, so gathered per-image scores keep their order."""
    world, index = world_size(), rank()
    return range(num_items * index // world, num_items * (index + 1) // world)


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` in DistributedDataParallel with several processes, else itself."""
    if world_size() == 1:
        return module
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids)


def sync_gradients(module: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """For gradient accumulation: no gradient all-reduce until the last micro-batch of a step.

    ``module`` may be a ``torch.compile`` wrapper around the DDP module (``train.compile``)."""
    module = getattr(module, "_orig_mod", module)
    if sync or not isinstance(module, DistributedDataParallel):
        return contextlib.nullcontext()
    return module.no_sync()


def rank_rng_state(payload: dict[str, Any], warn: bool = True) -> Any:
    """The random state this process resumes with: its own from ``rng_per_rank`` when the
    checkpoint was written by as many processes, rank 0's state in one process, else None
    (the process starts a new stream; exact resumption then needs ``train.per_sample_rng``)."""
    states: Sequence[Any] | None = payload.get("rng_per_rank")
    world = world_size()
    if states is not None and len(states) == world:
        return states[rank()]
    if world == 1:
        return payload["rng"]
    if warn and is_main():
        written = len(states) if states is not None else 1
        warnings.warn(
            f"the checkpoint was written by {written} process(es), resuming with {world}: "
            "processes other than rank 0 start new random streams",
            stacklevel=2,
        )
    return payload["rng"] if rank() == 0 else None
