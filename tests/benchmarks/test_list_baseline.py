"""The benchmark's baseline computes what the stacked models compute: the speed comparison is
between two implementations of one function (same weights, outputs and gradients)."""

from __future__ import annotations

import pytest
import torch

import cenfusion
from benchmarks.list_baseline import list_twin
from benchmarks.run import realistic_scaling_factors
from cenfusion.models.translation import CENUNetGenerator


def segmentation_model(num_modalities: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = cenfusion.create_model(
        task="segmentation",
        backbone="resnet50",
        num_classes=3,
        modalities=num_modalities,
        decoder_channels=(8, 8),
        dropout=0.0,  # dropout masks differ between the designs; the maths does not
    )
    realistic_scaling_factors(model)
    return model.double()


def generator(num_modalities: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = CENUNetGenerator([f"m{i}" for i in range(num_modalities)], ngf=4, num_downs=5)
    for up in model.up:
        up.dropout = None
    realistic_scaling_factors(model)
    return model.double()


def assert_twins_agree(stacked, twin, num_modalities, training, size):
    stacked.train(training)
    twin.train(training)
    torch.manual_seed(1)
    images = [torch.randn(2, 3, size, size, dtype=torch.float64) for _ in range(num_modalities)]
    ours = stacked(images)
    theirs = twin(images)
    assert len(theirs) == len(ours) == num_modalities + 1  # the branches, then the ensemble
    for a, b in zip(ours.values(), theirs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)
    # the same gradients: the training steps compared do the same work
    upstream = [torch.randn_like(o) for o in ours.values()]
    grads = torch.autograd.grad(list(ours.values()), list(stacked.parameters()), upstream,
                                allow_unused=True, materialize_grads=True)  # fmt: skip
    twin_grads = torch.autograd.grad(theirs, list(twin.parameters()), upstream,
                                     allow_unused=True, materialize_grads=True)  # fmt: skip
    total = sum(g.abs().sum() for g in grads)
    twin_total = sum(g.abs().sum() for g in twin_grads)
    torch.testing.assert_close(total, twin_total, rtol=1e-6, atol=0)  # sums in other orders
    return grads, twin_grads


@pytest.mark.parametrize("num_modalities, training", [(2, False), (3, True), (4, True)])
def test_segmentation_twin_matches_the_stacked_model(num_modalities, training):
    model = segmentation_model(num_modalities)
    twin = list_twin(model)
    # 64x64 in training: at 32x32 layer4 is 1x1, and a batch norm over 2 values passes back
    # only rounding noise (its exact gradient is 0), which the two designs round differently
    size = 64 if training else 32
    grads, twin_grads = assert_twins_agree(model, twin, num_modalities, training, size)
    named = dict(zip([n for n, _ in model.named_parameters()], grads, strict=True))
    twin_named = dict(zip([n for n, _ in twin.named_parameters()], twin_grads, strict=True))
    torch.testing.assert_close(
        named["backbone.layer1.0.conv2.weight"],
        twin_named["backbone.layers.0.0.convs.1.module.weight"],
    )
    torch.testing.assert_close(named["decoder.classifier.weight"],
                               twin_named["decoder.classifier.weight"])  # fmt: skip
    # modality 1's private scaling factors of an exchange site
    torch.testing.assert_close(
        named["backbone.layer1.0.bn2.weight"][1],
        twin_named["backbone.layers.0.0.norms.1.norms.1.weight"],
    )


@pytest.mark.parametrize("num_modalities", [2, 3, 4])
@pytest.mark.parametrize("training", [False, True])
def test_translation_twin_matches_the_stacked_generator(num_modalities, training):
    model = generator(num_modalities)
    twin = list_twin(model)
    grads, twin_grads = assert_twins_agree(model, twin, num_modalities, training, size=32)
    named = dict(zip([n for n, _ in model.named_parameters()], grads, strict=True))
    twin_named = dict(zip([n for n, _ in twin.named_parameters()], twin_grads, strict=True))
    torch.testing.assert_close(named["down.2.conv.weight"], twin_named["down.2.conv.module.weight"])
    torch.testing.assert_close(named["down.2.norm.weight"][0],
                               twin_named["down.2.norm.norms.0.weight"])  # fmt: skip


def test_the_exchange_really_runs_in_the_compared_models():
    """~30 % of the scaling factors under the threshold: the twins exchange, so their
    agreement above covers the exchange too."""
    model = segmentation_model(2)
    gamma = model.backbone.layer1[0].bn2.weight
    share = (gamma.abs() < model.backbone.bn_threshold).double().mean().item()
    assert 0.1 < share < 0.5


def test_a_one_modality_twin_is_the_plain_network():
    model = segmentation_model(1)
    twin = list_twin(model)
    assert not any(isinstance(m, cenfusion.nn.ModalityBatchNorm2d) for m in twin.modules())
    out = twin.eval()([torch.randn(1, 3, 32, 32, dtype=torch.float64)])
    assert len(out) == 1  # no ensemble
