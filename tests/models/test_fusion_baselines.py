"""The fusion baselines (concat, average, alignment, self-attention) against plain loops."""

import itertools
import math

import pytest
import torch

from cenfusion import create_backbone, create_model, create_plain_backbone
from cenfusion.models.fusion import (
    AverageFusion,
    ConcatFusion,
    MMDAlignment,
    SelfAttentionFusion,
    auxiliary_loss,
    fusion_parameter_count,
    gaussian_mmd2,
    resolve_stages,
)
from cenfusion.nn import ModalityBatchNorm2d, exchange_sites

M, B, C, H, W = 3, 2, 4, 3, 5


def stacked(seed=0):
    torch.manual_seed(seed)
    return torch.randn(M * B, C, H, W)


def modality(x, m):
    return x[m * B : (m + 1) * B]


def test_average_fusion_gives_every_branch_the_mean_of_all_modalities():
    x = stacked()
    y = AverageFusion(C, M)(x)
    mean = sum(modality(x, m) for m in range(M)) / M
    for m in range(M):
        torch.testing.assert_close(modality(y, m), mean)


def test_concat_fusion_equals_a_1x1_conv_of_the_channel_concatenation():
    x = stacked()
    layer = ConcatFusion(C, M)
    torch.testing.assert_close(layer(x), AverageFusion(C, M)(x))  # starts as the average
    with torch.no_grad():
        layer.proj.weight.normal_()
    weight = layer.proj.weight[:, :, 0, 0]  # (C, M*C)
    expected = torch.zeros(B, C, H, W)
    for b, out_c, i, j in itertools.product(range(B), range(C), range(H), range(W)):
        features = torch.cat([modality(x, m)[b, :, i, j] for m in range(M)])
        expected[b, out_c, i, j] = (weight[out_c] * features).sum()
    y = layer(x)
    for m in range(M):
        torch.testing.assert_close(modality(y, m), expected, rtol=1e-5, atol=1e-5)


def test_self_attention_fusion_attends_over_the_modalities_at_each_position():
    x = stacked()
    layer = SelfAttentionFusion(C, M, reduction=2)
    torch.testing.assert_close(layer(x), x)  # the gate starts closed
    with torch.no_grad():
        layer.gamma.fill_(0.7)
    d = layer.key_channels

    def project(conv, v):
        return conv.weight[:, :, 0, 0] @ v + conv.bias

    expected = x.clone()
    for b, i, j in itertools.product(range(B), range(H), range(W)):
        vectors = [modality(x, m)[b, :, i, j] for m in range(M)]
        for m in range(M):
            q = project(layer.query, vectors[m])
            scores = torch.stack([q @ project(layer.key, v) / math.sqrt(d) for v in vectors])
            weights = torch.softmax(scores, 0)
            values = [project(layer.value, v) for v in vectors]
            attended = sum(w * v for w, v in zip(weights, values, strict=True))
            expected[m * B + b, :, i, j] = vectors[m] + 0.7 * attended
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_gaussian_mmd2_equals_the_double_sum_and_vanishes_on_equal_samples():
    torch.manual_seed(1)
    x, y = torch.randn(5, 3), torch.randn(6, 3) + 1.0
    samples = torch.cat([x, y])
    distances = [[float((a - b).pow(2).sum()) for b in samples] for a in samples]
    scale = sum(map(sum, distances)) / len(samples) ** 2
    multipliers = (0.5, 2.0)

    def k(i, j):
        return sum(math.exp(-distances[i][j] / (s * scale)) for s in multipliers) / 2

    n, total = len(x), len(samples)
    expected = (
        sum(k(i, j) for i in range(n) for j in range(n)) / n**2
        + sum(k(i, j) for i in range(n, total) for j in range(n, total)) / (total - n) ** 2
        - 2 * sum(k(i, j) for i in range(n) for j in range(n, total)) / (n * (total - n))
    )
    assert gaussian_mmd2(x, y, multipliers).item() == pytest.approx(expected, rel=1e-5)
    assert gaussian_mmd2(x, x.clone()).item() == pytest.approx(0.0, abs=1e-6)
    assert gaussian_mmd2(x, y).item() > gaussian_mmd2(x, x + 0.01).item()


def test_mmd_alignment_passes_features_through_and_records_a_loss_in_training_only():
    x = stacked()
    layer = MMDAlignment(C, M, grid=2)
    torch.testing.assert_close(layer(x), x)
    assert layer.last_loss is not None and layer.last_loss.item() > 0
    layer.eval()
    layer(x)
    assert layer.last_loss is None


def test_stage_names_resolve_to_stage_numbers():
    assert resolve_stages("early", 4) == (1,)
    assert resolve_stages("middle", 4) == (2,)
    assert resolve_stages("late", 4) == (4,)
    assert resolve_stages("all", 4) == (1, 2, 3, 4)
    assert resolve_stages("middle", 8) == (4,)
    assert resolve_stages([3, 1], 4) == (1, 3)
    with pytest.raises(ValueError, match="fusion_stages"):
        resolve_stages("deep", 4)
    with pytest.raises(ValueError, match=r"1\.\.4"):
        resolve_stages([5], 4)


def test_fusion_layers_sit_after_the_chosen_resnet_stages():
    torch.manual_seed(0)
    backbone = create_backbone("resnet18", 2, fusion="average", fusion_stages="middle").eval()
    features = backbone(torch.randn(4, 3, 32, 32))
    layer1, layer2 = features[0], features[1]
    assert not torch.allclose(layer1[:2], layer1[2:])  # before the fusion: branches differ
    torch.testing.assert_close(layer2[:2], layer2[2:])  # right after it: the same mean


def test_baselines_have_no_exchange_sites_and_count_their_fusion_parameters():
    widths = (64, 128, 256, 512)
    concat = create_backbone("resnet18", 2, fusion="concat", fusion_stages="all")
    assert list(exchange_sites(concat)) == []
    assert fusion_parameter_count(concat) == sum(2 * c * c for c in widths)
    assert fusion_parameter_count(create_backbone("resnet18", 2, fusion="average")) == 0
    assert fusion_parameter_count(create_backbone("resnet18", 2)) == 0
    attention = create_backbone("resnet18", 2, fusion="self_attention", fusion_stages="late")
    d = 512 // 8
    assert fusion_parameter_count(attention) == 2 * (512 * d + d) + 512 * 512 + 512 + 1
    assert len(list(exchange_sites(create_backbone("resnet18", 2)))) == 8


def test_unknown_fusion_is_refused():
    with pytest.raises(ValueError, match="fusion: expected one of"):
        create_backbone("resnet18", 2, fusion="sum")


def test_unshared_convs_with_private_norms_equal_one_plain_resnet_per_modality():
    torch.manual_seed(0)
    plains = [create_plain_backbone("resnet18") for _ in range(2)]
    model = create_backbone("resnet18", ("rgb", "depth"), exchange=False, share_convs=False)
    state = {}
    for key, value in model.state_dict().items():
        rows = [p.state_dict()[key] for p in plains]
        state[key] = rows[0] if value.shape == rows[0].shape else torch.stack(rows)
    model.load_state_dict(state)
    x = torch.randn(4, 3, 32, 32)
    outputs = model(x)
    for m, plain in enumerate(plains):
        expected = plain(x[m * 2 : (m + 1) * 2])
        for ours, theirs in zip(outputs, expected, strict=True):
            torch.testing.assert_close(ours[m * 2 : (m + 1) * 2], theirs, rtol=1e-4, atol=1e-5)


def test_shared_norms_are_one_batchnorm_for_all_modalities():
    model = create_backbone("resnet18", 2, exchange=False, private_norms=False)
    assert not any(isinstance(m, ModalityBatchNorm2d) for m in model.modules())
    with pytest.raises(ValueError, match="exchange needs each modality's own scaling factors"):
        create_backbone("resnet18", 2, exchange=True, private_norms=False)


def test_imagenet_weights_fill_every_modality_of_an_unshared_conv_and_skip_fusion_layers():
    plain = create_plain_backbone("resnet18")
    model = create_backbone(
        "resnet18", 2, exchange=False, share_convs=False, pretrained=None, fusion="concat"
    )
    from cenfusion.models.backbones.pretrained import load_torchvision_resnet

    before = model.fusion["layer1"].proj.weight.clone()
    load_torchvision_resnet(model, plain.state_dict())
    for m in range(2):
        torch.testing.assert_close(model.layer1[0].conv1.weight[m], plain.layer1[0].conv1.weight)
    torch.testing.assert_close(model.fusion["layer1"].proj.weight, before)


@pytest.mark.parametrize("fusion", ["concat", "average", "align", "self_attention"])
def test_every_baseline_builds_for_segmentation_and_translation(fusion):
    torch.manual_seed(0)
    seg = create_model(
        "segmentation", backbone="resnet18", num_classes=5, decoder_channels=(8, 8),
        fusion=fusion, fusion_stages="all",
    )  # fmt: skip
    out = seg({"rgb": torch.randn(2, 3, 32, 32), "depth": torch.randn(2, 1, 32, 32)})
    assert out["ensemble"].shape == (2, 5, 8, 8)
    translation = create_model(
        "translation", modalities=("a", "b"), ngf=4, ndf=4, num_downs=5, fusion=fusion,
        fusion_stages="all",
    )  # fmt: skip
    generator = translation.generator
    assert list(generator.fusion) == [f"down{i}" for i in range(1, 6)]
    assert list(exchange_sites(generator)) == []
    fake = generator({"a": torch.randn(2, 3, 32, 32), "b": torch.randn(2, 3, 32, 32)})
    assert fake["ensemble"].shape == (2, 3, 32, 32)
    loss = auxiliary_loss(generator)
    assert (loss.item() > 0) == (fusion == "align")


def test_translation_refuses_the_sharing_ablations():
    with pytest.raises(ValueError, match="segmentation backbones only"):
        create_model("translation", modalities=("a", "b"), share_convs=False)
