"""A MobileNet-style net and a U-Net convert and train on the built-in scenes."""

import pytest
import torch
import torch.nn.functional as F

import cenfusion
from cenfusion.analysis import exchange_statistics
from cenfusion.convert import ModalityGroupNorm, ModalityInstanceNorm2dNoStats
from cenfusion.data.synthetic import IGNORE_INDEX, NUM_CLASSES, SyntheticScenes
from cenfusion.nn import exchange_sites, penalised_scaling_factors, sparsity_penalty
from tests.convert.nets import TinyMobileNet, TinyUNet

MODALITIES = ("rgb", "depth")


@pytest.fixture(scope="module")
def batch():
    scenes = SyntheticScenes(4, MODALITIES, seed=3, size=(32, 40))
    items = [scenes[i] for i in range(len(scenes))]
    return {key: torch.stack([item[key] for item in items]) for key in (*MODALITIES, "label")}


def train(model, batch, steps=6, lam=1e-3):
    """A few SGD steps on one batch: cross-entropy on every output plus the L1 term."""
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    inputs = {name: batch[name] for name in MODALITIES}
    losses = []
    for _ in range(steps):
        outputs = model(inputs)
        loss = sum(
            F.cross_entropy(out, batch["label"], ignore_index=IGNORE_INDEX)
            for out in outputs.values()
        )
        losses.append(loss.item())
        loss = loss + sparsity_penalty(model, lam)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return losses


def test_mobilenet_style_net_exchanges_after_its_depthwise_norms_and_trains(batch):
    torch.manual_seed(0)
    model = cenfusion.convert(TinyMobileNet(NUM_CLASSES), MODALITIES)
    # inverted residuals with a skip; the strided block has none, so no residual branch
    assert model.exchange_norms == ("blocks.0.depthwise.1", "blocks.2.depthwise.1")
    assert [name for name, _ in exchange_sites(model)] == [
        "network.blocks.0.depthwise.1",
        "network.blocks.2.depthwise.1",
    ]
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    losses = train(model, batch)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    after = dict(model.named_parameters())
    for name in ("network.stem.0.weight", "network.blocks.0.depthwise.1.weight", "ensemble.alpha"):
        assert not torch.equal(before[name], after[name]), name
    model.eval()
    with torch.no_grad():
        out = model({name: batch[name] for name in MODALITIES})
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        k: (4, NUM_CLASSES, 32, 40) for k in (*MODALITIES, "ensemble")
    }


def test_unet_with_skip_concatenations_converts_and_trains(batch):
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="default rule found no exchange site in TinyUNet"):
        unchosen = cenfusion.convert(TinyUNet(NUM_CLASSES), MODALITIES)
    assert unchosen.exchange_norms == ()
    model = cenfusion.convert(TinyUNet(NUM_CLASSES), MODALITIES, exchange_after="all")
    assert model.exchange_norms == ("enc1.1", "enc2.1", "bottom.1", "dec2.1", "dec1.1")
    assert isinstance(model.network.enc1[1], ModalityGroupNorm)
    assert isinstance(model.network.dec2[1], ModalityInstanceNorm2dNoStats)
    before = model.network.enc1[1].weight.detach().clone()
    losses = train(model, batch)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    assert not torch.equal(before, model.network.enc1[1].weight)


def test_sparsity_penalty_and_exchange_statistics_work_on_converted_models():
    model = cenfusion.convert(
        TinyUNet(NUM_CLASSES), MODALITIES, exchange_after=["enc1.1", "dec2.1"]
    )
    with torch.no_grad():  # modality 0 gives away half of enc1's channels
        model.network.enc1[1].weight[0, :4] = 1e-3
    gn = model.network.enc1[1].weight
    inorm = model.network.dec2[1].weight
    expected = 2e-4 * (gn[0, :4].abs().sum() + gn[1, 4:].abs().sum()) + 2e-4 * (
        inorm[0, :8].abs().sum() + inorm[1, 8:].abs().sum()
    )
    torch.testing.assert_close(sparsity_penalty(model, 2e-4), expected)
    assert len(list(penalised_scaling_factors(model, "all"))) == 2
    stats = exchange_statistics(model)
    assert [s.site for s in stats] == ["network.enc1.1", "network.dec2.1"]
    assert stats[0].exchanged == (4, 0) and stats[1].exchanged == (0, 0)
    off = cenfusion.convert(TinyUNet(NUM_CLASSES), MODALITIES, exchange_after="all", exchange=False)
    assert all(norm.exchange_threshold is None for _, norm in exchange_sites(off))
    assert len(list(exchange_sites(off))) == 5  # still penalised by the L1 term
