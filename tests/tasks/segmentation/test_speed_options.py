"""``train.channels_last`` and ``train.compile`` reach the segmentation trainer's forward pass."""

from __future__ import annotations

import pytest
import torch

from cenfusion.engine import speed
from cenfusion.engine.trainer import Trainer
from cenfusion.tasks import get_task

SEGMENTATION = get_task("segmentation")


def final_weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def test_channels_last_trains_the_same_weights(tiny_config, tmp_path):
    overrides = ("optim.stages=[{epochs: 1}]", "train.eval_every=0", "model.dropout=0.0")
    default = SEGMENTATION.trainer(
        tiny_config(f"output_dir={tmp_path / 'a'}", *overrides), progress=False
    )
    default.fit()
    fast = SEGMENTATION.trainer(
        tiny_config(f"output_dir={tmp_path / 'b'}", "train.channels_last=true", *overrides),
        progress=False,
    )
    conv = fast.model.backbone.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    seen = []
    stem = fast.model.backbone.conv1
    stem.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    fast.fit()
    assert seen and all(x.is_contiguous(memory_format=torch.channels_last) for x in seen)
    expected, got = final_weights(default), final_weights(fast)
    assert expected.keys() == got.keys()  # the checkpointed model, not a wrapper
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=1e-4, rtol=1e-4, msg=key)


def test_compile_wraps_the_stacked_forward_that_training_calls(tiny_config, fake_compile):
    """The wiring only (tests/engine/test_speed.py checks compiled outputs, tests/cuda a
    compiled trainer)."""
    trainer = SEGMENTATION.trainer(tiny_config("train.compile=true"), progress=False)
    assert fake_compile == [trainer.parts.step.forward]
    assert fake_compile[0] is trainer.model  # the saved model itself, called with stacked=True


def test_compile_without_a_compiler_is_refused_before_training(tiny_config, monkeypatch):
    monkeypatch.setattr(speed.shutil, "which", lambda name: None)
    monkeypatch.delenv("CXX", raising=False)
    if torch.cuda.is_available():
        pytest.skip("the trainer would run on CUDA, where inductor needs no C++ compiler")
    with pytest.raises(RuntimeError, match="train.compile: .*C\\+\\+ compiler"):
        SEGMENTATION.trainer(tiny_config("train.compile=true"), progress=False)
