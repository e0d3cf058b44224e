"""cenfusion: deep multimodal fusion by channel exchanging (CEN) in PyTorch."""

from cenfusion import nn
from cenfusion.models import create_backbone, create_model, create_plain_backbone

__version__ = "0.1.0"

__all__ = ["__version__", "create_backbone", "create_model", "create_plain_backbone", "nn"]
