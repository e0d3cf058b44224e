import pytest
import torch


@pytest.fixture(autouse=True)
def full_fp32():
    """No TF32 while comparing with the CPU (TF32 keeps 10 mantissa bits: ~1e-3 errors)."""
    previous = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous


@pytest.fixture
def tiny_config(segmentation_config):
    return segmentation_config
