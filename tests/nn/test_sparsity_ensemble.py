"""The L1 term and the ensemble against loop references."""

import pytest
import torch
from torch import nn

from cenfusion.nn import (
    Ensemble,
    ModalityBatchNorm2d,
    StackedOutputs,
    chunk_bounds,
    penalised_scaling_factors,
    sparsity_penalty,
)
from tests.reference import reference_ensemble, reference_penalised_factors


class TwoSites(nn.Module):
    def __init__(self, num_modalities: int) -> None:
        super().__init__()
        self.a = ModalityBatchNorm2d(6, num_modalities, exchange_threshold=0.02)
        self.b = ModalityBatchNorm2d(7, num_modalities, exchange_site=True)  # site, exchange off
        self.c = ModalityBatchNorm2d(5, num_modalities)  # not a site: never penalised
        with torch.no_grad():
            for norm in (self.a, self.b, self.c):
                norm.weight.normal_()


@pytest.mark.parametrize("num_modalities", [1, 2, 3, 4])
@pytest.mark.parametrize("mode", ["none", "disjoint", "all"])
def test_penalty_sums_abs_gamma_over_the_disjoint_chunks(num_modalities, mode):
    model = TwoSites(num_modalities)
    sites = [list(model.a.weight), list(model.b.weight)]
    expected = reference_penalised_factors(sites, mode)
    got = torch.cat(
        [f.reshape(-1) for f in penalised_scaling_factors(model, mode)] or [torch.zeros(0)]
    )
    torch.testing.assert_close(got, torch.stack(expected) if expected else torch.zeros(0))
    lam = 3e-4
    penalty = sparsity_penalty(model, lam, mode)
    reference = lam * sum(abs(float(v)) for v in expected)
    assert float(penalty) == pytest.approx(reference, rel=1e-6, abs=0)


def test_disjoint_penalty_has_gradient_only_on_own_chunk():
    model = TwoSites(2)
    sparsity_penalty(model, 1.0, "disjoint").backward()
    grad = model.a.weight.grad
    assert torch.equal(grad[0, :3], torch.sign(model.a.weight[0, :3].detach()))
    assert torch.equal(grad[0, 3:], torch.zeros(3))
    assert torch.equal(grad[1, :3], torch.zeros(3))
    assert model.c.weight.grad is None


def test_chunks_split_channels_into_m_contiguous_parts():
    assert [chunk_bounds(64, 2, m) for m in range(2)] == [(0, 32), (32, 64)]
    assert [chunk_bounds(7, 2, m) for m in range(2)] == [(0, 3), (3, 7)]  # the public code's C//2
    assert [chunk_bounds(10, 3, m) for m in range(3)] == [(0, 3), (3, 6), (6, 10)]


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="expected one of"):
        sparsity_penalty(TwoSites(2), 1.0, "half")


@pytest.mark.parametrize("num_modalities", [1, 2, 3, 4])
def test_ensemble_is_softmax_weighted_sum_of_detached_branches(num_modalities):
    ens = Ensemble(num_modalities).double()
    assert torch.equal(ens.alpha, torch.ones(num_modalities, dtype=torch.float64))
    with torch.no_grad():
        ens.alpha.normal_()
    outs = torch.randn(num_modalities * 2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    got = ens(outs)
    expected = reference_ensemble(list(outs.split(2)), ens.alpha)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)
    grad_alpha, grad_outs = torch.autograd.grad(
        got.sum() ** 2, [ens.alpha, outs], allow_unused=True
    )
    ref_alpha = torch.autograd.grad(expected.sum() ** 2, ens.alpha)[0]
    torch.testing.assert_close(grad_alpha, ref_alpha, atol=1e-9, rtol=1e-9)
    assert grad_outs is None  # the ensemble's loss trains alpha only


def test_named_outputs_carry_each_modality_and_the_ensemble():
    ens = Ensemble(2)
    outs = torch.arange(8.0).view(4, 2)
    named = StackedOutputs(outs, ens(outs)).named(["rgb", "depth"])
    assert list(named) == ["rgb", "depth", "ensemble"]
    assert torch.equal(named["depth"], outs[2:])
    torch.testing.assert_close(named["ensemble"], (outs[:2] + outs[2:]) / 2)
