"""The speed options change speed only: each against the default fp32 path on the same weights.

``channels_last`` to 1e-5; ``torch.compile`` (inductor) to 1e-4, skipped where inductor cannot
build kernels (no C++ compiler); bf16 autocast to a relative L2 error below 2e-2 (its mantissa
has 8 bits). Tiny networks and images: bf16 convolutions are slow on CPUs without bf16
hardware, and inductor compiles for tens of seconds even a small graph (once: later runs hit its
cache).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cenfusion
from benchmarks.run import realistic_scaling_factors
from cenfusion.config import Config, TrainConfig
from cenfusion.engine import speed
from cenfusion.engine.speed import apply_speed_options, compile_available, prepare_inputs
from cenfusion.nn import Ensemble, ModalityBatchNorm2d, ModalityInstanceNorm2d, StackedOutputs


def tiny_segmentation(num_modalities: int = 2) -> nn.Module:
    torch.manual_seed(0)
    model = cenfusion.create_model(
        task="segmentation",
        backbone="resnet18",
        num_classes=3,
        modalities=num_modalities,
        decoder_channels=(8, 8),
        dropout=0.0,
    )
    realistic_scaling_factors(model)
    return model


def tiny_generator(num_modalities: int = 2) -> nn.Module:
    torch.manual_seed(0)
    model = cenfusion.create_model(
        task="translation", modalities=num_modalities, ngf=8, num_downs=5
    ).generator
    for up in model.up:
        up.dropout = None  # random masks would differ between the runs compared
    realistic_scaling_factors(model)
    return model


def run_step(model: nn.Module, call, x: torch.Tensor, training: bool):
    """Outputs, parameter gradients (training) and buffers after one forward (+ backward)."""
    model.train(training)
    model.zero_grad(set_to_none=True)
    if not training:
        with torch.no_grad():
            return call(x), [], [b.clone() for b in model.buffers()]
    out = call(x)
    sum(o.float().square().mean() for o in out.values()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return out, grads, [b.clone() for b in model.buffers()]


def assert_same_step(reference, other, atol, rtol):
    (out_a, grads_a, buffers_a), (out_b, grads_b, buffers_b) = reference, other
    assert out_a.keys() == out_b.keys()
    for key in out_a:
        torch.testing.assert_close(out_b[key], out_a[key], atol=atol, rtol=rtol)
    assert len(grads_a) == len(grads_b)
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(b, a, atol=atol, rtol=rtol)
    for a, b in zip(buffers_a, buffers_b, strict=True):  # running statistics updated alike
        torch.testing.assert_close(b, a, atol=atol, rtol=rtol)


@pytest.mark.parametrize("build", [tiny_segmentation, tiny_generator], ids=["seg", "pix2pix"])
@pytest.mark.parametrize("training", [True, False])
def test_channels_last_matches_the_default_path(build, training):
    model = build()
    fast = copy.deepcopy(model)
    config = TrainConfig(channels_last=True)
    call = apply_speed_options(fast, config)
    assert call is fast
    assert fast.state_dict().keys() == model.state_dict().keys()
    # 64x64: at 32x32 ResNet's layer4 is 1x1, and a batch norm over 2 values in training
    # amplifies rounding differences far beyond any kernel's
    x = torch.randn(4, 3, 64, 64)
    fast_x = prepare_inputs(x, config)
    assert fast_x.is_contiguous(memory_format=torch.channels_last)
    assert_same_step(
        run_step(model, model, x, training),
        run_step(fast, call, fast_x, training),
        atol=1e-5,
        rtol=1e-5,
    )


def relative_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.mark.parametrize("build", [tiny_segmentation, tiny_generator], ids=["seg", "pix2pix"])
@pytest.mark.parametrize("training", [True, False])
def test_bf16_autocast_is_close_to_fp32(build, training):
    model = build().train(training)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        reference = copy.deepcopy(model)(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
    for key, value in reference.items():
        assert out[key].dtype == torch.float32  # computed in bf16, handed on in float32
        error = relative_l2(out[key], value)
        assert error < 2e-2, (key, error)
        assert error > 0  # really computed in bf16


class TinyCEN(nn.Module):
    """Every piece that compiles differently: both private norms in both modes, the exchange
    after each, a residual, the ensemble and named outputs."""

    def __init__(self, num_modalities: int = 2) -> None:
        super().__init__()
        self.modalities = tuple(f"m{i}" for i in range(num_modalities))
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = ModalityBatchNorm2d(8, num_modalities, exchange_threshold=0.3)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.in2 = ModalityInstanceNorm2d(8, num_modalities, exchange_threshold=0.3)
        self.head = nn.Conv2d(8, 2, 1)
        self.ensemble = Ensemble(num_modalities)
        with torch.no_grad():  # about a third of the channels exchanged
            self.bn1.weight.uniform_(0, 1)
            self.in2.weight.uniform_(0, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.in2(self.conv2(h))) + h
        out = self.head(h)
        return StackedOutputs(out, self.ensemble(out)).named(self.modalities)


def test_compile_matches_eager_in_training_and_evaluation():
    available, reason = compile_available("cpu")
    if not available:
        pytest.skip(f"torch.compile cannot build kernels here: {reason}")
    assert_compiled_matches_eager("cpu")


def assert_compiled_matches_eager(device: str) -> None:
    """A compiled TinyCEN against its eager twin: a training step, then evaluation."""
    torch.manual_seed(0)
    model = TinyCEN(3).to(device)
    eager = copy.deepcopy(model)
    call = apply_speed_options(model, Config(train=TrainConfig(compile=True)))
    assert call is not model and model.state_dict().keys() == eager.state_dict().keys()
    x = torch.randn(6, 3, 16, 16, device=device)
    for training in (True, False):
        assert_same_step(
            run_step(eager, eager, x, training),
            run_step(model, call, x, training),
            atol=1e-4,
            rtol=1e-4,
        )


def test_compile_without_a_compiler_is_refused_by_name(monkeypatch):
    monkeypatch.setattr(speed.shutil, "which", lambda name: None)
    monkeypatch.delenv("CXX", raising=False)
    available, reason = compile_available("cpu")
    assert not available and "C++ compiler" in reason
    with pytest.raises(RuntimeError, match="train.compile: .*C\\+\\+ compiler"):
        apply_speed_options(nn.Linear(2, 2), TrainConfig(compile=True))


def test_the_default_options_change_nothing():
    model = nn.Conv2d(3, 3, 1)
    x = torch.randn(1, 3, 4, 4)
    assert apply_speed_options(model, TrainConfig()) is model
    assert prepare_inputs(x, TrainConfig()) is x
    assert model.weight.is_contiguous()


@pytest.mark.parametrize(
    "build, training",
    [(lambda: tiny_segmentation().backbone, True), (tiny_generator, False)],
    ids=["resnet-train", "pix2pix-eval"],
)
def test_compiled_models_are_one_graph_on_the_composite_path(build, training, monkeypatch):
    """What torch.compile sees (dynamo, no kernels built): the whole network as one graph,
    with the private norms on their composite path, never the custom autograd function."""
    from cenfusion.nn import norm

    def refuse(*args, **kwargs):
        raise AssertionError("the custom autograd batch norm ran under compilation")

    # dynamo traces an autograd function's forward, not its apply
    monkeypatch.setattr(norm._StackedBatchNorm, "forward", staticmethod(refuse))
    model = build().train(training)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model)(torch.randn(4, 3, 32, 32))
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), [
        str(b.reason) for b in explained.break_reasons
    ]
