"""The same models and trainers on a GPU: CUDA against the CPU, and every speed option on CUDA.

Skipped without CUDA (CI has none); run with ``pytest tests/cuda`` on a GPU machine.
"""

from __future__ import annotations

import copy

import pytest
import torch

from cenfusion.config import TrainConfig
from cenfusion.engine.checkpoint import load_checkpoint, load_model_state
from cenfusion.engine.speed import apply_speed_options, prepare_inputs
from cenfusion.tasks import get_task
from cenfusion.tasks.segmentation.training import build_model
from tests.engine.test_speed import (
    assert_compiled_matches_eager,
    assert_same_step,
    relative_l2,
    run_step,
    tiny_generator,
    tiny_segmentation,
)

SEGMENTATION = get_task("segmentation")

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device: these tests run on a GPU machine"
)
CUDA = torch.device("cuda")


def on_cpu(step):
    out, grads, buffers = step
    return (
        {k: v.cpu() for k, v in out.items()},
        [g.cpu() for g in grads],
        [b.cpu() for b in buffers],
    )


@pytest.mark.parametrize("build", [tiny_segmentation, tiny_generator], ids=["seg", "pix2pix"])
@pytest.mark.parametrize("training", [True, False])
def test_cuda_matches_the_cpu(build, training):
    """Private norms, the exchange, the decoders and the ensemble: forward, every gradient
    and the running statistics, CUDA against CPU on the same weights and images."""
    model = build()
    gpu = copy.deepcopy(model).to(CUDA)
    x = torch.randn(4, 3, 64, 64)
    assert_same_step(
        run_step(model, model, x, training),
        on_cpu(run_step(gpu, gpu, x.to(CUDA), training)),
        atol=1e-4,
        rtol=1e-4,
    )


@pytest.mark.parametrize("build", [tiny_segmentation, tiny_generator], ids=["seg", "pix2pix"])
@pytest.mark.parametrize("training", [True, False])
def test_channels_last_on_cuda(build, training):
    model = build().to(CUDA)
    fast = copy.deepcopy(model)
    config = TrainConfig(channels_last=True)
    call = apply_speed_options(fast, config)
    x = torch.randn(4, 3, 64, 64, device=CUDA)
    assert_same_step(
        run_step(model, model, x, training),
        run_step(fast, call, prepare_inputs(x, config), training),
        atol=1e-4,
        rtol=1e-4,
    )


@pytest.mark.parametrize("build", [tiny_segmentation, tiny_generator], ids=["seg", "pix2pix"])
@pytest.mark.parametrize("training", [True, False])
def test_bf16_autocast_on_cuda_is_close_to_fp32(build, training):
    model = build().to(CUDA).train(training)
    x = torch.randn(4, 3, 64, 64, device=CUDA)
    with torch.no_grad():
        reference = copy.deepcopy(model)(x)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(x)
    for key, value in reference.items():
        error = relative_l2(out[key], value)
        assert 0 < error < 2e-2, (key, error)


def test_compile_on_cuda_matches_eager():
    assert_compiled_matches_eager("cuda")


def test_trainer_on_cuda_resumes_to_the_same_weights(tiny_config, tmp_path):
    """Interrupted after epoch 1 and resumed = trained straight; close, not bit-equal: the
    backward of bilinear upsampling on CUDA adds with atomics in no fixed order."""
    settings = ("train.deterministic=true", "train.eval_every=0", "train.sample_every=0")
    whole = SEGMENTATION.trainer(tiny_config(*settings, f"output_dir={tmp_path / 'a'}"),
                                progress=False)  # fmt: skip
    assert whole.device.type == "cuda"
    whole.fit()
    one_epoch = "optim.stages=[{epochs: 1, encoder_lr: 0.01, decoder_lr: 0.01}]"
    SEGMENTATION.trainer(tiny_config(*settings, one_epoch, f"output_dir={tmp_path / 'b'}"),
                        progress=False).fit()  # fmt: skip
    resumed = SEGMENTATION.trainer(
        tiny_config(*settings, f"output_dir={tmp_path / 'b'}"), resume=True, progress=False
    )
    assert resumed.start_epoch == 1
    resumed.fit()
    expected, got = whole.model.state_dict(), resumed.model.state_dict()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=1e-4, rtol=1e-4, msg=key)


def test_trainer_on_cuda_with_every_speed_option(tiny_config, tmp_path):
    """bf16 autocast, channels_last and torch.compile together: training runs, its losses are
    finite, and the checkpoint loads into a plain model on the CPU."""
    config = tiny_config(
        "train.precision=bf16", "train.channels_last=true", "train.compile=true",
        "optim.stages=[{epochs: 1}]", "train.sample_every=0", f"output_dir={tmp_path / 'run'}",
    )  # fmt: skip
    trainer = SEGMENTATION.trainer(config, progress=False)
    assert type(trainer.parts.step.forward).__name__ == "OptimizedModule"
    history = trainer.fit()
    assert torch.isfinite(torch.tensor(history[-1]["loss"]))
    assert 0 <= history[-1]["val"]["ensemble"]["mean_iou"] <= 1
    plain = build_model(config)
    load_model_state(plain, load_checkpoint(tmp_path / "run" / "last.pt")["model"], "last.pt")
    for key, value in plain.state_dict().items():
        assert torch.equal(value, trainer.model.state_dict()[key].cpu()), key
