"""The models' entry points refuse malformed inputs with one line naming the modality."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import cenfusion
from tests.clear_errors import assert_clear

MODALITIES = ("rgb", "depth")


@pytest.fixture(scope="module")
def segmentation_model():
    torch.manual_seed(0)
    model = cenfusion.create_model(
        task="segmentation",
        backbone="resnet18",
        num_classes=5,
        modalities=MODALITIES,
        decoder_channels=(8, 8),
    )
    return model.eval()


@pytest.fixture(scope="module")
def translation_model():
    torch.manual_seed(0)
    return cenfusion.create_model(task="translation", modalities=("texture", "reshading"),
                                  target="rgb", ngf=4, ndf=4, num_downs=5).eval()  # fmt: skip


def valid_inputs(batch: int, height: int, width: int) -> dict:
    return {
        "rgb": torch.randn(batch, 3, height, width),
        "depth": torch.randn(batch, 1, height, width),
    }


def break_inputs(inputs: dict, how: str, value: int):
    """One defect; returns the broken inputs and what the error must name."""
    rgb, depth = inputs["rgb"], inputs["depth"]
    batch, _, height, width = rgb.shape
    if how == "missing":
        return {"rgb": rgb}, ["missing modality 'depth'"]
    if how == "unknown":
        return {**inputs, "thermal": depth}, ["unexpected modality 'thermal'"]
    if how == "renamed":
        return {"rgb": rgb, "dpeth": depth}, ["missing modality 'depth'", "'dpeth'"]
    if how == "size":
        return {"rgb": rgb, "depth": torch.randn(batch, 1, height + value, width)}, ["'depth'"]
    if how == "batch":
        return {"rgb": rgb, "depth": torch.randn(batch + value, 1, height, width)}, ["'depth'"]
    if how == "channels":
        channels = (2, 4, 5, 6, 7)[value % 5]  # 1 and 3 are valid
        return {"rgb": rgb, "depth": torch.randn(batch, channels, height, width)}, ["'depth'"]
    if how == "ndim":
        return {"rgb": rgb[0], "depth": depth}, ["'rgb'", "(B, C, H, W)"]
    if how == "integer":
        dtype = (torch.uint8, torch.int16, torch.int64, torch.bool)[value % 4]
        return {"rgb": rgb, "depth": depth.to(dtype)}, ["'depth'", "floating-point"]
    if how == "dtype":
        dtype = (torch.float64, torch.float16, torch.bfloat16)[value % 3]
        return {"rgb": rgb.to(dtype), "depth": depth.to(dtype)}, [str(dtype), "float32"]
    if how == "mixed":
        return {"rgb": rgb, "depth": depth.double()}, ["one dtype"]
    if how == "empty":
        return {"rgb": rgb[:, :, :0], "depth": depth[:, :, :0]}, ["'rgb'", "1x1"]
    if how == "numpy":
        return {"rgb": rgb.numpy(), "depth": depth}, ["'rgb'", "ndarray"]
    if how == "list":
        return [rgb, depth, depth][: 1 + value % 3 if value % 3 != 1 else 3], ["tensors"]
    if how == "nothing":
        return (None, "rgb", 3.0)[value % 3], ["dict"]
    if how == "device":
        return {"rgb": rgb.to("meta"), "depth": depth.to("meta")}, ["meta", "cpu"]
    if how == "stacked":
        return torch.randn(2 * batch + 1, 3, height, width), ["multiple of 2"]
    raise AssertionError(how)


DEFECTS = ["unknown", "renamed", "size", "batch", "channels", "ndim", "integer",
           "dtype", "mixed", "empty", "numpy", "list", "nothing", "device", "stacked"]  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 2),
    height=st.integers(1, 24),
    width=st.integers(1, 24),
    how=st.sampled_from([None, *DEFECTS]),
    value=st.integers(1, 5),
)
def test_segmentation_model_inputs(segmentation_model, batch, height, width, how, value):
    inputs = valid_inputs(batch, height, width)
    if how is None:  # any size from 1x1 works: logits at a quarter of it, rounded up
        with torch.no_grad():
            out = segmentation_model(inputs)
        assert set(out) == {"rgb", "depth", "ensemble"}
        assert out["ensemble"].shape[:2] == (batch, 5)
        return
    broken, culprits = break_inputs(inputs, how, value)
    with pytest.raises(Exception) as caught:
        segmentation_model(broken)
    assert_clear(caught.value, *culprits)


@settings(max_examples=15, deadline=None)
@given(
    size=st.sampled_from([32, 64, 16, 30, 33]),
    how=st.sampled_from(["ok", "dtype", "missing", "single-channel"]),
)
def test_translation_model_inputs(translation_model, size, how):
    x = torch.randn(1, 3, size, size)
    inputs = {"texture": x, "reshading": x}
    if how == "dtype":
        inputs = {k: v.double() for k, v in inputs.items()}
    elif how == "missing":  # a camera missing: the present one's branch and ensemble
        inputs = {"texture": x}
    elif how == "single-channel":
        inputs["texture"] = x[:, :1]  # tiled to the shared stem, like depth
    if size % 32 == 0 and how in ("ok", "single-channel", "missing"):
        with torch.no_grad():
            outputs = translation_model(inputs)
        assert outputs["ensemble"].shape == (1, 3, size, size)
        assert list(outputs) == [*inputs, "ensemble"]
        return
    with pytest.raises(Exception) as caught:
        translation_model(inputs)
    culprit = {"dtype": "float64"}.get(how, "32")
    assert_clear(caught.value, culprit)


def test_numpy_float_images_are_named_not_converted_silently(segmentation_model):
    with pytest.raises(ValueError, match="modality 'depth': expected a tensor, got ndarray"):
        segmentation_model({"rgb": torch.zeros(1, 3, 8, 8), "depth": np.zeros((1, 1, 8, 8))})
