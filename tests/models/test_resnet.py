"""The CEN ResNet backbone: shapes, exchange sites, the list-of-tensors twin, ImageNet weights."""

import pickle
import warnings

import pytest
import torch

import cenfusion
from benchmarks.list_baseline import ListResNet
from cenfusion.models.backbones import RESNETS, load_torchvision_resnet
from cenfusion.nn import ModalityBatchNorm2d, exchange_sites, penalised_scaling_factors


def randomise_norms(model, seed=0):
    """Scaling factors as the official fixtures draw them: ~30 % below the threshold."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (ModalityBatchNorm2d, torch.nn.BatchNorm2d)):
                u = torch.rand(module.weight.shape, generator=g, dtype=module.weight.dtype)
                module.weight.copy_(torch.where(u < 0.3, u / 30, 0.5 + u))
                module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.1)
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=g) * 0.1)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=g) + 0.5)
    return model


@pytest.mark.parametrize("name", sorted(RESNETS))
def test_features_have_strides_4_8_16_32(name):
    model = cenfusion.create_backbone(name, ("rgb", "depth"))
    x = {"rgb": torch.randn(1, 3, 64, 96), "depth": torch.randn(1, 1, 64, 96)}
    features = model.eval()(x)
    expansion = 4 if RESNETS[name].block.expansion == 4 else 1
    expected = [
        (2, c * expansion, 64 // s, 96 // s)
        for c, s in zip((64, 128, 256, 512), (4, 8, 16, 32), strict=True)
    ]
    assert [tuple(f.shape) for f in features] == expected
    assert model.feature_channels == tuple(e[1] for e in expected)


def test_exchange_sites_are_bottleneck_bn2_and_basic_bn1_only():
    deep = cenfusion.create_backbone("resnet50", 2)
    sites = [name for name, _ in exchange_sites(deep)]
    assert len(sites) == 16 and all(name.endswith(".bn2") for name in sites)
    assert all(deep.get_submodule(s).exchange_threshold == 2e-2 for s in sites)
    shallow = cenfusion.create_backbone("resnet18", 2)
    assert [n for n, _ in exchange_sites(shallow)] == [
        f"layer{i}.{j}.bn1" for i in range(1, 5) for j in range(2)
    ]
    off = cenfusion.create_backbone("resnet50", 2, exchange=False)
    assert len(list(exchange_sites(off))) == 16  # still penalised by the L1 term
    assert all(m.exchange_threshold is None for _, m in exchange_sites(off))
    everywhere = cenfusion.create_backbone("resnet50", 2, exchange_norms="all")
    assert len(list(exchange_sites(everywhere))) == 48
    with pytest.raises(ValueError, match=r"\['bn4'\] are not norms of Bottleneck"):
        cenfusion.create_backbone("resnet50", 2, exchange_norms=("bn4",))


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
@pytest.mark.parametrize("num_modalities", [2, 3])
@pytest.mark.parametrize("training", [True, False])
def test_stacked_backbone_matches_list_of_tensors_twin(name, num_modalities, training):
    torch.manual_seed(0)
    cen = randomise_norms(cenfusion.create_backbone(name, num_modalities).double())
    twin = ListResNet(cen).double()
    cen.train(training)
    twin.train(training)
    inputs = [torch.randn(2, 3, 48, 64, dtype=torch.float64) for _ in range(num_modalities)]
    ours = cen([x.clone().requires_grad_() for x in inputs])
    theirs = twin(inputs)
    for f_ours, f_theirs in zip(ours, theirs, strict=True):
        torch.testing.assert_close(f_ours, torch.cat(f_theirs), atol=1e-6, rtol=1e-9)
    upstream = [torch.randn_like(f) for f in ours]
    grads_ours = torch.autograd.grad(ours, list(cen.parameters()), upstream)
    grads_theirs = torch.autograd.grad(
        [torch.cat(f) for f in theirs], list(twin.parameters()), upstream, materialize_grads=True
    )
    by_name_ours = dict(zip([n for n, _ in cen.named_parameters()], grads_ours, strict=True))
    by_name_theirs = dict(zip([n for n, _ in twin.named_parameters()], grads_theirs, strict=True))
    torch.testing.assert_close(
        by_name_ours["layer1.0.conv2.weight"],
        by_name_theirs["layers.0.0.convs.1.module.weight"],
        atol=1e-6,
        rtol=1e-6,
    )
    torch.testing.assert_close(
        by_name_ours["conv1.weight"], by_name_theirs["conv1.module.weight"], atol=1e-6, rtol=1e-6
    )


def test_exchange_changes_the_features_and_can_be_switched_off():
    torch.manual_seed(0)
    on = randomise_norms(cenfusion.create_backbone("resnet18", 2)).eval()
    off = cenfusion.create_backbone("resnet18", 2, exchange=False).eval()
    off.load_state_dict(on.state_dict())
    x = [torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32)]
    assert not torch.allclose(on(x)[-1], off(x)[-1])


@pytest.mark.parametrize(("stages", "chosen"), [("early", (1,)), ([3, 1], (1, 3))])
def test_exchange_at_some_stages_is_exchange_there_and_none_elsewhere(stages, chosen):
    """Reference: the stem and each stage taken from a fully exchanging trunk (a chosen stage)
    or from the same trunk built without exchange (the others), fed one into the next."""
    torch.manual_seed(0)
    some = randomise_norms(cenfusion.create_backbone("resnet18", 2, exchange_stages=stages))
    everywhere = cenfusion.create_backbone("resnet18", 2).eval()
    nowhere = cenfusion.create_backbone("resnet18", 2, exchange=False).eval()
    everywhere.load_state_dict(some.state_dict())
    nowhere.load_state_dict(some.state_dict())
    x = torch.randn(4, 3, 32, 32)  # M*B stacked: two modalities, two images
    with torch.no_grad():
        got = some.eval()(x)
        h = everywhere.maxpool(everywhere.relu(everywhere.bn1(everywhere.conv1(x))))
        expected = []
        for index in range(1, 5):
            source = everywhere if index in chosen else nowhere
            h = getattr(source, f"layer{index}")(h)
            expected.append(h)
        differs = [not torch.allclose(a, b) for a, b in zip(got, everywhere(x), strict=True)]
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert differs[-1]  # exchange nowhere else changes the deep features
    assert some.exchange_stages == chosen
    exchanging = [name for name, _ in exchange_sites(some, exchanging=True)]
    kept = [name for name, _ in exchange_sites(some, exchanging=False)]
    assert sorted(exchanging + kept) == sorted(name for name, _ in exchange_sites(some))
    assert exchanging and {int(name[5]) for name in exchanging} == set(chosen)
    assert kept and not {int(name[5]) for name in kept} & set(chosen)


def test_sites_at_some_stages_only_leave_plain_private_norms_elsewhere():
    """Outside ``site_stages`` a norm is no site: the features equal those of the exchange kept
    to the same stages, and the L1 term covers the chosen stages' sites alone."""
    torch.manual_seed(0)
    some = randomise_norms(cenfusion.create_backbone("resnet18", 2, site_stages="early"))
    reference = cenfusion.create_backbone("resnet18", 2, exchange_stages="early").eval()
    reference.load_state_dict(some.state_dict())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        for a, b in zip(some.eval()(x), reference(x), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    sites = [name for name, _ in exchange_sites(some)]
    assert sites == [name for name, _ in exchange_sites(some, exchanging=True)]
    assert sites == ["layer1.0.bn1", "layer1.1.bn1"]
    everywhere = cenfusion.create_backbone("resnet18", 2)
    penalised = list(penalised_scaling_factors(some))
    assert len(penalised) == 2 * len(sites)  # one chunk per modality and site
    assert len(list(penalised_scaling_factors(everywhere))) == 2 * 8
    with pytest.raises(ValueError, match="site_stages: expected one of"):
        cenfusion.create_backbone("resnet18", 2, site_stages="first")


def test_exchange_stages_are_checked():
    with pytest.raises(ValueError, match="exchange_stages: expected one of"):
        cenfusion.create_backbone("resnet18", 2, exchange_stages="first")
    with pytest.warns(UserWarning, match="exchange_stages='early' has no effect with exchange"):
        cenfusion.create_backbone("resnet18", 2, exchange=False, exchange_stages="early")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # a baseline has no exchange whatever it is given; every stage listed is every stage
        cenfusion.create_backbone("resnet18", 2, fusion="concat", exchange_stages="early")
        cenfusion.create_backbone("resnet18", 2, exchange=False, exchange_stages=[4, 3, 2, 1])


def test_inputs_are_validated_by_modality_name():
    model = cenfusion.create_backbone("resnet18", ("rgb", "depth"))
    with pytest.raises(ValueError, match="missing modality 'depth'"):
        model({"rgb": torch.randn(1, 3, 32, 32)})
    with pytest.raises(ValueError, match="batch axis must be a multiple of 2 modalities"):
        model(torch.randn(3, 3, 32, 32))


def torchvision_state_dict(name, seed=0):
    """A torchvision-format ResNet state dict with random values under torchvision's key names."""
    plain = cenfusion.create_plain_backbone(name)
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in plain.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0)
        elif key.endswith("running_var"):
            state[key] = torch.rand(value.shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(value.shape, generator=g) * 0.1
    width = plain.feature_channels[-1]
    state["fc.weight"] = torch.randn(1000, width, generator=g)
    state["fc.bias"] = torch.randn(1000, generator=g)
    return state


def test_imagenet_weights_load_into_every_modality(tmp_path):
    path = tmp_path / "resnet18-imagenet.pth"
    state = torchvision_state_dict("resnet18")
    torch.save(state, path)
    model = cenfusion.create_backbone("resnet18", ("rgb", "depth", "normal"), pretrained=str(path))
    ours = model.state_dict()
    assert torch.equal(ours["conv1.weight"], state["conv1.weight"])
    for m in range(3):
        assert torch.equal(
            ours["layer2.0.downsample.1.weight"][m], state["layer2.0.downsample.1.weight"]
        )
        assert torch.equal(ours["layer4.1.bn2.running_var"][m], state["layer4.1.bn2.running_var"])


def test_one_modality_without_exchange_computes_the_plain_resnet():
    state = torchvision_state_dict("resnet50", seed=3)
    cen = cenfusion.create_backbone("resnet50", ("rgb",), exchange=False)
    load_torchvision_resnet(cen, state)
    plain = cenfusion.create_plain_backbone("resnet50")
    load_torchvision_resnet(plain, state)
    x = torch.randn(2, 3, 64, 64)
    for training in (False, True):
        cen.train(training)
        plain.train(training)
        for a, b in zip(cen({"rgb": x}), plain(x), strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        cenfusion.create_backbone("resnet18", 2, pretrained=str(missing))


def test_weights_of_another_architecture_name_the_first_mismatching_key(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision_state_dict("resnet18"), path)
    with pytest.raises(
        ValueError, match=r"resnet18.pth.*first missing key 'layer1.0.conv3.weight'"
    ):
        cenfusion.create_backbone("resnet50", 2, pretrained=str(path))
    state = torchvision_state_dict("resnet18")
    state["conv1.weight"] = torch.zeros(64, 4, 7, 7)
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"key 'conv1.weight' has shape \(64, 4, 7, 7\)"):
        cenfusion.create_backbone("resnet18", 2, pretrained=str(path))


class Malicious:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_pickle_that_runs_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"conv1.weight": Malicious()}, f)
    with pytest.raises(ValueError, match="evil.pth.*could not be read as a weights-only"):
        cenfusion.create_backbone("resnet18", 2, pretrained=str(path))
    assert "this must never run" not in capsys.readouterr().out


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_stage_channels_narrow_every_stage(name):
    model = cenfusion.create_backbone(name, ("rgb", "depth"), stage_channels=(16, 32, 48, 64))
    expansion = RESNETS[name].block.expansion
    features = model.eval()(torch.randn(2, 3, 64, 64))
    assert [f.shape[1] for f in features] == [c * expansion for c in (16, 32, 48, 64)]
    assert model.feature_channels == tuple(c * expansion for c in (16, 32, 48, 64))
    assert model.conv1.out_channels == 16
    plain = cenfusion.create_plain_backbone(name, stage_channels=(16, 32, 48, 64))
    assert [f.shape[1] for f in plain(torch.randn(1, 3, 64, 64))] == [f.shape[1] for f in features]


def test_stage_channels_are_checked():
    with pytest.raises(ValueError, match=r"stage_channels: expected four positive widths"):
        cenfusion.create_backbone("resnet18", 2, stage_channels=(32, 64, 128))
