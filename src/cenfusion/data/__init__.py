"""What flows into the models: the built-in synthetic scenes (:mod:`.synthetic`) and the
real-format loaders and joint transforms (:mod:`.segmentation`)."""

from cenfusion.data.synthetic import CLASS_NAMES, NUM_CLASSES, SyntheticScenes

__all__ = ["CLASS_NAMES", "NUM_CLASSES", "SyntheticScenes"]
