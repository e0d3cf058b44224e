"""The converted model against a plain reference: one torch norm per modality, loops, Eq. 6.

The reference runs :class:`MixedResidualNet`'s layers on a list of per-modality tensors with
the *same* convolutions, a separate ``nn.BatchNorm2d`` / ``nn.GroupNorm`` / ``nn.InstanceNorm2d``
for each modality (row ``m`` of the converted norm) and exchange written channel by channel.
"""

import copy

import pytest
import torch
import torch.nn.functional as F

import cenfusion
from cenfusion.convert import ModalityGroupNorm, ModalityInstanceNorm2dNoStats
from cenfusion.nn import ModalityBatchNorm2d, ModalityInstanceNorm2d
from tests.convert.nets import MixedResidualNet, randomise_norms

THRESHOLD = 2e-2
NORMS = ("bn", "gn", "inorm", "inorm_stats")


def exchange_loop(ys, gammas, threshold):
    """Paper Eq. 6: a channel with |gamma| < threshold takes the mean of the other modalities'."""
    outs = []
    for m, y in enumerate(ys):
        channels = []
        for c in range(y.shape[1]):
            if abs(float(gammas[m][c].detach())) >= threshold:
                channels.append(y[:, c])
            else:
                others = [ys[n][:, c] for n in range(len(ys)) if n != m]
                channels.append(sum(others) / len(others))
        outs.append(torch.stack(channels, dim=1))
    return outs


class Reference:
    """``MixedResidualNet`` over a list of modalities, with one torch norm per modality."""

    def __init__(self, plain, converted, sites):
        self.net = plain
        self.sites = sites
        self.norms = {}
        for name in NORMS:
            per_modality = []
            for m in range(converted.num_modalities):
                norm = copy.deepcopy(plain.get_submodule(name))
                source = converted.network.get_submodule(name)
                with torch.no_grad():
                    for key in ("weight", "bias", "running_mean", "running_var"):
                        if getattr(source, key, None) is not None:
                            getattr(norm, key).copy_(getattr(source, key)[m])
                per_modality.append(norm)
            self.norms[name] = per_modality

    def train(self, mode):
        for norms in self.norms.values():
            for norm in norms:
                norm.train(mode)

    def norm(self, name, ys):
        outs = [norm(y) for norm, y in zip(self.norms[name], ys, strict=True)]
        if name in self.sites:
            outs = exchange_loop(outs, [n.weight for n in self.norms[name]], THRESHOLD)
        return outs

    def __call__(self, xs):
        net = self.net
        xs = [F.relu(x) for x in self.norm("bn", [net.stem(x) for x in xs])]
        ys = [F.relu(y) for y in self.norm("gn", [net.depthwise(x) for x in xs])]
        ys = [torch.relu(y) for y in self.norm("inorm", [net.conv(y) for y in ys])]
        ys = self.norm("inorm_stats", [net.pointwise(y) for y in ys])
        return [net.head(F.relu(x + y)) for x, y in zip(xs, ys, strict=True)]


def test_norm_kinds_become_their_private_twins_and_default_sites_are_in_the_branch():
    converted = cenfusion.convert(MixedResidualNet(), ("rgb", "depth"))
    kinds = {name: type(converted.network.get_submodule(name)) for name in NORMS}
    assert kinds == {
        "bn": ModalityBatchNorm2d,
        "gn": ModalityGroupNorm,
        "inorm": ModalityInstanceNorm2dNoStats,
        "inorm_stats": ModalityInstanceNorm2d,
    }
    assert converted.exchange_norms == ("gn", "inorm")
    assert converted.network.gn.weight.shape == (2, 8)
    assert "gn.running_mean" not in converted.network.state_dict()


@pytest.mark.parametrize("num_modalities", [2, 3])
@pytest.mark.parametrize("exchange_after", [None, "all"])
def test_converted_model_matches_one_torch_norm_per_modality(num_modalities, exchange_after):
    torch.manual_seed(0)
    plain = MixedResidualNet().double()
    converted = cenfusion.convert(plain, num_modalities, THRESHOLD, exchange_after)
    randomise_norms(converted, seed=num_modalities)
    sites = set(converted.exchange_norms)
    assert sites == ({"gn", "inorm"} if exchange_after is None else set(NORMS))
    reference = Reference(plain, converted, sites)
    names = converted.modalities
    for training in (True, False):
        converted.train(training)
        reference.train(training)
        xs = [torch.randn(2, 3, 6, 7, dtype=torch.float64) for _ in names]
        xs_ref = [x.clone().requires_grad_() for x in xs]
        xs_ours = [x.clone().requires_grad_() for x in xs]
        ours = converted(dict(zip(names, xs_ours, strict=True)))
        theirs = reference(xs_ref)
        for name, out in zip(names, theirs, strict=True):
            torch.testing.assert_close(ours[name], out, atol=1e-10, rtol=0)
        # gradients reach every modality's input and its own row of each norm
        upstream = [torch.randn_like(out) for out in theirs]
        torch.autograd.backward([ours[name] for name in names], upstream)
        torch.autograd.backward(theirs, upstream)
        for x_ours, x_ref in zip(xs_ours, xs_ref, strict=True):
            torch.testing.assert_close(x_ours.grad, x_ref.grad, atol=1e-10, rtol=0)
        for name in NORMS:
            grad = converted.network.get_submodule(name).weight.grad
            expected = torch.stack([norm.weight.grad for norm in reference.norms[name]])
            torch.testing.assert_close(grad, expected, atol=1e-10, rtol=0)
            converted.network.get_submodule(name).weight.grad = None
            for norm in reference.norms[name]:
                norm.weight.grad = None
    for name in ("bn", "inorm_stats"):  # the training step updated each modality's statistics
        ours = converted.network.get_submodule(name).running_var
        theirs = torch.stack([norm.running_var for norm in reference.norms[name]])
        torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=0)


@pytest.mark.parametrize("training", [True, False])
def test_same_input_for_every_modality_computes_the_original_model(training):
    """Identical branches exchange identical values: each branch is the unimodal network."""
    plain = randomise_norms(MixedResidualNet().double())
    converted = cenfusion.convert(plain, 3, exchange_after="all").train(training)
    plain.train(training)
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64)
    expected = plain(x)
    out = converted([x, x, x])
    for name in (*converted.modalities, "ensemble"):
        torch.testing.assert_close(out[name], expected, atol=1e-10, rtol=0)
