"""Where a fusion baseline fuses: the paper's early / middle / late / all stages.

A trunk has ``S`` fusion points (the outputs of its stages: ResNet layer1..layer4, the U-Net's
encoder blocks). Stages are numbered ``1..S``. ``early`` is the first, ``late`` the last,
``middle`` the ``S // 2``-th (ResNet: layer2; 8-block U-Net: block 4), ``all`` every one.
"""

from __future__ import annotations

from collections.abc import Sequence

STAGE_NAMES = ("early", "middle", "late", "all")


def resolve_stages(
    stages: str | Sequence[int], num_stages: int, name: str = "fusion_stages"
) -> tuple[int, ...]:
    """``"early" | "middle" | "late" | "all"`` or explicit 1-based numbers -> sorted numbers;
    ``name`` is the option the errors name."""
    if isinstance(stages, str):
        named = {
            "early": (1,),
            "middle": (max(1, num_stages // 2),),
            "late": (num_stages,),
            "all": tuple(range(1, num_stages + 1)),
        }
        if stages not in named:
            raise ValueError(
                f"{name}: expected one of {STAGE_NAMES} or a list of stage numbers "
                f"1..{num_stages}, got {stages!r}"
            )
        return named[stages]
    numbers = tuple(sorted(set(int(s) for s in stages)))
    if not numbers or numbers[0] < 1 or numbers[-1] > num_stages:
        raise ValueError(f"{name}: expected stage numbers in 1..{num_stages}, got {list(stages)}")
    return numbers
