"""The figures for three modalities, empty groups and all-zero gammas (the CLI covers two)."""

import numpy as np
import pytest
import torch
from PIL import Image

from cenfusion.analysis import group_feature_maps, scaling_factors
from cenfusion.analysis.plots import plot_feature_groups, plot_scaling_factors
from tests.analysis.helpers import TwoSites, set_gammas


def size_of(path):
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        return image.size


def test_three_modalities_and_a_channel_with_all_gammas_zero_are_drawn(tmp_path):
    model = TwoSites(3, channels=6)
    set_gammas(model, seed=0)
    with torch.no_grad():
        model.norm1.weight[:, 0] = 0.0  # its share |g_m| / sum is undefined: left blank
    factors = scaling_factors(model)
    path = plot_scaling_factors(
        factors, ("rgb", "depth", "normal"), {"norm1": 0.1, "norm2": 0.1}, ["norm1", "norm2"],
        tmp_path / "sub" / "gammas.png", channels=4,
    )  # fmt: skip
    assert path.exists() and size_of(path) == (1600, 1020)  # 16 x 10.2 inches at 100 dpi
    thresholds = {"norm1": 0.1, "norm2": 0.1}
    default = plot_scaling_factors(factors, ("a", "b", "c"), thresholds, None, tmp_path / "d.png")
    assert size_of(default) == (1600, 1020)  # None: the first and last of the two sites
    with pytest.raises(ValueError, match="not exchange sites"):
        plot_scaling_factors(factors, ("a", "b", "c"), {}, ["norm7"], tmp_path / "x.png")


def test_feature_groups_with_an_empty_group_are_drawn(tmp_path):
    gamma = torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.0, 0.0], [0.5, 0.0, 0.5]])
    groups = group_feature_maps(torch.randn(3, 3, 5, 6), gamma, 0.1, ("a", "b", "c"))
    assert [g.maps is None for g in groups] == [False, True, False, False]
    images = {name: np.random.default_rng(0).random((20, 24, 3)) for name in ("a", "b", "c")}
    path = plot_feature_groups(groups, ("a", "b", "c"), images, "norm1", 0.1, tmp_path / "f.png")
    width, height = size_of(path)
    assert width > 600 and height > 1000
