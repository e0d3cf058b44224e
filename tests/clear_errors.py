"""What a clear error is: one line, from cenfusion's own checks, naming the culprit."""

from __future__ import annotations

import traceback
from pathlib import Path

import cenfusion

PACKAGE = str(Path(cenfusion.__file__).parent)
CLEAR = (ValueError, OSError, IndexError)


def assert_clear(error: BaseException, *culprits: str) -> None:
    """``error`` is a ValueError/OSError raised by a check in cenfusion (not from deep inside
    torch, PIL or pickle), its message is one line and names every culprit."""
    message = str(error)
    assert isinstance(error, CLEAR), f"{type(error).__name__}: {message}"
    origin = traceback.extract_tb(error.__traceback__)[-1].filename
    assert origin.startswith(PACKAGE), f"raised in {origin}: {message}"
    assert "\n" not in message, message
    for culprit in culprits:
        assert culprit in message, f"{culprit!r} not named in: {message}"
