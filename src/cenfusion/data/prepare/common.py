"""What every ``prepare`` converter shares: the MATLAB readers (the ``prepare`` extra), clear
errors for a missing or mistaken file, the summary, and writing into a temporary folder that
is renamed into place only when everything is written."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PREPARE_EXTRA = "pip install 'cenfusion[prepare]' (h5py and SciPy)"


@dataclass
class PreparedSplits:
    """What was written: the output folder, sample counts and pixels per class."""

    root: Path
    train: int
    val: int
    class_pixels: dict[int, int] = field(default_factory=dict)
    unlabelled_pixels: int = 0
    dataset: str = "NYUDv2"
    val_name: str = "val"  # what the second split is called (SUN RGB-D: test)

    def summary(self) -> str:
        total = sum(self.class_pixels.values()) + self.unlabelled_pixels
        lines = [
            f"wrote {self.train} train + {self.val} {self.val_name} {self.dataset} samples to "
            f"{self.root}",
            f"labelled pixels: {1 - self.unlabelled_pixels / max(total, 1):.1%}",
            "pixels per class (class: share of labelled pixels):",
        ]
        labelled = max(sum(self.class_pixels.values()), 1)
        shares = [f"{k}: {v / labelled:.2%}" for k, v in sorted(self.class_pixels.items())]
        lines += ["  " + ", ".join(shares[i : i + 8]) for i in range(0, len(shares), 8)]
        return "\n".join(lines)


def mat_readers() -> tuple[Any, Callable]:
    try:
        import h5py
        from scipy.io import loadmat
    except ImportError as error:
        raise RuntimeError(
            f"cenfusion prepare needs h5py and SciPy: {PREPARE_EXTRA} ({error})"
        ) from None
    return h5py, loadmat


def require_file(path: Path, flag: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{flag} {str(path)!r} does not exist")


def loadmat_file(path: str | os.PathLike[str], flag: str, loadmat: Callable) -> dict[str, Any]:
    path = Path(path)
    require_file(path, flag)
    try:
        return loadmat(str(path))
    except (ValueError, NotImplementedError, TypeError) as error:
        raise ValueError(f"{flag} {str(path)!r} is not a MATLAB v5 file: {error}") from None


def variable_names(data: dict[str, Any]) -> list[str]:
    return sorted(k for k in data if not k.startswith("__"))


def check_output(output: Path) -> None:
    """``output`` must be new or empty (checked before any work, and again before writing)."""
    if output.exists() and not output.is_dir():
        raise FileExistsError(f"output {str(output)!r} is a file, expected a new or empty folder")
    if output.exists() and any(output.iterdir()):
        raise FileExistsError(f"output folder {str(output)!r} exists and is not empty")


def open_hdf5(h5py: Any, path: Path, flag: str) -> Any:
    """An HDF5 (MATLAB v7.3) file opened for reading, or a clear error naming it."""
    require_file(path, flag)
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise ValueError(
            f"{flag} {str(path)!r} is not an HDF5 (MATLAB v7.3) file: {error}"
        ) from None


def write_staged(output: Path, write: Callable[[Path], PreparedSplits]) -> PreparedSplits:
    """``write(folder)`` into a temporary folder beside ``output``, then renamed to ``output``;
    on any failure, Ctrl-C or a SIGTERM (a job scheduler's stop) the temporary folder is
    removed and ``output`` is left as it was."""
    staging = staging_folder(output)
    try:
        with _terminate_as_exit():
            result = write(staging)
            publish(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result.root = output
    return result


@contextlib.contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """SIGTERM raises ``SystemExit`` inside the block (so that clean-up runs), where the
    process may set handlers (the main thread); the previous handler comes back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def staging_folder(output: Path) -> Path:
    """A new temporary folder beside ``output`` (which must be new or empty) to write into."""
    check_output(output)
    return Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=parent_folder(output)))


def parent_folder(output: Path) -> Path:
    parent = output.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    return parent


def publish(staging: Path, output: Path) -> None:
    """Move the finished folder into place (an empty existing ``output`` is replaced)."""
    if output.exists():
        output.rmdir()
    os.replace(staging, output)
