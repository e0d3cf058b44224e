"""Where the public code's reference outputs are: tests/compat/official_fixtures/ (its README
says where they came from and how to rebuild them).

``$CENFUSION_OFFICIAL_FIXTURES``, when set, names another folder to use instead. The files are
part of the repository, so a missing folder or file fails the equivalence tests rather than
skipping them: use :func:`official_file` to reach a file.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import torch

IN_REPOSITORY = Path(__file__).resolve().parent / "official_fixtures"
FIXTURES = Path(os.environ.get("CENFUSION_OFFICIAL_FIXTURES") or IN_REPOSITORY)


def official_file(name: str) -> Path:
    """The path of one fixture file; a missing one is an error, never a reason to skip."""
    path = FIXTURES / name
    if not path.is_file():
        raise FileNotFoundError(
            f"official fixture {name} not found in {FIXTURES} (the folder is part of the "
            f"repository: tests/compat/official_fixtures/; is $CENFUSION_OFFICIAL_FIXTURES wrong?)"
        )
    return path


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
