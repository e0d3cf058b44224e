"""The CEN pix2pix generator and discriminator against a plain per-modality reference."""

import warnings

import pytest
import torch
import torch.nn.functional as F

import cenfusion
from cenfusion.models.translation import CENUNetGenerator, PatchDiscriminator, encoder_widths
from cenfusion.nn import exchange_sites, penalised_scaling_factors, sparsity_penalty


def reference_forward(gen, inputs, training):
    """M separate U-Nets with private InstanceNorms, Eq. 6 written as a loop over channels,
    and skips that carry the *pre-activation* encoder features (the textbook pix2pix)."""
    num = len(inputs)
    theta = gen.insnorm_threshold if gen.exchange else None

    def norm(block, xs, exchange):
        n = block.norm
        ys = [
            F.instance_norm(
                x,
                None if training else n.running_mean[m],
                None if training else n.running_var[m],
                n.weight[m],
                n.bias[m],
                use_input_stats=training,
                eps=n.eps,
            )
            for m, x in enumerate(xs)
        ]
        if not exchange or theta is None or num == 1:
            return ys
        out = [y.clone() for y in ys]
        for m in range(num):
            for c in range(ys[m].shape[1]):
                if n.weight[m, c].abs() < theta:
                    out[m][:, c] = sum(ys[k][:, c] for k in range(num) if k != m) / (num - 1)
        return out

    hs = [gen.down[0].conv(x) for x in inputs]
    if gen.down[0].norm is not None:  # first_block_norm
        hs = norm(gen.down[0], hs, exchange=1 in gen.exchange_stages)
    skips = []
    for number, block in enumerate(gen.down[1:], start=2):
        skips.append(hs)
        hs = [block.conv(F.leaky_relu(h, 0.2)) for h in hs]
        if block.norm is not None:
            hs = norm(block, hs, exchange=number in gen.exchange_stages)
    for j, block in enumerate(gen.up):
        hs = [block.conv(F.relu(h)) for h in hs]
        if block.norm is not None:
            hs = norm(block, hs, exchange=False)
        if j < len(skips):
            hs = [torch.cat([h, s], 1) for h, s in zip(hs, skips[-1 - j], strict=True)]
    outs = [torch.tanh(h) for h in hs]
    weights = torch.softmax(gen.ensemble.alpha, 0)
    return outs + [sum(w * o.detach() for w, o in zip(weights, outs, strict=True))]


def randomised(gen, seed=0):
    """Scaling factors with ~30 % below the threshold, random running statistics and alpha."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, site in exchange_sites(gen):
            u = torch.rand(site.weight.shape, generator=g)
            site.weight.copy_(torch.where(u < 0.3, u / 100, 0.5 + u))
            site.bias.copy_(torch.randn(site.bias.shape, generator=g) * 0.1)
        for block in gen.up:
            if block.norm is not None:
                block.norm.weight.copy_(0.5 + torch.rand(block.norm.weight.shape, generator=g))
        for module in gen.modules():
            if hasattr(module, "running_mean") and module.running_mean is not None:
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=g) * 0.1)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=g) + 0.5)
        gen.ensemble.alpha.copy_(torch.randn(gen.num_modalities, generator=g))
    return gen


@pytest.mark.parametrize("num_modalities", [1, 2, 3])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_generator_matches_the_per_modality_reference(num_modalities, training):
    torch.manual_seed(0)
    names = [f"d{m}" for m in range(num_modalities)]
    gen = randomised(CENUNetGenerator(names, ngf=4, num_downs=5, insnorm_threshold=1e-2))
    gen.train(training)
    for module in gen.modules():
        if isinstance(module, torch.nn.Dropout):
            module.eval()
    inputs = [torch.randn(2, 3, 32, 32) for _ in names]
    with torch.no_grad():
        got = gen(inputs)
        ref = reference_forward(gen, inputs, training)
    for name, r in zip([*names, "ensemble"], ref, strict=True):
        torch.testing.assert_close(got[name], r, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stages", [[3], [2, 4], "middle"])
def test_exchange_at_some_blocks_matches_the_reference(stages):
    torch.manual_seed(0)
    gen = CENUNetGenerator(["a", "b"], ngf=4, num_downs=5, exchange_stages=stages)
    gen.init_weights(std=0.3)
    gen = randomised(gen).eval()
    inputs = [torch.randn(1, 3, 32, 32) for _ in range(2)]
    with torch.no_grad():
        got = gen(inputs)
        ref = reference_forward(gen, inputs, training=False)
        everywhere = CENUNetGenerator(["a", "b"], ngf=4, num_downs=5).eval()
        everywhere.load_state_dict(gen.state_dict())
        all_sites = everywhere(inputs)
    torch.testing.assert_close(got["a"], ref[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got["ensemble"], ref[-1], rtol=1e-5, atol=1e-5)
    assert (got["a"] - all_sites["a"]).abs().max() > 1e-3  # the switch changes something


@pytest.mark.parametrize("stages", ["all", "early"])
def test_a_norm_in_the_first_block_exchanges_there_and_matches_the_reference(stages):
    """first_block_norm: block 1 gets a private norm that is an exchange site; its exchange
    reaches the skip into the last decoder block."""
    torch.manual_seed(0)
    kwargs = {"ngf": 4, "num_downs": 5, "exchange_stages": stages}
    gen = CENUNetGenerator(["a", "b"], first_block_norm=True, **kwargs)
    gen.init_weights(std=0.3)
    gen = randomised(gen).eval()
    names = [name for name, _ in exchange_sites(gen, exchanging=True)]
    assert names[0] == "down.0.norm" and len(names) == (4 if stages == "all" else 1)
    inputs = [torch.randn(1, 3, 32, 32) for _ in range(2)]
    with torch.no_grad():
        got = gen(inputs)
        ref = reference_forward(gen, inputs, training=False)
        gen.down[0].norm.exchange_threshold = None  # the first block's exchange off
        without = gen(inputs)
    torch.testing.assert_close(got["a"], ref[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got["ensemble"], ref[-1], rtol=1e-5, atol=1e-5)
    assert (got["a"] - without["a"]).abs().max() > 1e-3  # the first block's exchange counts
    plain = CENUNetGenerator(["a", "b"], **kwargs) if stages == "all" else None
    if plain is not None:  # the paper's generator: no norm, no site in block 1
        assert plain.down[0].norm is None
        assert [n for n, _ in exchange_sites(plain)] == names[1:]


def test_a_plain_first_block_norm_is_no_site_and_matches_the_reference():
    """first_block_site=False: block 1 keeps its private norm, but it never exchanges and the
    L1 term leaves it alone; the other sites are CEN's."""
    torch.manual_seed(0)
    gen = CENUNetGenerator(["a", "b"], ngf=4, num_downs=5, first_block_norm=True,
                           first_block_site=False)  # fmt: skip
    gen.init_weights(std=0.3)
    gen = randomised(gen).eval()
    paper = CENUNetGenerator(["a", "b"], ngf=4, num_downs=5)
    assert gen.down[0].norm is not None and gen.down[0].norm.exchange_threshold is None
    assert [n for n, _ in exchange_sites(gen)] == [n for n, _ in exchange_sites(paper)]
    penalised = {t.data_ptr() for t in penalised_scaling_factors(gen)}
    assert gen.down[0].norm.weight.data_ptr() not in penalised
    inputs = [torch.randn(1, 3, 32, 32) for _ in range(2)]
    with torch.no_grad():
        got = gen(inputs)
        ref = reference_forward(gen, inputs, training=False)
    torch.testing.assert_close(got["a"], ref[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got["ensemble"], ref[-1], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="first_block_site=False: expected first_block_norm"):
        CENUNetGenerator(["a", "b"], ngf=4, num_downs=5, first_block_site=False)


def test_exchange_stages_without_a_site_are_refused():
    with pytest.raises(ValueError, match="exchange_stages.*blocks 2..4"):
        CENUNetGenerator(["a", "b"], ngf=4, num_downs=5, exchange_stages="early")
    with pytest.raises(ValueError, match="exchange_stages: expected stage numbers in 1..5"):
        CENUNetGenerator(["a", "b"], ngf=4, num_downs=5, exchange_stages=[6])
    with pytest.warns(UserWarning, match=r"exchange_stages=\[2\] has no effect with exchange"):
        CENUNetGenerator(["a", "b"], ngf=4, num_downs=5, exchange=False, exchange_stages=[2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the blocks without a site do not matter
        CENUNetGenerator(["a", "b"], ngf=4, num_downs=5, exchange=False, exchange_stages=[2, 3, 4])


def test_exchange_changes_the_outputs_for_several_modalities():
    torch.manual_seed(0)
    gen = CENUNetGenerator(["a", "b"], ngf=4, num_downs=5)
    gen.init_weights(std=0.3)
    gen = randomised(gen).eval()
    inputs = [torch.randn(1, 3, 32, 32) for _ in range(2)]
    with torch.no_grad():
        with_exchange = gen(inputs)["a"]
        gen.exchange = False
        for _, site in exchange_sites(gen):
            site.exchange_threshold = None
        without = gen(inputs)["a"]
    assert (with_exchange - without).abs().max() > 0.05


def test_the_paper_generator_has_the_papers_shape():
    model = cenfusion.create_model(
        task="translation", modalities=("reshading", "edge_texture"), target="rgb", ngf=64
    )
    gen = model.generator
    assert encoder_widths(64, 8) == [64, 128, 256, 512, 512, 512, 512, 512]
    assert [b.norm is not None for b in gen.down] == [False] + [True] * 6 + [False]
    assert [name for name, _ in exchange_sites(gen)] == [f"down.{i}.norm" for i in range(1, 7)]
    assert [b.dropout is not None for b in gen.up] == [True] * 3 + [False] * 5
    assert [b.norm is not None for b in gen.up] == [True] * 7 + [False]
    assert gen.up[-1].conv.out_channels == 3 and gen.up[1].conv.in_channels == 1024
    convs = [m for m in gen.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)]
    weights = torch.cat([c.weight.flatten() for c in convs])
    assert abs(weights.std().item() - 0.02) < 1e-3  # N(0, 0.02)
    with torch.no_grad():
        out = model.eval()({"reshading": torch.randn(1, 1, 256, 256),
                            "edge_texture": torch.randn(1, 3, 256, 256)})  # fmt: skip
    assert set(out) == {"reshading", "edge_texture", "ensemble"}
    assert all(o.shape == (1, 3, 256, 256) and o.abs().max() <= 1 for o in out.values())


def test_four_input_modalities_and_the_disjoint_l1_term():
    model = cenfusion.create_model(
        task="translation", modalities=4, ngf=4, num_downs=5, insnorm_threshold=1e-2
    )
    out = model([torch.randn(1, 3, 32, 32) for _ in range(4)])
    assert len(out) == 5
    # one chunk of C/4 channels per modality at every exchange site (6 sites for 8 blocks)
    penalty = sparsity_penalty(model, lam=1.0)
    expected = sum(site.num_features for _, site in exchange_sites(model))  # |gamma| = 1 each
    assert penalty.item() == pytest.approx(expected)


def test_the_ensemble_loss_trains_alpha_only():
    model = cenfusion.create_model(task="translation", modalities=2, ngf=4, num_downs=5)
    out = model([torch.randn(1, 3, 32, 32) for _ in range(2)])
    out["ensemble"].abs().sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert list(grads) == ["generator.ensemble.alpha"]


def test_bad_inputs_are_refused_with_the_shapes():
    model = cenfusion.create_model(task="translation", modalities=("a", "b"), ngf=4)
    with pytest.raises(ValueError, match="multiples of 256"):
        model({"a": torch.randn(1, 3, 128, 128), "b": torch.randn(1, 3, 128, 128)})
    with pytest.raises(ValueError, match="missing modality 'a'"):
        model({"c": torch.randn(1, 3, 256, 256)})  # not a subset: an unknown modality
    with pytest.raises(ValueError, match="target 'a' is also an input"):
        cenfusion.create_model(task="translation", modalities=("a", "b"), target="a")
    with pytest.raises(ValueError, match="arch for translation"):
        cenfusion.create_model(task="translation", arch="refinenet")


def test_the_shared_discriminator_is_a_70x70_patchgan():
    disc = PatchDiscriminator(3, 3, ndf=8)
    x, y = torch.randn(4, 3, 256, 256), torch.randn(4, 3, 256, 256)
    assert disc(x, y).shape == (4, 1, 30, 30)
    assert [c.stride[0] for c in disc.convs] == [2, 2, 2, 1, 1]
    assert [c.out_channels for c in disc.convs] == [8, 16, 32, 64, 1]
    norms = [type(n).__name__ for n in disc.norms]
    assert norms == ["Identity", "InstanceNorm2d", "InstanceNorm2d", "InstanceNorm2d", "Identity"]
    # every sample is judged on its own: stacking modalities changes nothing
    torch.testing.assert_close(disc(x, y)[:2], disc(x[:2], y[:2]))
    with pytest.raises(ValueError, match="share batch and spatial size"):
        disc(x, y[:2])
