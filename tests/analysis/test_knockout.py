"""The exchange switched off at chosen sites, against a model computed by hand."""

import pytest
import torch
import torch.nn.functional as F

from cenfusion.analysis import matches_site, switch_exchange_off
from tests.analysis.helpers import TwoSites, set_gammas


def test_a_pattern_names_a_contiguous_run_of_dotted_parts():
    site = "backbone.layer3.0.bn1"
    for pattern in ("layer3", "layer3.0", "backbone.layer3", "bn1", site):
        assert matches_site(site, pattern)
    for pattern in ("layer", "layer3.1", "3.0", "layer3.bn1", "backbone.layer3.0.bn1.x"):
        assert not matches_site(site, pattern)


def _norm(x, norm, m):
    """Modality ``m``'s rows of a private BN in eval mode, written out."""
    mean, var = norm.running_mean[m], norm.running_var[m]
    scale = norm.weight[m] / torch.sqrt(var + norm.eps)
    return (x - mean[:, None, None]) * scale[:, None, None] + norm.bias[m][:, None, None]


def _reference(model, x, exchange1, exchange2):
    """conv -> norm -> (exchange) -> conv -> norm -> (exchange) -> plain norm, channel by
    channel over M = 2 modalities stacked on the batch axis."""
    per_modality = list(x.chunk(2))
    for conv, norm, exchange in ((model.conv1, model.norm1, exchange1),
                                 (model.conv2, model.norm2, exchange2)):  # fmt: skip
        y = [_norm(F.conv2d(v, conv.weight, conv.bias, padding=1), norm, m)
             for m, v in enumerate(per_modality)]  # fmt: skip
        out = [v.clone() for v in y]
        if exchange:
            for m in range(2):
                for c in range(y[m].shape[1]):
                    if abs(float(norm.weight[m, c])) < norm.exchange_threshold:
                        out[m][:, c] = y[1 - m][:, c]
        per_modality = out
    return torch.cat([_norm(v, model.plain, m) for m, v in enumerate(per_modality)])


def test_exchange_off_at_one_site_keeps_the_other_sites_exchange():
    torch.manual_seed(0)
    model = TwoSites(2, channels=6).eval()
    set_gammas(model, seed=1)
    x = torch.randn(4, 3, 5, 7)
    with torch.no_grad():
        full = model.forward_stacked(x)
        torch.testing.assert_close(full, _reference(model, x, True, True))
        assert switch_exchange_off(model, ["norm1"]) == ["norm1"]
        off = model.forward_stacked(x)
        torch.testing.assert_close(off, _reference(model, x, False, True))
    assert not torch.allclose(off, full)  # norm1 had channels below theta
    assert model.norm1.exchange_site  # still a site: its L1 term stays


def test_exchange_off_refuses_a_pattern_that_names_no_site():
    model = TwoSites(2)
    with pytest.raises(
        ValueError,
        match="'layer9' names no exchange site that exchanges; the sites that do are norm1",
    ):
        switch_exchange_off(model, ["norm2", "layer9"])
    assert model.norm2.exchange_threshold == 0.1  # nothing switched on a refusal
    with pytest.raises(ValueError, match="no exchange sites"):
        switch_exchange_off(torch.nn.Conv2d(1, 1, 1), ["layer1"])
    model.norm2.exchange_threshold = None  # a site that never exchanges (exchange_stages)
    with pytest.raises(ValueError, match="'norm2' names no exchange site that exchanges"):
        switch_exchange_off(model, ["norm2"])
