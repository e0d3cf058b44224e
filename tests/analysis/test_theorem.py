"""Theorem 1: the attraction probability 2*Phi(lam/|g|) - 1, the check on a model, and |dL/dy|."""

import math

import pytest
import torch

from cenfusion.analysis import OutputGradientMonitor, attraction_check, attraction_probability
from cenfusion.nn import chunk_bounds, exchange_sites
from tests.analysis.helpers import TwoSites, set_gammas


def standard_normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def reference_probability(lam: float, grad: float) -> float:
    """The theorem as written: 2 * Phi(lam * |grad|^-1) - 1, with 1 where grad = 0."""
    if grad == 0:
        return 1.0
    return 2.0 * standard_normal_cdf(lam / abs(grad)) - 1.0


@pytest.mark.parametrize(
    ("lam", "grad", "expected"),
    [
        (1.0, 1.0, 0.6826894921370859),  # one standard deviation
        (1.959963984540054, 1.0, 0.95),
        (3.0, 1.0, 0.9973002039367398),
        (2e-4, 1e-3, 0.15851941887820603),
        (0.0, 0.5, 0.0),  # no L1 term: never attracted
    ],
)
def test_attraction_probability_is_twice_the_normal_cdf_minus_one(lam, grad, expected):
    assert attraction_probability(lam, grad) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert attraction_probability(lam, grad) == pytest.approx(reference_probability(lam, grad))
    assert isinstance(attraction_probability(lam, grad), float)


def test_zero_gradient_means_certain_attraction_even_without_penalty():
    assert attraction_probability(2e-4, 0.0) == 1.0
    assert attraction_probability(0.0, 0.0) == 1.0
    got = attraction_probability(0.0, torch.tensor([0.0, 1.0]))
    assert got.tolist() == [1.0, 0.0]


def test_the_sign_of_the_gradient_does_not_matter_and_large_gradients_give_zero():
    assert attraction_probability(0.3, -0.7) == attraction_probability(0.3, 0.7)
    assert attraction_probability(1e-4, 1e6) == pytest.approx(0.0, abs=1e-9)
    assert attraction_probability(1.0, math.inf) == 0.0
    assert math.isnan(attraction_probability(1.0, math.nan))


def test_tensors_are_handled_element_by_element_and_broadcast():
    torch.manual_seed(0)
    grads = torch.randn(4, 5, dtype=torch.float64) * 1e-3
    grads[0, 0] = 0.0
    lams = torch.tensor([[1e-4], [2e-4], [5e-4], [1e-3]], dtype=torch.float64)
    got = attraction_probability(lams, grads)
    assert got.shape == (4, 5) and got.dtype == torch.float64
    for i in range(4):
        for j in range(5):
            expected = reference_probability(float(lams[i, 0]), float(grads[i, j]))
            assert float(got[i, j]) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    scalar_lam = attraction_probability(2e-4, grads.float())
    assert scalar_lam.dtype == torch.float32
    assert float(scalar_lam[1, 1]) == pytest.approx(
        reference_probability(2e-4, float(grads[1, 1])), rel=1e-5
    )


def test_negative_lambda_is_refused():
    with pytest.raises(ValueError, match="lam: expected >= 0"):
        attraction_probability(-1.0, 1.0)
    with pytest.raises(ValueError, match="lam: expected >= 0"):
        attraction_probability(torch.tensor([1.0, -1.0]), 1.0)


def reference_check(model, lam, grads, threshold, mode, sites=None):
    """Loop over every penalised (site, modality, channel): share collapsed, mean prediction."""
    collapsed, predicted, count = 0, 0.0, 0
    for name, norm in exchange_sites(model):
        if sites is not None and name not in sites:
            continue
        gamma = norm.weight.detach().tolist()
        for m in range(norm.num_modalities):
            start, stop = chunk_bounds(norm.num_features, norm.num_modalities, m)
            channels = range(norm.num_features) if mode == "all" else range(start, stop)
            for c in channels:
                grad = grads if isinstance(grads, float) else float(grads[name][m, c])
                collapsed += abs(gamma[m][c]) < threshold
                predicted += reference_probability(lam, grad)
                count += 1
    return count, collapsed, collapsed / count, predicted / count


@pytest.mark.parametrize("mode", ["disjoint", "all"])
@pytest.mark.parametrize("num_modalities", [2, 3])
def test_attraction_check_matches_a_loop_over_penalised_factors(mode, num_modalities):
    model = TwoSites(num_modalities, channels=7, threshold=None)  # trained without exchange
    set_gammas(model, seed=5)
    generator = torch.Generator().manual_seed(1)
    grads = {
        name: torch.rand(norm.weight.shape, generator=generator) * 1e-3
        for name, norm in exchange_sites(model)
    }
    grads["norm1"][0, 0] = 0.0
    got = attraction_check(model, lam=2e-4, grad_norms=grads, threshold=0.02, mode=mode)
    count, collapsed, fraction, predicted = reference_check(model, 2e-4, grads, 0.02, mode)
    assert got.num_penalised == count
    assert got.num_collapsed == collapsed
    assert got.collapsed_fraction == pytest.approx(fraction)
    assert got.predicted_probability == pytest.approx(predicted, rel=1e-6)
    assert got.as_dict()["lam"] == 2e-4 and got.as_dict()["threshold"] == 0.02


def test_attraction_check_on_some_sites_only_counts_those():
    """A partial exchange: Theorem 1 holds at the sites that do not exchange."""
    model = TwoSites(2, channels=6, threshold=None)
    set_gammas(model, seed=7)
    grads = {name: torch.full(norm.weight.shape, 4e-4) for name, norm in exchange_sites(model)}
    got = attraction_check(model, 2e-4, {"norm2": grads["norm2"]}, 0.02, sites=["norm2"])
    count, collapsed, _, predicted = reference_check(
        model, 2e-4, grads, 0.02, "disjoint", {"norm2"}
    )
    everywhere = reference_check(model, 2e-4, grads, 0.02, "disjoint")
    assert (got.num_penalised, got.num_collapsed) == (count, collapsed)
    assert got.num_penalised < everywhere[0]
    assert got.predicted_probability == pytest.approx(predicted, rel=1e-6)
    with pytest.raises(ValueError, match=r"no exchange site in \['layer9'\]"):
        attraction_check(model, 2e-4, grads, 0.02, sites=["layer9"])


def test_one_gradient_estimate_for_every_channel():
    model = TwoSites(2, threshold=None)
    set_gammas(model, seed=2)
    got = attraction_check(model, lam=1e-3, grad_norms=1e-3, threshold=0.05)
    count, collapsed, _, predicted = reference_check(model, 1e-3, 1e-3, 0.05, "disjoint")
    assert (got.num_penalised, got.num_collapsed) == (count, collapsed)
    assert got.predicted_probability == pytest.approx(0.6826894921370859)
    assert predicted == pytest.approx(0.6826894921370859)


def test_attraction_check_names_what_is_missing_or_misshapen():
    model = TwoSites(2, threshold=None)
    with pytest.raises(ValueError, match="no \\|dL/dy\\| for exchange site 'norm2'"):
        attraction_check(model, 1e-3, {"norm1": torch.ones(2, 8)}, 0.02)
    bad = {"norm1": torch.ones(2, 8), "norm2": torch.ones(8, 2)}
    with pytest.raises(ValueError, match=r"grad_norms\['norm2'\]: expected shape \(2, 16\)"):
        attraction_check(model, 1e-3, bad, 0.02)
    with pytest.raises(ValueError, match="sparsity mode.*'none'"):
        attraction_check(model, 1e-3, 1.0, 0.02, mode="none")


def per_channel_gradient_norms(grad, num_modalities):
    """(M, C) L2 norms of a (M*B, C, H, W) gradient, by a loop over modalities and channels."""
    batch = grad.shape[0] // num_modalities
    out = torch.zeros(num_modalities, grad.shape[1], dtype=torch.float64)
    for m in range(num_modalities):
        for c in range(grad.shape[1]):
            block = grad[m * batch : (m + 1) * batch, c].double()
            out[m, c] = math.sqrt(float((block * block).sum()))
    return out


def test_monitor_records_the_l2_norm_of_the_output_gradient_averaged_over_passes():
    torch.manual_seed(0)
    model = TwoSites(2, threshold=0.05)
    set_gammas(model, seed=3)
    expected = []
    with OutputGradientMonitor(model) as monitor:
        for _ in range(2):
            x = torch.randn(4, 3, 5, 6)
            outputs = {}

            def keep(module, args, out, outputs=outputs):
                out.retain_grad()  # the reference: autograd's own gradient at the output
                outputs[module] = out

            handles = [norm.register_forward_hook(keep) for _, norm in exchange_sites(model)]
            loss = model.forward_stacked(x).pow(2).mean()
            loss.backward()
            for handle in handles:
                handle.remove()
            names = {norm: name for name, norm in exchange_sites(model)}
            expected.append(
                {names[n]: per_channel_gradient_norms(o.grad, 2) for n, o in outputs.items()}
            )
        with torch.no_grad():  # no gradient: not recorded
            model.forward_stacked(torch.randn(4, 3, 5, 6))
        got = monitor.mean()
        assert monitor.passes == 2
    assert list(got) == ["norm1", "norm2"]
    for name in got:
        reference = (expected[0][name] + expected[1][name]) / 2
        torch.testing.assert_close(got[name].double(), reference, rtol=1e-5, atol=1e-12)
    # closed: the hooks are gone, nothing more is recorded
    model.forward_stacked(torch.randn(4, 3, 5, 6)).sum().backward()
    assert monitor.passes == 2
    monitor.reset()
    assert monitor.mean() == {} and monitor.passes == 0


def test_monitor_refuses_a_model_without_exchange_sites():
    with pytest.raises(ValueError, match="no exchange sites"):
        OutputGradientMonitor(torch.nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match="no exchange sites"):
        OutputGradientMonitor(TwoSites(2, threshold=None), sites=["layer9"])


def test_monitor_records_only_the_sites_it_is_given():
    model = TwoSites(2, threshold=None)
    with OutputGradientMonitor(model, sites=["norm2"]) as monitor:
        model.forward_stacked(torch.randn(4, 3, 5, 6)).pow(2).mean().backward()
        assert list(monitor.mean()) == ["norm2"] and monitor.passes == 1
