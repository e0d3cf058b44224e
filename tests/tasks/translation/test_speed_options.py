"""``train.channels_last`` and ``train.compile`` reach the translation trainer's generator."""

from __future__ import annotations

import pytest
import torch

from cenfusion.tasks import get_task

TRANSLATION = get_task("translation")


def test_channels_last_trains_the_same_generator(tiny_config, tmp_path):
    # the generator's dropout draws its masks in memory order: off, so that both runs match
    overrides = ("train.epochs=1", "train.eval_every=0", "train.sample_every=0",
                 "model.dropout=0.0")  # fmt: skip
    default = TRANSLATION.trainer(
        tiny_config(f"output_dir={tmp_path / 'a'}", *overrides), progress=False
    )
    default.fit()
    fast = TRANSLATION.trainer(
        tiny_config(f"output_dir={tmp_path / 'b'}", "train.channels_last=true", *overrides),
        progress=False,
    )
    conv = fast.model.generator.down[1].conv.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    seen = []
    fast.parts.step.generate.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    fast.fit()
    assert seen and all(x.is_contiguous(memory_format=torch.channels_last) for x in seen)
    for key in ("d_loss", "g_loss", "l1_ensemble"):  # the mean over both steps
        assert fast.history[0][key] == pytest.approx(default.history[0][key], rel=1e-4), key
    expected, got = default.model.state_dict(), fast.model.state_dict()
    assert expected.keys() == got.keys()  # the checkpointed model, not a wrapper
    # Adam moves every weight by up to lr (2e-4) a step, rounding noise included (a conv bias
    # before an instance norm has a zero gradient up to rounding): the weights agree to 1e-3,
    # the trained generators' outputs to 1e-4
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=1e-3, rtol=1e-4, msg=key)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        out_default = default.model.generator.eval()(x.chunk(2))
        out_fast = fast.model.generator.eval()(x.chunk(2))
    for key in out_default:
        torch.testing.assert_close(out_fast[key], out_default[key], atol=1e-4, rtol=1e-4)


def test_compile_wraps_the_generator_forward(tiny_config, fake_compile):
    trainer = TRANSLATION.trainer(tiny_config("train.compile=true"), progress=False)
    assert fake_compile == [trainer.parts.step.generate]
    assert fake_compile[0] is trainer.model.generator
