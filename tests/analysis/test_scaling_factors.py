"""Per-site statistics of the scaling factors against a plain loop over sites and channels."""

import statistics

import pytest
import torch

from cenfusion.analysis import (
    find_site,
    format_statistics,
    scaling_factors,
    site_statistics,
    site_thresholds,
    spread_sites,
)
from cenfusion.nn import exchange_sites
from tests.analysis.helpers import TwoSites, set_gammas


def reference_statistics(model, threshold=None):
    """One dict per site, by a loop over modalities and channels with Python numbers."""
    rows = []
    for name, norm in exchange_sites(model):
        theta = threshold if threshold is not None else norm.exchange_threshold
        gamma = norm.weight.detach().tolist()  # M lists of C Python floats
        per_modality = []
        below_everywhere = 0
        for c in range(norm.num_features):
            if all(abs(gamma[m][c]) < theta for m in range(norm.num_modalities)):
                below_everywhere += 1
        for m in range(norm.num_modalities):
            values = [abs(gamma[m][c]) for c in range(norm.num_features)]
            per_modality.append(
                {
                    "exchanged": sum(1 for v in values if v < theta),
                    "mean": sum(values) / len(values),
                    "median": statistics.median(values),
                    "min": min(values),
                    "max": max(values),
                }
            )
        rows.append((name, theta, norm.num_features, per_modality, below_everywhere))
    return rows


@pytest.mark.parametrize("num_modalities", [2, 3])
@pytest.mark.parametrize("threshold", [None, 0.3])
def test_site_statistics_match_a_loop_over_channels(num_modalities, threshold):
    model = TwoSites(num_modalities, channels=7)  # odd C: the median is a middle value
    set_gammas(model, seed=num_modalities)
    got = site_statistics(model, threshold)
    expected = reference_statistics(model, threshold)
    assert [s.site for s in got] == ["norm1", "norm2"]  # the plain norm is not a site
    for stats, (name, theta, channels, per_modality, lost) in zip(got, expected, strict=True):
        assert stats.site == name
        assert stats.threshold == pytest.approx(theta)
        assert stats.num_channels == channels
        assert stats.modalities == tuple(f"m{m}" for m in range(num_modalities))
        assert stats.all_below == lost
        for m, ref in enumerate(per_modality):
            assert stats.exchanged[m] == ref["exchanged"]
            assert stats.exchanged_fraction[m] == pytest.approx(ref["exchanged"] / channels)
            assert stats.abs_mean[m] == pytest.approx(ref["mean"], rel=1e-6)
            assert stats.abs_median[m] == pytest.approx(ref["median"], rel=1e-6)
            assert stats.abs_min[m] == pytest.approx(ref["min"], rel=1e-6)
            assert stats.abs_max[m] == pytest.approx(ref["max"], rel=1e-6)


def test_even_channel_count_median_is_the_mean_of_the_middle_two_and_theta_itself_is_kept():
    model = TwoSites(2, channels=4)
    with torch.no_grad():
        model.norm1.weight.copy_(torch.tensor([[0.1, -0.4, 0.2, 0.9], [1.0, 2.0, 3.0, 4.0]]))
    stats = site_statistics(model)[0]
    assert stats.abs_median == pytest.approx((0.3, 2.5))
    assert stats.exchanged == (0, 0)  # |gamma| = theta = 0.1 is kept: strictly below exchanges
    assert site_statistics(model, threshold=0.25)[0].exchanged == (2, 0)


def test_scaling_factors_are_detached_copies_of_every_sites_gamma():
    model = TwoSites(2)
    factors = scaling_factors(model)
    assert list(factors) == ["norm1", "norm2"]
    factors["norm1"].zero_()
    assert not torch.equal(model.norm1.weight.detach(), factors["norm1"])
    assert not factors["norm2"].requires_grad


def test_a_model_trained_without_exchange_needs_a_threshold():
    model = TwoSites(2, threshold=None)
    with pytest.raises(ValueError, match="'norm1' has no exchange threshold.*give a threshold"):
        site_statistics(model)
    assert site_thresholds(model, 0.05) == {"norm1": 0.05, "norm2": 0.05}
    assert len(site_statistics(model, 0.05)) == 2


def test_table_lists_every_site_and_modality_and_the_totals():
    model = TwoSites(2)
    set_gammas(model, seed=1)
    stats = site_statistics(model)
    text = format_statistics(stats)
    assert "norm1" in text and "norm2" in text
    total = sum(s.exchanged[1] for s in stats)
    channels = sum(s.num_channels for s in stats)
    assert f"{total} ({total / channels:.1%})" in text
    assert "lost" in text


def test_layers_are_found_by_full_name_or_a_unique_dotted_tail():
    sites = ["backbone.layer1.0.bn2", "backbone.layer1.1.bn2", "backbone.layer2.0.bn2"]
    assert find_site(sites, "backbone.layer1.1.bn2") == "backbone.layer1.1.bn2"
    assert find_site(sites, "layer2.0.bn2") == "backbone.layer2.0.bn2"
    with pytest.raises(ValueError, match="unknown layer 'layer9.0.bn2'.*backbone.layer1.0.bn2"):
        find_site(sites, "layer9.0.bn2")
    with pytest.raises(ValueError, match="unknown layer '0.bn'"):
        find_site(sites, "0.bn")  # a tail must end at a dot, not inside a name
    with pytest.raises(ValueError, match="ambiguous"):
        find_site(["a.x.bn2", "b.x.bn2"], "x.bn2")


def test_the_share_of_each_modalitys_penalised_chunk_below_theta():
    from cenfusion.analysis.exchange_stats import penalised_share_below_threshold

    model = TwoSites(2, channels=8, threshold=0.1)
    with torch.no_grad():
        for _, norm in exchange_sites(model):
            norm.weight.fill_(1.0)
        model.norm1.weight[0, :2] = 0.05  # modality 0: 2 of its chunk [0, 4) below θ
        model.norm1.weight[0, 6] = 0.0  # below θ, but in modality 1's chunk: not counted
        model.norm1.weight[1, 4:8] = -0.01  # modality 1: its whole chunk [4, 8) (|γ| counts)
    shares = penalised_share_below_threshold(model)
    assert shares == {"norm1": [0.5, 1.0], "norm2": [0.0, 0.0]}
    model.norm2.exchange_threshold = None  # exchange off: not a share of anything
    assert list(penalised_share_below_threshold(model)) == ["norm1"]
    # ... unless asked for the sites that keep their channels, against a given θ
    with torch.no_grad():
        model.norm2.weight[1, 8] = 0.3  # 1 of 8 in its chunk: below 0.5, not below 0.1
    assert penalised_share_below_threshold(model, kept_threshold=0.5) == {"norm2": [0.0, 0.125]}


def test_the_probe_records_the_kept_sites_only_where_some_sites_exchange():
    from cenfusion.analysis.probes import ExchangeProbe

    model = TwoSites(2, channels=8, threshold=0.1)
    assert "penalised_below_theta_kept" not in ExchangeProbe(model, 0.1).end_epoch()
    model.norm2.exchange_threshold = None
    record = ExchangeProbe(model, 0.1).end_epoch()
    assert list(record["penalised_below_theta"]) == ["norm1"]
    assert list(record["penalised_below_theta_kept"]) == ["norm2"]
    model.norm1.exchange_threshold = None  # nothing exchanges: private-bn-l1's record as before
    assert "penalised_below_theta_kept" not in ExchangeProbe(model, 0.1).end_epoch()


def test_spread_sites_picks_first_middle_and_last():
    sites = [f"s{i}" for i in range(8)]
    assert spread_sites(sites) == ["s0", "s4", "s7"]  # round(3.5) = 4
    assert spread_sites(sites[:2]) == ["s0", "s1"]
    assert spread_sites(sites[:1]) == ["s0"]
    assert spread_sites(sites, count=5) == ["s0", "s2", "s4", "s5", "s7"]
