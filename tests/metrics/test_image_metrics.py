"""L1, RMSE, FID and KID: closed forms, torchmetrics, and a direct unbiased MMD²."""

import itertools

import pytest
import torch
from torch import nn

from cenfusion.metrics.image import (
    INCEPTION_WEIGHTS_FILE,
    FeatureMemo,
    FIDInceptionV3,
    ImageMetrics,
    fid_from_features,
    format_image_scores,
    kid_from_features,
    mmd2_unbiased,
)


class StandIn(nn.Module):
    """A small fixed feature extractor standing in for the Inception: [0, 1] images -> 16-d."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 16, 3, stride=2)

    def forward(self, images):
        return torch.tanh(self.conv(images)).mean((2, 3))


def test_fid_of_a_shifted_copy_is_the_squared_shift():
    x = torch.randn(400, 6, dtype=torch.float64)
    shift = torch.tensor([0.5, -1.0, 0.0, 2.0, 0.1, 0.3], dtype=torch.float64)
    assert fid_from_features(x + shift, x) == pytest.approx(shift.square().sum().item(), rel=1e-9)
    assert fid_from_features(x, x) == pytest.approx(0.0, abs=1e-9)


def test_fid_of_gaussians_with_diagonal_covariances_is_the_closed_form():
    # Walsh patterns: zero-mean, orthogonal columns, so the sample covariances are exactly
    # diagonal (sigma^2 = scale^2 * n / (n - 1)): FID = |mu_a - mu_b|^2 + sum (sigma_a - sigma_b)^2
    walsh = torch.tensor(
        [[1, 1, 1], [-1, 1, 1], [1, -1, 1], [-1, -1, 1], [1, 1, -1], [-1, 1, -1], [1, -1, -1],
         [-1, -1, -1]], dtype=torch.float64,
    )  # fmt: skip
    scale_a, scale_b = walsh.new_tensor([1.0, 2.0, 0.5]), walsh.new_tensor([3.0, 1.0, 0.5])
    mean_a, mean_b = walsh.new_tensor([0.0, 1.0, 0.0]), walsh.new_tensor([1.0, 1.0, 2.0])
    a, b = walsh * scale_a + mean_a, walsh * scale_b + mean_b
    factor = (8 / 7) ** 0.5
    expected = (mean_a - mean_b).square().sum() + ((scale_a - scale_b) * factor).square().sum()
    assert fid_from_features(a, b) == pytest.approx(expected.item(), rel=1e-9)


def test_fid_matches_torchmetrics_with_the_same_feature_extractor():
    torchmetrics_fid = pytest.importorskip("torchmetrics.image.fid")
    extractor = StandIn()
    real = torch.rand(40, 3, 16, 16)
    fake = (real * 0.7 + 0.2 * torch.rand(40, 3, 16, 16)).clamp(0, 1)
    reference = torchmetrics_fid.FrechetInceptionDistance(
        feature=extractor, normalize=True, input_img_size=(3, 16, 16)
    )
    reference.update(real, real=True)
    reference.update(fake, real=False)
    with torch.no_grad():
        ours = fid_from_features(extractor(fake), extractor(real))
    assert ours == pytest.approx(reference.compute().item(), rel=1e-4)


def direct_unbiased_mmd2(x, y):
    """KID's estimator written out pair by pair with k(a, b) = (a.b / d + 1)^3."""
    m, d = len(x), x.shape[1]

    def k(a, b):
        return (float(a @ b) / d + 1) ** 3

    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return (xx + yy) / (m * (m - 1)) - 2 * xy / (m * m)


def test_kid_is_the_unbiased_mmd2_of_the_cubic_kernel():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(12, 5, generator=g, dtype=torch.float64)
    y = torch.randn(12, 5, generator=g, dtype=torch.float64) + 0.3
    expected = direct_unbiased_mmd2(x, y)
    assert mmd2_unbiased(x, y) == pytest.approx(expected, rel=1e-10)
    # a subset as large as the sets is a permutation of them: the same value, whatever the draw
    assert kid_from_features(x, y, subsets=3, subset_size=1000) == pytest.approx(expected, 1e-10)


def test_kid_averages_over_random_subsets_and_tells_distributions_apart():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(300, 8, generator=g, dtype=torch.float64)
    same = torch.randn(300, 8, generator=g, dtype=torch.float64)
    shifted = same + 0.5
    subsets = [
        mmd2_unbiased(
            x[torch.randperm(300, generator=r)[:50]], y[torch.randperm(300, generator=r)[:50]]
        )
        for r, y in [(torch.Generator().manual_seed(7), same)]
        for _ in range(4)
    ]
    assert kid_from_features(x, same, subsets=4, subset_size=50, seed=7) == pytest.approx(
        sum(subsets) / 4, rel=1e-10
    )
    assert abs(kid_from_features(x, same, 10, 100)) < 0.02 < kid_from_features(x, shifted, 10, 100)


def test_image_metrics_average_per_image_errors_and_score_every_output():
    target = torch.zeros(2, 3, 8, 8)
    worse = target.clone()
    worse[0] += 0.2  # image 0 off by 0.2, image 1 by 0.6
    worse[1] += 0.6
    metrics = ImageMetrics(StandIn(), kid_subsets=2)
    metrics.update({"a": worse, "ensemble": target + 0.1}, target)
    metrics.update({"a": worse, "ensemble": target + 0.1}, target)
    scores = metrics.compute()
    assert scores["a"].l1 == pytest.approx(0.4)
    assert scores["a"].rmse == pytest.approx(((0.04 + 0.36) / 2) ** 0.5)
    assert scores["ensemble"].l1 == pytest.approx(0.1) and scores["a"].num_images == 4
    assert scores["a"].fid is not None and scores["ensemble"].kid_x100 is not None
    table = format_image_scores(scores)
    assert "ensemble" in table and "KIDx100" in table
    plain = ImageMetrics()
    plain.update({"a": worse}, target)
    assert plain.compute()["a"].fid is None
    assert INCEPTION_WEIGHTS_FILE in format_image_scores(plain.compute())


def test_the_inception_weights_are_read_from_a_local_file_only(tmp_path):
    missing = tmp_path / INCEPTION_WEIGHTS_FILE
    with pytest.raises(FileNotFoundError, match=f"{INCEPTION_WEIGHTS_FILE}.*nothing is downloaded"):
        FIDInceptionV3.from_file(missing)
    model = FIDInceptionV3()
    state = {
        k: torch.randn_like(v) if v.is_floating_point() else v
        for k, v in model.state_dict().items()
    }
    state = {k: v.abs() + 0.5 if k.endswith("running_var") else v for k, v in state.items()}
    state["fc.weight"] = torch.zeros(1008, 2048)  # the classifier of the file is ignored
    torch.save(state, missing)
    loaded = FIDInceptionV3.from_file(missing)
    assert torch.equal(
        loaded.Mixed_7c.branch_pool.conv.weight, state["Mixed_7c.branch_pool.conv.weight"]
    )
    with torch.no_grad():
        assert loaded(torch.rand(1, 3, 64, 64)).shape == (1, 2048)
    del state["Mixed_5b.branch1x1.conv.weight"]
    with pytest.raises(ValueError, match="not pytorch-fid's InceptionV3.*Mixed_5b.branch1x1"):
        loaded.load_weights(state)


def test_the_inception_is_pytorch_fids():
    """Exact equality with pytorch-fid's InceptionV3 on random weights (pytorch-fid and
    torchvision are not dependencies: this runs where they are installed)."""
    inception = pytest.importorskip(
        "pytorch_fid.inception",
        reason="pytorch-fid is not installed: it needs torchvision, which is kept out of the "
        "environment (its wheels pull a CUDA build of torch)",
    )
    ours = FIDInceptionV3()
    g = torch.Generator().manual_seed(0)
    state = {}
    for key, value in ours.state_dict().items():
        if not value.is_floating_point():
            state[key] = value
        elif key.endswith("running_var"):
            state[key] = torch.rand(value.shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(value.shape, generator=g) * 0.1
    state |= {"fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)}
    inception.load_state_dict_from_url = lambda *args, **kwargs: state
    theirs = inception.InceptionV3([3]).eval()
    ours.load_weights(state)
    images = torch.rand(2, 3, 80, 80)
    with torch.no_grad():
        torch.testing.assert_close(ours(images), theirs(images)[0].flatten(1), rtol=1e-5, atol=1e-5)


class Counting(StandIn):
    """The stand-in, counting the images it has seen."""

    def __init__(self) -> None:
        super().__init__()
        self.images = 0

    def forward(self, images):
        self.images += len(images)
        return super().forward(images)


def test_the_memo_returns_stored_features_only_for_the_same_bytes():
    memo, calls = FeatureMemo(max_images=5), []

    def compute(images):
        calls.append(len(images))
        return images.flatten(1).sum(1, keepdim=True)

    a = torch.rand(2, 3, 4, 4)
    first = memo(a, compute)
    assert memo(a.clone(), compute) is first and calls == [2] and memo.hits == 1
    nudged = a.clone()
    nudged[1, 2, 3, 3] = torch.nextafter(nudged[1, 2, 3, 3], torch.tensor(2.0))
    memo(nudged, compute)  # one ulp apart: computed
    memo(a.double(), compute)  # the same values in another dtype: computed
    memo(a.reshape(1, 6, 4, 4), compute)  # the same bytes in another shape: computed
    assert calls == [2, 2, 2, 1] and memo.hits == 1
    assert memo.stored_images == 5  # 2 + 2 + 1: the double batch would have made 6 > 5
    memo(a.double(), compute)  # so it is computed again
    assert calls == [2, 2, 2, 1, 2]


def test_image_metrics_with_a_memo_score_exactly_as_without_and_skip_the_real_pass():
    torch.manual_seed(3)
    target = torch.rand(3, 3, 16, 16) * 2 - 1
    outputs = [{"a": target + 0.1 * torch.randn_like(target)} for _ in range(3)]
    plain_extractor, memo_extractor, memo = Counting(), Counting(), FeatureMemo()
    for output in outputs:
        plain = ImageMetrics(plain_extractor, kid_subsets=2)
        plain.update(output, target)
        memoised = ImageMetrics(memo_extractor, kid_subsets=2, real_memo=memo)
        memoised.update(output, target)
        assert memoised.compute() == plain.compute()
    assert plain_extractor.images == 3 * (3 + 3)  # every evaluation: outputs and real
    assert memo_extractor.images == 3 * 3 + 3 and memo.hits == 2
