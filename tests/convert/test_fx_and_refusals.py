"""Norms called as functions convert through torch.fx; what cannot convert is refused clearly."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cenfusion
from cenfusion.convert import ModalityGroupNorm
from cenfusion.nn import ModalityBatchNorm2d
from tests.convert.nets import FunctionalNormNet, ModuleNormNet, randomise_norms

# -- the fx path ---------------------------------------------------------------------------


def test_functional_norms_become_private_norm_modules_named_after_the_call():
    converted = cenfusion.convert(FunctionalNormNet(), ("rgb", "depth"))
    network = converted.network
    assert isinstance(network, torch.fx.GraphModule)
    assert isinstance(network.batch_norm, ModalityBatchNorm2d)
    assert isinstance(network.block.group_norm, ModalityGroupNorm)
    assert converted.exchange_norms == ("block.group_norm",)  # 3x3 conv, ReLU, residual branch
    assert "bn_weight" not in dict(network.named_parameters())  # the lifted norm owns it now


@pytest.mark.parametrize("training", [True, False])
def test_functional_norm_net_computes_what_the_same_net_with_norm_modules_does(training):
    torch.manual_seed(0)
    functional = randomise_norms(FunctionalNormNet())
    modules = ModuleNormNet()
    with torch.no_grad():
        modules.stem.weight.copy_(functional.stem.weight)
        modules.conv.weight.copy_(functional.block.conv.weight)
        modules.head.load_state_dict(functional.head.state_dict())
        for key, source in (("weight", "bn_weight"), ("bias", "bn_bias")):
            getattr(modules.bn, key).copy_(getattr(functional, source))
        modules.bn.running_mean.copy_(functional.bn_mean)
        modules.bn.running_var.copy_(functional.bn_var)
        modules.gn.weight.copy_(functional.block.gn_weight)
        modules.gn.bias.copy_(functional.block.gn_bias)
    ours = cenfusion.convert(functional, 2).train(training)
    theirs = cenfusion.convert(modules, 2).train(training)
    randomise_norms(theirs, seed=5)  # per-modality rows; copy them over
    with torch.no_grad():
        for a, b in (("batch_norm", "bn"), ("block.group_norm", "gn")):
            ours.network.get_submodule(a).load_state_dict(
                theirs.network.get_submodule(b).state_dict()
            )
    x = torch.randn(4, 3, 6, 6)
    for _ in range(2):  # train mode: the second call sees updated running statistics
        out_ours, out_theirs = ours(x), theirs(x)
        for key in ("m0", "m1", "ensemble"):
            torch.testing.assert_close(out_ours[key], out_theirs[key], atol=1e-6, rtol=0)


class DropoutFollowsMode(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.gn_weight = nn.Parameter(torch.ones(4))
        self.gn_bias = nn.Parameter(torch.zeros(4))

    def forward(self, x):
        x = F.group_norm(self.conv(x), 2, self.gn_weight, self.gn_bias)
        return F.dropout(x, 0.5, self.training)


def test_functional_norms_in_a_forward_that_depends_on_the_mode_are_refused():
    with pytest.raises(ValueError, match="depends on train/eval mode"):
        cenfusion.convert(DropoutFollowsMode(), 2, exchange_after="all")


# -- refusals ------------------------------------------------------------------------------


class Head(nn.Module):
    def __init__(self, forward):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self._forward = forward

    def forward(self, x):
        return self._forward(self, x)


class Wrapper(nn.Module):
    """Puts the layer under test at ``body.head`` so messages must name it by its path."""

    def __init__(self, layer):
        super().__init__()
        self.body = nn.Module()
        self.body.head = layer
        self.stem = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return self.body.head(self.stem(x))


class BatchNormWithReLU(nn.BatchNorm2d):
    def forward(self, x):
        return F.relu(super().forward(x))


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        return self.bn(x) if x.sum() > 0 else x


class FunctionalNorm(nn.Module):
    def __init__(self, call):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(3))
        self.bias = nn.Parameter(torch.zeros(3))
        self.register_buffer("mean", torch.zeros(3))
        self.register_buffer("var", torch.ones(3))
        self.call = call

    def forward(self, x):
        return self.call(self, x)


REFUSED = {
    "BatchNorm1d": (
        nn.Sequential(nn.Conv2d(3, 4, 1), nn.Flatten(), nn.Linear(4, 4), nn.BatchNorm1d(4)),
        r"layer 'body\.head\.3': BatchNorm1d: only 2-d batch norms",
    ),
    "non-affine BatchNorm2d": (
        nn.BatchNorm2d(3, affine=False),
        r"layer 'body\.head': BatchNorm2d with affine=False has no scaling factors",
    ),
    "BatchNorm2d without running statistics": (
        nn.BatchNorm2d(3, track_running_stats=False),
        r"layer 'body\.head': BatchNorm2d with track_running_stats=False",
    ),
    "LayerNorm": (
        nn.LayerNorm([3, 4, 4]),
        r"layer 'body\.head': LayerNorm has shared parameters and no per-modality version",
    ),
    "a norm subclass with its own forward": (
        BatchNormWithReLU(3),
        r"layer 'body\.head': BatchNormWithReLU subclasses a torch norm but overrides forward",
    ),
    "a hard-coded batch size": (
        Head(lambda self, x: self.bn(self.conv(x)).view(4, -1)),
        r"layer 'body\.head', call view\(\).*fixes the batch axis to 4",
    ),
    "a mean over the batch axis": (
        Head(lambda self, x: self.bn(self.conv(x)) - self.conv(x).mean(0, keepdim=True)),
        r"layer 'body\.head', call mean\(\).*mean over the batch axis mixes the modalities",
    ),
    "a concatenation along the batch axis": (
        Head(lambda self, x: torch.cat([self.bn(self.conv(x)), x])),
        r"layer 'body\.head', call cat\(\).*concatenating along the batch axis",
    ),
    "data-dependent control flow": (
        DataDependent(),
        r"torch\.fx cannot trace layer 'body\.head' \(DataDependent\).*control flow",
    ),
    "a functional norm on computed weights": (
        FunctionalNorm(lambda self, x: F.group_norm(x, 1, self.weight * 2, self.bias)),
        r"layer 'body\.head', call group_norm\(\).*its weight is computed in forward",
    ),
    "a functional batch norm without running statistics": (
        FunctionalNorm(lambda self, x: F.batch_norm(x, None, None, self.weight, self.bias, True)),
        r"layer 'body\.head', call batch_norm\(\).*without running statistics",
    ),
    "a functional layer norm": (
        FunctionalNorm(lambda self, x: F.layer_norm(x, [3], self.weight, self.bias)),
        r"layer 'body\.head', call layer_norm\(\).*no per-modality LayerNorm",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_unconvertible_models_are_refused_naming_the_layer_and_why(case):
    layer, message = REFUSED[case]
    with pytest.raises(ValueError, match=message):
        cenfusion.convert(Wrapper(layer), ("rgb", "depth"))


def test_an_untraceable_model_converts_by_replacement_when_sites_are_named():
    with pytest.warns(UserWarning, match=r"torch\.fx cannot trace layer 'body\.head'"):
        converted = cenfusion.convert(Wrapper(DataDependent()), 2, exchange_after=["body.head.bn"])
    assert converted.exchange_norms == ("body.head.bn",)
    assert converted.prediction is None  # unknown without a graph: decided per call
    out = converted(torch.rand(4, 3, 5, 5) + 0.1)
    assert set(out) == {"m0", "m1", "ensemble"}


def test_converted_models_are_refused():
    converted = cenfusion.convert(
        nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), 2, exchange_after=[]
    )
    with pytest.raises(ValueError, match="converted already"):
        cenfusion.convert(converted, 2)
    with pytest.raises(ValueError, match=r"layer '1': it is already a per-modality norm"):
        cenfusion.convert(converted.network, 2)


def test_exchange_after_must_name_convertible_norms():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.InstanceNorm2d(4), nn.ReLU())
    with pytest.raises(ValueError, match=r"'0' cannot be an exchange site .* it is a Conv2d"):
        cenfusion.convert(net, 2, exchange_after=["0"])
    with pytest.raises(ValueError, match=r"'2' cannot .* no scaling factors \(affine=False\)"):
        cenfusion.convert(net, 2, exchange_after=["2"])
    with pytest.raises(
        ValueError, match=r"'9' cannot .* no such module \(its convertible norms: 1\)"
    ):
        cenfusion.convert(net, 2, exchange_after=["9"])
    with pytest.raises(ValueError, match="exchange_after: expected None, 'all'"):
        cenfusion.convert(net, 2, exchange_after="bn")
    chosen = cenfusion.convert(net, 2, exchange_after=lambda name, norm: norm.num_features == 4)
    assert chosen.exchange_norms == ("1",)
    assert isinstance(chosen.network[2], nn.InstanceNorm2d)  # parameter-free, per sample: kept


def test_inputs_are_checked_at_the_edge():
    converted = cenfusion.convert(
        nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), 3, exchange_after=[]
    )
    with pytest.raises(ValueError, match="missing modality 'm2'"):
        converted({"m0": torch.randn(1, 3, 5, 5), "m1": torch.randn(1, 3, 5, 5)})
    with pytest.raises(ValueError, match=r"batch axis a multiple of 3 modalities"):
        converted(torch.randn(4, 3, 5, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = converted([torch.randn(2, 1, 5, 5)] * 3)  # 1-channel inputs tiled to the stem
    assert out["ensemble"].shape == (2, 4, 3, 3)


class BatchPreserving(nn.Module):
    """Operations that keep every sample to itself: the batch check must let them through."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(8 + 4 * 16, 2)
        self.register_buffer("scale", torch.ones(4))

    def forward(self, x):
        y = self.bn(self.conv(x)) * self.scale.view(1, 4, 1, 1)
        pooled = torch.cat([y.mean((2, 3)), y.amax(dim=(2, 3))], dim=1)
        small = F.adaptive_avg_pool2d(y, 4).view(y.size(0), -1)
        return self.fc(torch.cat([pooled, torch.flatten(small, 1)], 1)).softmax(-1)


def test_operations_that_keep_samples_apart_are_accepted():
    torch.manual_seed(0)
    net = randomise_norms(BatchPreserving()).eval()
    converted = cenfusion.convert(net, 2, exchange_after="all").eval()
    x = torch.randn(3, 3, 8, 8)
    out = converted({"m0": x, "m1": x})
    torch.testing.assert_close(out["m0"], net(x), atol=1e-6, rtol=0)


def test_a_norm_shared_by_two_layers_stays_shared_and_keeps_its_mode():
    conv, bn = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
    net = nn.Sequential(conv, bn, nn.ReLU(), conv, bn).eval()
    converted = cenfusion.convert(net, 2, exchange_after=["4"])  # the second name of "1"
    assert converted.exchange_norms == ("1",)
    assert converted.network[1] is converted.network[4]
    assert isinstance(converted.network[1], ModalityBatchNorm2d)
    assert not converted.training and not converted.network[1].training
    assert net.training is False and isinstance(net[1], nn.BatchNorm2d)
