"""Converting the library's plain ResNet gives create_backbone's CEN ResNet, exactly."""

import pytest
import torch

import cenfusion
from cenfusion.nn import ModalityBatchNorm2d, exchange_sites, sparsity_penalty
from tests.convert.nets import randomise_norms


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_default_rule_picks_the_sites_of_create_backbone(name):
    converted = cenfusion.convert(cenfusion.create_plain_backbone(name), ("rgb", "depth"))
    cen = cenfusion.create_backbone(name, ("rgb", "depth"))
    expected = [site for site, _ in exchange_sites(cen)]
    assert list(converted.exchange_norms) == expected
    assert [site for site, _ in exchange_sites(converted.network)] == expected
    for site in expected:
        assert converted.network.get_submodule(site).exchange_threshold == 2e-2
    assert converted.prediction is False and converted.ensemble is None  # a backbone


def test_every_modality_row_starts_as_the_plain_norm():
    plain = randomise_norms(cenfusion.create_plain_backbone("resnet18"))
    converted = cenfusion.convert(plain, 3)
    assert set(converted.network.state_dict()) == set(plain.state_dict())
    converted_state = converted.network.state_dict()
    for key, value in plain.state_dict().items():
        row = converted_state[key]
        if key.endswith("num_batches_tracked") or row.shape == value.shape:
            torch.testing.assert_close(row, value, atol=0, rtol=0)
        else:
            torch.testing.assert_close(row, value.expand(3, *value.shape), atol=0, rtol=0)
    assert isinstance(converted.network.layer1[0].bn1, ModalityBatchNorm2d)
    assert isinstance(plain.layer1[0].bn1, torch.nn.BatchNorm2d)  # the input is left alone


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_converted_plain_resnet_computes_the_cen_resnet(name):
    torch.manual_seed(0)
    converted = cenfusion.convert(cenfusion.create_plain_backbone(name), ("rgb", "depth"))
    # rows differ per modality after conversion, so the exchange really mixes the branches
    randomise_norms(converted, seed=1)
    cen = cenfusion.create_backbone(name, ("rgb", "depth"))
    cen.load_state_dict(converted.network.state_dict())
    inputs = {"rgb": torch.randn(2, 3, 32, 32), "depth": torch.randn(2, 1, 32, 32)}
    for training in (True, False):  # train first: it updates both models' running statistics
        converted.train(training)
        cen.train(training)
        ours, theirs = converted(inputs), cen(inputs)
        assert len(ours) == len(theirs) == 4
        for f_ours, f_theirs in zip(ours, theirs, strict=True):
            torch.testing.assert_close(f_ours, f_theirs, atol=1e-6, rtol=0)
        if training and name == "resnet18":
            upstream = [torch.randn_like(f) for f in ours]
            grads_ours = torch.autograd.grad(ours, list(converted.parameters()), upstream)
            grads_theirs = torch.autograd.grad(theirs, list(cen.parameters()), upstream)
            for g_ours, g_theirs in zip(grads_ours, grads_theirs, strict=True):
                torch.testing.assert_close(g_ours, g_theirs, atol=1e-5, rtol=1e-5)
    converted_state = converted.network.state_dict()
    for key, value in cen.state_dict().items():
        torch.testing.assert_close(converted_state[key], value, atol=0, rtol=0)
    torch.testing.assert_close(sparsity_penalty(converted, 2e-4), sparsity_penalty(cen, 2e-4))
