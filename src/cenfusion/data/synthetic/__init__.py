"""Procedural indoor RGB-D scenes with physically consistent modalities and labels.

Real RGB-D data sets cannot be downloaded everywhere; these scenes let both tasks run end to end
with nothing to download, and their classes are designed so that fusion measurably matters (see
:mod:`.classes`). ``SyntheticScenes`` serves them in memory; ``cenfusion synth nyudv2|taskonomy``
writes them in the real data sets' layouts (:mod:`.writers`); ``cenfusion synth preview`` draws a
grid (:mod:`.preview`).
"""

from cenfusion.data.synthetic.classes import (
    CLASS_NAMES,
    DEPTH_BLIND_PAIRS,
    IGNORE_INDEX,
    NUM_CLASSES,
    PALETTE,
    RGB_BLIND_PAIRS,
)
from cenfusion.data.synthetic.dataset import (
    DEFAULT_SIZE,
    SyntheticScenes,
    render_arrays,
    render_codes,
    scene_at,
)
from cenfusion.data.synthetic.formats import MODALITIES

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_SIZE",
    "DEPTH_BLIND_PAIRS",
    "IGNORE_INDEX",
    "MODALITIES",
    "NUM_CLASSES",
    "PALETTE",
    "RGB_BLIND_PAIRS",
    "SyntheticScenes",
    "render_arrays",
    "render_codes",
    "scene_at",
]
