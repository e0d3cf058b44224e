"""Where the public code's reference outputs are: ../shared/fixtures/official/ by default.

Looked up, in order: ``$CENFUSION_OFFICIAL_FIXTURES``, ``../shared/fixtures/official`` beside
this checkout, and the same beside the checkout this one was cloned from (a CI clone of the
project's working copy), so the equivalence tests run wherever the folder exists.
"""

from __future__ import annotations

import os
import subprocess
import zlib
from pathlib import Path

import torch

REPOSITORY = Path(__file__).resolve().parents[2]


def _origin_checkout() -> Path | None:
    try:
        url = subprocess.run(
            ["git", "-C", str(REPOSITORY), "remote", "get-url", "origin"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    path = Path(url.removeprefix("file://"))
    return path if path.is_dir() else None


def official_fixtures() -> Path:
    candidates = []
    if os.environ.get("CENFUSION_OFFICIAL_FIXTURES"):
        candidates.append(Path(os.environ["CENFUSION_OFFICIAL_FIXTURES"]))
    candidates.append(REPOSITORY.parent / "shared" / "fixtures" / "official")
    origin = _origin_checkout()
    if origin is not None:
        candidates.append(origin.resolve().parent / "shared" / "fixtures" / "official")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return candidates[0] if candidates else REPOSITORY.parent / "shared"


FIXTURES = official_fixtures()


def reference_weight(key: str, shape: tuple[int, ...], owner: str) -> torch.Tensor:
    """The fixtures' rule: every entry of the public state dict comes from its key alone."""
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    norm = owner in ("BatchNorm2d", "InstanceNorm2d")
    if key.endswith("num_batches_tracked"):
        return torch.tensor(0)
    if key.endswith("running_mean"):
        return torch.randn(shape, generator=g) * 0.1
    if key.endswith("running_var"):
        return torch.rand(shape, generator=g) + 0.5
    if key == "alpha":
        return torch.tensor([0.3, -0.2])
    if norm and key.endswith("weight"):
        u = torch.rand(shape, generator=g)
        return torch.where(u < 0.3, u / 30, 0.5 + u)
    if norm and key.endswith("bias"):
        return torch.randn(shape, generator=g) * 0.1
    if key.endswith("weight") and len(shape) == 4:
        return torch.randn(shape, generator=g) * (1.0 / (shape[1] * shape[2] * shape[3])) ** 0.5
    if key.endswith("bias"):
        return torch.randn(shape, generator=g) * 0.01
    raise AssertionError(f"no rule for {key}")
