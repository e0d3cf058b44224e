"""Checkpoints that are never half-written and resume training exactly.

A checkpoint is written to a temporary file in the same folder, flushed and fsynced, then
renamed over the target (atomic on POSIX): a crash leaves the previous file intact. Reading
uses ``weights_only=True`` (a pickle that would run code is refused); a truncated or corrupt
file is reported by name, and :func:`load_latest` falls back to the previous good checkpoint.
Since ``torch.load`` does not check the bytes of the tensors it reads, every checkpoint also
carries a CRC-32 of its contents (:func:`content_checksum`), verified on reading.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
import zlib
from pathlib import Path
from typing import Any

import torch

from cenfusion.config import Config, config_from_dict
from cenfusion.nn.state_dict import state_dict_fit

CHECKPOINT_FORMAT = "cenfusion-checkpoint-v1"
CHECKSUM_KEY = "checksum"


def content_checksum(payload: Any) -> int:
    """CRC-32 of everything in ``payload`` but its own ``checksum`` entry: each tensor's dtype,
    shape and bytes, the keys, numbers and strings around them, in a fixed order."""
    crc = 0

    def visit(value: Any) -> None:
        nonlocal crc
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            crc = zlib.crc32(f"T{tensor.dtype}{tuple(tensor.shape)}".encode(), crc)
            if tensor.numel():
                crc = zlib.crc32(tensor.reshape(-1).view(torch.uint8).numpy(), crc)
        elif isinstance(value, dict):
            crc = zlib.crc32(b"{", crc)
            for key in sorted(value, key=repr):
                if key != CHECKSUM_KEY or value is not payload:
                    crc = zlib.crc32(repr(key).encode(), crc)
                    visit(value[key])
        elif isinstance(value, (list, tuple)):
            crc = zlib.crc32(b"[", crc)
            for item in value:
                visit(item)
        else:
            crc = zlib.crc32(repr(value).encode(), crc)

    visit(payload)
    return crc


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> Path:
    """Atomically write ``payload`` (tensors, numbers, strings, nested dicts/lists) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, **payload}
    payload[CHECKSUM_KEY] = content_checksum(payload)
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
    if path.is_dir():
        raise IsADirectoryError(f"checkpoint {str(path)!r} is a folder, expected a file")
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
    if CHECKSUM_KEY in payload:  # (checkpoints of earlier versions have none)
        if payload[CHECKSUM_KEY] != content_checksum(payload):
            raise ValueError(
                f"checkpoint {str(path)!r} is corrupt: its contents do not match the checksum "
                "written with it"
            )
        del payload[CHECKSUM_KEY]
    return payload


def checkpoint_config(payload: dict[str, Any], checkpoint: str | Path) -> Config:
    """The config a cenfusion checkpoint was trained with (configs of earlier versions, whose
    sections held every task's fields, load too)."""
    if "config" not in payload:
        raise ValueError(f"checkpoint {str(checkpoint)!r} carries no config")
    try:
        data = json.loads(payload["config"])
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"checkpoint {str(checkpoint)!r}: its config is not JSON ({error})"
        ) from None
    return config_from_dict(data, where=f"{checkpoint}:config")


def require_entries(
    payload: dict[str, Any], keys: tuple[str, ...], path: str | Path, what: str
) -> None:
    """Refuse a checkpoint that lacks what the caller reads from it, naming the file."""
    missing = [key for key in keys if key not in payload]
    if missing:
        raise ValueError(
            f"checkpoint {str(path)!r} lacks {missing}: not {what} (it holds {sorted(payload)})"
        )


RESUME_NAMES = ("last.pt", "previous.pt")
"""The checkpoints a run resumes from, newest first."""


def load_latest(directory: str | Path, names: tuple[str, ...] = RESUME_NAMES):
    """The newest readable checkpoint among ``names`` in ``directory``, or None if there is none.

    Returns ``(path, payload)``. A corrupt ``last.pt`` is skipped with a warning for
    ``previous.pt`` (the one it replaced), so a crash mid-write never loses the run.
    """
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
    for leftover in directory.glob(".last.pt.*"):  # a write killed before its rename
        leftover.unlink(missing_ok=True)
    if last.exists():
        os.replace(last, directory / "previous.pt")
    return save_checkpoint(payload, last)


def find_resume_checkpoint(
    resume: bool | str | Path, output_dir: str | Path, quarantine: bool = False
) -> tuple[Path, dict[str, Any]]:
    """``(path, payload)`` to resume from: the file given, or the newest good one in the run.

    With ``quarantine`` (the process that writes checkpoints), a corrupt ``last.pt`` passed over
    for ``previous.pt`` is renamed ``last.pt.corrupt``, so that the next save does not rotate
    it over the good one.
    """
    if isinstance(resume, (str, Path)):
        return Path(resume), load_checkpoint(resume)
    found = load_latest(output_dir)
    if found is None:
        raise FileNotFoundError(
            f"--resume: no checkpoint in {str(output_dir)!r} (last.pt/previous.pt)"
        )
    last = Path(output_dir) / "last.pt"
    if quarantine and found[0].name != last.name and last.exists():
        os.replace(last, last.with_name("last.pt.corrupt"))
    return found


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename: a reader (or a kill)
    sees the old file or the new one, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


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


def load_model_state(
    model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path | str
) -> None:
    """``load_state_dict`` with an error that names the checkpoint and what does not fit."""
    fit = state_dict_fit(model.state_dict(), state)
    if not fit.fits:
        raise ValueError(
            f"checkpoint {str(path)!r} is for another architecture or number of modalities: "
            + fit.describe()
        )
    model.load_state_dict(state)
