"""Channel groups of the paper's visualisation and the features captured at a site."""

import pytest
import torch

from cenfusion.analysis import channel_groups, group_feature_maps, site_features
from cenfusion.nn import channel_exchange
from tests.analysis.helpers import TwoSites, set_gammas


def reference_groups(gamma, threshold, names):
    """Per modality: channels only it keeps; then channels all keep. A loop over channels."""
    num, channels = gamma.shape
    kept = [[abs(float(gamma[m, c])) >= threshold for c in range(channels)] for m in range(num)]
    groups = {}
    for m, name in enumerate(names):
        groups[f"only_{name}"] = tuple(
            c
            for c in range(channels)
            if kept[m][c] and not any(kept[k][c] for k in range(num) if k != m)
        )
    groups["all"] = tuple(c for c in range(channels) if all(kept[k][c] for k in range(num)))
    return groups


@pytest.mark.parametrize("names", [("rgb", "depth"), ("rgb", "depth", "normal")])
def test_groups_match_a_loop_over_channels(names):
    torch.manual_seed(len(names))
    gamma = torch.randn(len(names), 40) * 0.05
    got = channel_groups(gamma, 0.03, names)
    expected = reference_groups(gamma, 0.03, names)
    assert {g.key: g.channels for g in got} == expected
    assert [g.key for g in got] == [*(f"only_{n}" for n in names), "all"]


def test_two_modalities_give_the_papers_three_groups():
    gamma = torch.tensor([[0.0, 0.5, 0.5, 0.001], [0.5, 0.0, 0.5, 0.0]])
    groups = {g.key: g for g in channel_groups(gamma, 0.02, ("rgb", "depth"))}
    assert groups["only_depth"].channels == (0,)  # gamma_rgb ~ 0, gamma_depth > 0
    assert groups["only_depth"].label == "γ_rgb < θ, γ_depth ≥ θ"
    assert groups["only_rgb"].channels == (1,)  # gamma_rgb > 0, gamma_depth ~ 0
    assert groups["all"].channels == (2,)  # both > 0; channel 3 (both ~ 0) is in no group
    assert groups["all"].label == "γ_rgb ≥ θ, γ_depth ≥ θ"


def test_group_maps_are_the_mean_over_the_groups_channels_per_branch():
    torch.manual_seed(0)
    names = ("a", "b", "c")
    gamma = torch.randn(3, 12) * 0.05
    features = torch.randn(3, 12, 4, 5)
    for result in group_feature_maps(features, gamma, 0.03, names):
        channels = result.group.channels
        if not channels:
            assert result.maps is None
            continue
        assert result.maps.shape == (3, 4, 5)
        for m in range(3):
            total = torch.zeros(4, 5)
            for c in channels:
                total += features[m, c]
            torch.testing.assert_close(result.maps[m], total / len(channels))
    with pytest.raises(ValueError, match=r"features: expected \(M, C, h, w\)"):
        group_feature_maps(features[:, :5], gamma, 0.03, names)


def test_site_features_are_the_norm_output_before_its_exchange_or_after_it():
    torch.manual_seed(0)
    model = TwoSites(2, threshold=0.05).eval()
    set_gammas(model, seed=4)
    x = torch.randn(2, 3, 6, 7)
    with torch.no_grad():
        y = model.norm2._normalise_with_running_stats(model.conv2(model.norm1(model.conv1(x))))
    before = site_features(model, "norm2", x, 2)
    torch.testing.assert_close(before, y.unflatten(0, (2, 1)))
    assert model.norm2.exchange_threshold == 0.05  # restored
    after = site_features(model, "norm2", x, 2, after_exchange=True)
    exchanged = channel_exchange(y, model.norm2.weight.detach(), 0.05, 2)
    torch.testing.assert_close(after, exchanged.unflatten(0, (2, 1)))
    assert not torch.equal(before, after)  # some channels were given away
    with pytest.raises(ValueError, match="no module named 'norm9'"):
        site_features(model, "norm9", x, 2)
