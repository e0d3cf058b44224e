"""Translation data: the Taskonomy layout, a folder-per-modality layout, the paper's augmentation.

``dataset[i]`` is ``{input domain: (3, H, W), ..., "target": (3, H, W)}``, float32 in
``[-1, 1]``; see :mod:`.domains` for the per-domain preprocessing and :mod:`.transforms` for the
augmentation.
"""

from cenfusion.data.translation.datasets import (
    TARGET,
    FolderTranslation,
    TaskonomyTranslation,
    TranslationFiles,
    read_image,
)
from cenfusion.data.translation.domains import (
    TASKONOMY_DOMAINS,
    TASKONOMY_PRESETS,
    Domain,
    resolve_domain,
    taskonomy_domain,
)
from cenfusion.data.translation.transforms import TranslationAugment, fixed_resize, resize_image

__all__ = [
    "TARGET",
    "TASKONOMY_DOMAINS",
    "TASKONOMY_PRESETS",
    "Domain",
    "FolderTranslation",
    "TaskonomyTranslation",
    "TranslationAugment",
    "TranslationFiles",
    "fixed_resize",
    "read_image",
    "resize_image",
    "resolve_domain",
    "taskonomy_domain",
]
