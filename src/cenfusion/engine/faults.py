"""What training does when something goes wrong: a non-finite loss, Ctrl-C, a termination signal.

- A NaN or infinite loss (``train.nonfinite``): ``stop`` raises :class:`NonFiniteLossError`
  naming the epoch and step before the optimiser step, so no weight is touched and no checkpoint
  is written; ``skip`` drops that step (weights, optimiser state and norm statistics stay as
  they were before it) and counts it in the epoch's ``skipped_steps``.
- SIGINT (Ctrl-C) or SIGTERM: the current optimiser step finishes, a checkpoint of that exact
  point is written, and :class:`TrainingInterrupted` ends the run (``cenfusion train`` exits
  with status 130); ``--resume`` continues from there as if nothing had happened. A second
  Ctrl-C stops at once (the last checkpoint stays valid: checkpoints are written atomically).
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any

import torch
from torch import Tensor, nn

NONFINITE_POLICIES = ("stop", "skip")


class NonFiniteLossError(RuntimeError):
    """A loss was NaN or infinite; training stopped before the weights were changed."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on a signal after saving a checkpoint (a KeyboardInterrupt, so that
    loops that catch ``Exception`` do not take it for a failed run)."""

    def __init__(self, message: str, checkpoint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.checkpoint = checkpoint

    def __str__(self) -> str:
        return self.message


def check_nonfinite_policy(policy: str) -> str:
    if policy not in NONFINITE_POLICIES:
        raise ValueError(f"train.nonfinite: expected one of {NONFINITE_POLICIES}, got {policy!r}")
    return policy


class StopRequests:
    """While active, SIGINT and SIGTERM only ask training to stop after the current step.

    ``requested`` turns true on the first signal; the previous SIGINT handler is then put back,
    so a second Ctrl-C interrupts immediately. Outside the main thread (where Python cannot
    install handlers) it does nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, message: str = "finishing this step, then saving a checkpoint") -> None:
        self.message = message  # what the first signal makes happen, printed with its name
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is None:
            self.signal = signum
            name = signal.Signals(signum).name
            print(
                f"\n{name}: {self.message} (Ctrl-C again to stop at once)",
                file=sys.stderr,
                flush=True,
            )
        if signum == signal.SIGINT and signum in self._previous:
            signal.signal(signum, self._previous.pop(signum))

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


def snapshot_buffers(module: nn.Module) -> dict[str, Tensor]:
    """Copies of the module's buffers (norm statistics), to undo a skipped step's forward."""
    return {name: buffer.clone() for name, buffer in module.named_buffers()}


@torch.no_grad()
def restore_buffers(module: nn.Module, snapshot: dict[str, Tensor]) -> None:
    """Put back the buffers :func:`snapshot_buffers` copied (in place: optimisers and DDP keep
    their references)."""
    for name, buffer in module.named_buffers():
        buffer.copy_(snapshot[name])
