"""Where users come from: the paper's public code and its checkpoints."""

from cenfusion.compat.official import (
    cenfusion_to_official,
    load_official,
    map_official_key,
    official_name,
    official_to_cenfusion,
)

__all__ = [
    "cenfusion_to_official",
    "load_official",
    "map_official_key",
    "official_name",
    "official_to_cenfusion",
]
