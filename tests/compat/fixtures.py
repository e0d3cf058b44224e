"""Where the public code's reference outputs are: ../shared/fixtures/official/ by default.

Looked up, in order: ``$CENFUSION_OFFICIAL_FIXTURES``, ``../shared/fixtures/official`` beside
this checkout, and the same beside the checkout this one was cloned from (a CI clone of the
project's working copy), so the equivalence tests run wherever the folder exists.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

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
