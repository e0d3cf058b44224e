"""Where users come from: the paper's public code and its checkpoints."""

from cenfusion.compat.official import (
    cenfusion_to_official,
    cenfusion_to_official_translation,
    load_official,
    map_official_key,
    map_official_translation_key,
    official_name,
    official_to_cenfusion,
    official_translation_name,
    official_translation_to_cenfusion,
)

__all__ = [
    "cenfusion_to_official",
    "cenfusion_to_official_translation",
    "load_official",
    "map_official_key",
    "map_official_translation_key",
    "official_name",
    "official_to_cenfusion",
    "official_translation_name",
    "official_translation_to_cenfusion",
]
