"""How a state dict fits a module: the one comparison behind every "does this checkpoint fit".

Loading a cenfusion checkpoint, a public-code checkpoint and Inception weights all refuse a
state dict that does not fit, each with its own message; :func:`state_dict_fit` lists what
differs so that every message names the same three things.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class StateDictFit:
    """Keys the module has that the state dict lacks, keys it has no place for, and
    ``"key: given shape vs expected shape"`` for the tensors of another shape."""

    missing: list[str]
    unexpected: list[str]
    mismatched: list[str]

    @property
    def fits(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self, limit: int = 3) -> str:
        """``"missing [...]; unexpected [...]; shape mismatch [...]"`` (first ``limit`` each)."""
        parts = []
        if self.missing:
            parts.append(f"missing {self.missing[:limit]}")
        if self.unexpected:
            parts.append(f"unexpected {self.unexpected[:limit]}")
        if self.mismatched:
            parts.append(f"shape mismatch {self.mismatched[:limit]}")
        return "; ".join(parts)


def state_dict_fit(
    expected: Mapping[str, Tensor],
    given: Mapping[str, Tensor],
    optional: Iterable[str] = (),
) -> StateDictFit:
    """Compare ``given`` with ``expected`` (a module's own ``state_dict()``); keys in
    ``optional`` may be absent from ``given``."""
    optional = set(optional)
    return StateDictFit(
        missing=[k for k in expected if k not in given and k not in optional],
        unexpected=[k for k in given if k not in expected],
        mismatched=[
            f"{k}: {tuple(given[k].shape)} vs {tuple(v.shape)}"
            for k, v in expected.items()
            if k in given and given[k].shape != v.shape
        ],
    )
