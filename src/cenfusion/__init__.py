"""cenfusion: deep multimodal fusion by channel exchanging (CEN) in PyTorch."""

from cenfusion import nn
from cenfusion.convert import convert
from cenfusion.engine.speed import accelerate
from cenfusion.models import create_backbone, create_model, create_plain_backbone
from cenfusion.tasks import get_task  # registers the tasks' config sections

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "accelerate",
    "convert",
    "create_backbone",
    "create_model",
    "create_plain_backbone",
    "get_task",
    "nn",
]
