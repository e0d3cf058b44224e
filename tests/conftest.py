import os

import pytest
import torch
from hypothesis import settings

settings.register_profile("ci", deadline=None, max_examples=40, derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
torch.set_num_threads(1)  # tests run in parallel workers on a 2-core machine


@pytest.fixture
def fake_compile(monkeypatch):
    """``torch.compile`` as the identity that records what it was given (a real inductor build
    of a trainer takes minutes on 2 cores); the list of compiled modules."""
    from cenfusion.engine import speed

    compiled = []

    def record(module):
        compiled.append(module)
        return module

    monkeypatch.setattr(speed, "compile_available", lambda device: (True, ""))
    monkeypatch.setattr(speed.torch, "compile", record)
    return compiled
