"""Training with a modality missing per sample: every sample as the model of its present rows.

Slow references: per sample, the model built for its present modalities (eval mode, where a
sample does not depend on the others); in training mode, plain ``F.batch_norm`` /
``F.instance_norm`` over the present rows, and the restricted model when a modality is absent
from the whole batch. An all-present mask changes nothing, bit for bit.
"""

import pytest
import torch
import torch.nn.functional as F

from cenfusion.models import create_model
from cenfusion.nn import (
    Ensemble,
    ModalityBatchNorm2d,
    ModalityInstanceNorm2d,
    channel_exchange,
    presence_context,
    sample_presence,
)
from tests.nn.test_missing_modalities import SMALL, varied

MASKS_3 = torch.tensor([[1, 0, 1, 1], [1, 1, 0, 1], [0, 1, 1, 1]], dtype=torch.bool)


def slow_exchange(y, gamma, threshold, present):
    """Loop over samples, modalities and channels."""
    num, batch = present.shape
    per = y.unflatten(0, (num, batch))
    out = per.clone()
    for b in range(batch):
        for m in range(num):
            for c in range(y.shape[1]):
                if abs(float(gamma[m, c])) < threshold:
                    others = [per[k, b, c] for k in range(num) if k != m and present[k, b]]
                    if others:
                        out[m, b, c] = sum(others) / len(others)
    return out.flatten(0, 1)


@pytest.mark.parametrize("num", [2, 3])
def test_the_exchange_takes_the_present_other_modalities_only(num):
    torch.manual_seed(0)
    present = MASKS_3[:num] if num == 3 else torch.tensor([[1, 0, 1, 1], [1, 1, 0, 1]]).bool()
    y = torch.randn(num * 4, 6, 3, 3)
    gamma = torch.randn(num, 6).where(torch.rand(num, 6) > 0.5, torch.tensor(0.001))
    got = channel_exchange(y, gamma, 0.01, num, present)
    torch.testing.assert_close(got, slow_exchange(y, gamma, 0.01, present), rtol=0, atol=1e-6)
    # absent rows' values never travel, even NaN ones
    poisoned = y.clone().unflatten(0, (num, 4))
    poisoned[~present] = float("nan")
    got = channel_exchange(poisoned.flatten(0, 1), gamma, 0.01, num, present).unflatten(0, (num, 4))
    assert not got[present].isnan().any()
    # all present: the ordinary exchange, bit for bit
    full = torch.ones(num, 4, dtype=torch.bool)
    assert torch.equal(
        channel_exchange(y, gamma, 0.01, num, full), channel_exchange(y, gamma, 0.01, num)
    )


def test_the_ensemble_softmax_runs_over_the_present_alpha_of_each_sample():
    ensemble = Ensemble(3)
    with torch.no_grad():
        ensemble.alpha.copy_(torch.tensor([0.3, -1.0, 2.0]))
    outputs = torch.randn(12, 5, 2, 2)
    got = ensemble(outputs, MASKS_3)
    per = outputs.unflatten(0, (3, 4))
    for b in range(4):
        rows = MASKS_3[:, b].nonzero().flatten()
        weights = torch.softmax(ensemble.alpha.detach()[rows], dim=0)
        expected = sum(w * per[r, b] for w, r in zip(weights, rows, strict=True))
        torch.testing.assert_close(got[b], expected)


def test_batch_norm_takes_each_modalitys_statistics_over_its_present_rows():
    torch.manual_seed(0)
    norm = ModalityBatchNorm2d(5, 3, momentum=0.2).train()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_()
    x = torch.randn(12, 5, 4, 4, requires_grad=True)
    norm.presence = MASKS_3
    y = norm(x)
    norm.presence = None
    per_x, per_y = x.unflatten(0, (3, 4)), y.unflatten(0, (3, 4))
    for m in range(3):
        rows = MASKS_3[m]
        mean, var = torch.zeros(5), torch.ones(5)
        expected = F.batch_norm(per_x[m][rows], mean, var, norm.weight[m], norm.bias[m], True, 0.2)
        torch.testing.assert_close(per_y[m][rows], expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(norm.running_mean[m], mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(norm.running_var[m], var, rtol=1e-5, atol=1e-6)
    # the absent rows' values reach neither the statistics nor the gradient of present rows
    loss = (per_y[MASKS_3] ** 2).sum()
    (grad,) = torch.autograd.grad(loss, x)
    assert torch.count_nonzero(grad.unflatten(0, (3, 4))[~MASKS_3]) == 0


def test_instance_norm_moves_its_running_statistics_by_the_present_samples_only():
    torch.manual_seed(0)
    norm = ModalityInstanceNorm2d(4, 3, momentum=0.5).train()
    x = torch.randn(12, 4, 5, 5)
    norm.presence = MASKS_3
    y = norm(x)
    norm.presence = None
    per_x, per_y = x.unflatten(0, (3, 4)), y.unflatten(0, (3, 4))
    for m in range(3):
        rows = MASKS_3[m]
        mean, var = torch.zeros(4), torch.ones(4)
        expected = F.instance_norm(
            per_x[m][rows], mean, var, norm.weight[m], norm.bias[m], True, 0.5
        )
        torch.testing.assert_close(per_y[m][rows], expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(norm.running_mean[m], mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(norm.running_var[m], var, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("modalities", [("rgb", "depth"), ("rgb", "depth", "normal")])
def test_in_evaluation_each_sample_is_the_model_of_its_present_modalities(modalities):
    torch.manual_seed(0)
    model = varied(create_model("segmentation", modalities=modalities, **SMALL))
    num = len(modalities)
    present = MASKS_3[:num].clone()
    present[0, 2] = num == 2 or present[0, 2]  # M = 2: every sample keeps a modality
    inputs = {m: torch.randn(4, 3, 32, 32) for m in modalities}
    with torch.no_grad():
        got = model(inputs, present=present)
        for b in range(4):
            names = [m for i, m in enumerate(modalities) if present[i, b]]
            alone = model.with_modalities(names)({m: inputs[m][b : b + 1] for m in names})
            for name in [*names, "ensemble"]:
                torch.testing.assert_close(got[name][b : b + 1], alone[name], rtol=1e-4, atol=1e-5)


def test_in_training_a_modality_absent_from_the_batch_leaves_the_restricted_model():
    torch.manual_seed(0)
    modalities = ("rgb", "depth", "normal")
    model = varied(create_model("segmentation", modalities=modalities, **SMALL)).train()
    restricted = model.with_modalities(["rgb", "normal"]).train()
    present = torch.tensor([[1, 1, 1], [0, 0, 0], [1, 1, 1]], dtype=torch.bool)
    inputs = {m: torch.randn(3, 3, 32, 32) for m in modalities}
    got = model(inputs, present=present)
    expected = restricted({m: inputs[m] for m in ("rgb", "normal")})
    for name in ("rgb", "normal", "ensemble"):
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-5)
    norm = model.backbone.bn1
    rows = norm.running_mean[[0, 2]]
    torch.testing.assert_close(rows, restricted.backbone.bn1.running_mean, rtol=1e-5, atol=1e-6)


def test_an_all_present_mask_changes_nothing_bit_for_bit():
    torch.manual_seed(0)
    model = varied(create_model("segmentation", modalities=("rgb", "depth"), **SMALL)).train()
    twin = varied(create_model("segmentation", modalities=("rgb", "depth"), **SMALL)).train()
    twin.load_state_dict(model.state_dict())
    inputs = {m: torch.randn(2, 3, 32, 32) for m in ("rgb", "depth")}
    got = model(inputs, present=torch.ones(2, 2, dtype=torch.bool))
    expected = twin(inputs)
    for name in expected:
        assert torch.equal(got[name], expected[name])
    after, twin_after = model.state_dict(), twin.state_dict()
    assert all(torch.equal(after[key], twin_after[key]) for key in after)


def test_masks_are_drawn_reproducibly_and_never_empty_a_sample():
    generator = torch.Generator().manual_seed(3)
    mask = sample_presence(3, 4000, 0.3, generator)
    assert mask.shape == (3, 4000) and mask.any(dim=0).all()
    dropped = (~mask).sum(dim=0)
    assert set(dropped.tolist()) <= {0, 1}
    assert abs(float(dropped.float().mean()) - 0.3) < 0.03
    assert abs(float((~mask).float().mean(dim=1).std())) < 0.02  # every modality alike
    again = sample_presence(3, 4000, 0.3, torch.Generator().manual_seed(3))
    assert torch.equal(mask, again)
    assert sample_presence(2, 5, 0.0).all()
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        sample_presence(2, 5, 1.0)
    with pytest.raises(ValueError, match="two modalities"):
        sample_presence(1, 5, 0.5)


def test_bad_masks_and_models_that_mix_rows_are_refused():
    model = create_model("segmentation", modalities=("rgb", "depth"), **SMALL)
    inputs = {m: torch.randn(2, 3, 32, 32) for m in ("rgb", "depth")}
    with pytest.raises(ValueError, match=r"shape \(M, B\) = \(2, 2\)"):
        model(inputs, present=torch.ones(3, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"samples \[1\] have no modality"):
        model(inputs, present=torch.tensor([[1, 0], [1, 0]], dtype=torch.bool))
    half = torch.tensor([[1, 1], [1, 0]], dtype=torch.bool)
    concat = create_model("segmentation", modalities=("rgb", "depth"), fusion="concat", **SMALL)
    with pytest.raises(ValueError, match="ConcatFusion"):
        concat(inputs, present=half)
    shared = create_model("segmentation", modalities=("rgb", "depth"), private_norms=False,
                          exchange=False, **SMALL)  # fmt: skip
    with pytest.raises(ValueError, match="BatchNorm2d"):
        shared(inputs, present=half)
    with presence_context(model, None):  # no mask: nothing to refuse
        pass
