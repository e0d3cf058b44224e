"""create_model for segmentation: shapes, outputs per modality, sharing, and bad arguments."""

import pytest
import torch

import cenfusion
from cenfusion.models.segmentation.refinenet import ResidualConvUnit


@pytest.mark.parametrize("arch, stride", [("refinenet", 4), ("pspnet", 8)])
@pytest.mark.parametrize("modalities", [("rgb", "depth"), ("rgb", "depth", "normal")])
def test_one_prediction_per_modality_plus_the_ensemble(arch, stride, modalities):
    model = cenfusion.create_model(
        arch=arch, backbone="resnet18", num_classes=7, modalities=modalities,
        decoder_channels=[32, 16],
    )  # fmt: skip
    inputs = {m: torch.randn(2, 1 if m == "depth" else 3, 64, 96) for m in modalities}
    out = model(inputs)
    assert list(out) == [*modalities, "ensemble"]
    assert all(v.shape == (2, 7, 64 // stride, 96 // stride) for v in out.values())
    sum(v.sum() for v in out.values()).backward()  # trains end to end
    assert model.ensemble.alpha.grad is not None


def test_all_weights_are_shared_and_only_norms_are_per_modality():
    two = cenfusion.create_model(backbone="resnet18", num_classes=5, modalities=2)
    one = cenfusion.create_model(backbone="resnet18", num_classes=5, modalities=1)
    params_two = dict(two.named_parameters())
    for name, p in one.named_parameters():
        if name == "ensemble.alpha":
            continue
        if p.dim() == 2 and "bn" in name or "downsample.1" in name:
            assert params_two[name].shape == (2, *p.shape[1:]), name
        else:
            assert params_two[name].shape == p.shape, name  # no fusion parameters anywhere


def test_rcu_residual_option_changes_the_function():
    torch.manual_seed(0)
    unit = ResidualConvUnit(4, 1, "activated")
    x = torch.randn(1, 4, 5, 5)
    activated = unit(x)
    unit.residual = "input"
    torch.testing.assert_close(unit(x) - activated, x - torch.relu(x))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="task: expected one of"):
        cenfusion.create_model(task="detection")
    with pytest.raises(ValueError, match="arch for segmentation"):
        cenfusion.create_model(arch="deeplab")
    with pytest.raises(ValueError, match="backbone: expected one of"):
        cenfusion.create_model(backbone="vgg16")
