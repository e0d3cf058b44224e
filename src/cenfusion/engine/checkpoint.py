"""Checkpoints that are never half-written and resume training exactly.

A checkpoint is written to a temporary file in the same folder, flushed and fsynced, then
renamed over the target (atomic on POSIX): a crash leaves the previous file intact. Reading
uses ``weights_only=True``; a truncated or corrupt file is reported by name, and
:func:`load_latest` falls back to the previous good checkpoint.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FORMAT = "cenfusion-checkpoint-v1"


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> Path:
    """Atomically write ``payload`` (tensors, numbers, strings, nested dicts/lists) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, **payload}
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a cenfusion checkpoint with ``weights_only=True``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"checkpoint {str(path)!r} is corrupt, truncated or not a weights-only torch file "
            f"({type(error).__name__})"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"checkpoint {str(path)!r} is not a cenfusion checkpoint (for the public CEN "
            "code's checkpoints use `cenfusion import-official`)"
        )
    return payload


def load_latest(directory: str | Path, names: tuple[str, ...] = ("last.pt", "previous.pt")):
    """The newest readable checkpoint among ``names`` in ``directory``, or None if there is none.

    Returns ``(path, payload)``. A corrupt ``last.pt`` is skipped with a warning for
    ``previous.pt`` (the one it replaced), so a crash mid-write never loses the run.
    """
    import warnings

    directory = Path(directory)
    for name in names:
        path = directory / name
        if not path.exists():
            continue
        try:
            return path, load_checkpoint(path)
        except ValueError as error:
            warnings.warn(f"{error}; trying the previous checkpoint", stacklevel=2)
    return None


def rotate_and_save(payload: dict[str, Any], directory: str | Path) -> Path:
    """Keep the current ``last.pt`` as ``previous.pt``, then atomically write the new one."""
    directory = Path(directory)
    last = directory / "last.pt"
    if last.exists():
        os.replace(last, directory / "previous.pt")
    return save_checkpoint(payload, last)


def find_resume_checkpoint(resume: bool | str | Path, output_dir: str | Path):
    """``(path, payload)`` to resume from: the file given, or the newest good one in the run."""
    if isinstance(resume, (str, Path)):
        return Path(resume), load_checkpoint(resume)
    found = load_latest(output_dir)
    if found is None:
        raise FileNotFoundError(
            f"--resume: no checkpoint in {str(output_dir)!r} (last.pt/previous.pt)"
        )
    return found


def rng_state() -> dict[str, Any]:
    """Every random generator a training step draws from (torch's CPU and CUDA ones)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available() and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])
