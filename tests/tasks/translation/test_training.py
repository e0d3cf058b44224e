"""The translation engine: the paper's losses, training, exact resume, evaluation, the CLI."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch import nn

import cenfusion.tasks.translation as translation_task
from cenfusion.cli import main
from cenfusion.config import load_config, shipped_configs
from cenfusion.engine.samples import TITLE_HEIGHT
from cenfusion.metrics.image import FID_SKIPPED_MESSAGE
from cenfusion.nn import sparsity_penalty
from cenfusion.tasks import get_task
from cenfusion.tasks.translation.evaluation import evaluate, generator_mode
from cenfusion.tasks.translation.training import (
    build_model,
    discriminator_loss,
    generator_loss,
    rate_factor,
)

TRANSLATION = get_task("translation")

CONFIGS = shipped_configs()


class StandIn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, stride=2)

    def forward(self, images):
        return torch.tanh(self.conv(images)).mean((2, 3))


def public_losses(model, xs, y, fakes, lam, l1_weight=100.0):
    """The public code's losses, one modality at a time, with sigmoid + BCELoss."""
    bce, l1 = nn.BCELoss(), nn.L1Loss()

    def judged(x, image, real):
        probability = torch.sigmoid(model.discriminator(x, image)).squeeze()
        return bce(probability, torch.full_like(probability, float(real)))

    d_loss = sum(
        0.5 * (judged(x, y, True) + judged(x, fake.detach(), False))
        for x, fake in zip(xs, fakes, strict=True)
    )
    g_adv = sum(judged(x, fake, True) for x, fake in zip(xs, fakes, strict=True))
    ens = sum(w * f.detach() for w, f in zip(model.ensemble.weights(), fakes, strict=True))
    g_l1 = l1_weight * sum(l1(out, y) for out in [*fakes, ens])
    return d_loss, g_adv + g_l1 + sparsity_penalty(model.generator, lam)


def test_the_losses_are_the_public_codes_sums_over_modalities(tiny_config):
    config = tiny_config()
    torch.manual_seed(0)
    model = build_model(config).eval()
    xs = [torch.rand(2, 3, 32, 32) * 2 - 1 for _ in range(2)]
    y = torch.rand(2, 3, 32, 32) * 2 - 1
    x = torch.cat(xs)
    outputs = model.generator(x, stacked=True)
    fake = outputs.branches
    d_ref, g_ref = public_losses(model, xs, y, list(fake.chunk(2)), config.train.lam)
    torch.testing.assert_close(discriminator_loss(model.discriminator, x, y, fake), d_ref)
    g_loss, parts = generator_loss(model, x, y, outputs, config)
    torch.testing.assert_close(g_loss, g_ref)
    assert parts["sparsity"] > 0


def test_training_writes_checkpoints_metrics_and_sample_grids(tiny_config):
    config = tiny_config("train.eval_every=2", "train.sample_every=1")
    trainer = TRANSLATION.trainer(config, progress=False)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    history = trainer.fit()
    out = Path(config.output_dir)
    assert (out / "last.pt").is_file() and (out / "previous.pt").is_file()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    assert set(history[-1]["val"]) == {"texture", "reshading", "ensemble"}
    grid = Image.open(out / "samples" / "epoch_002.png")
    # inputs, branches + ensemble, target; 4-pixel gaps; a title row above the columns
    assert grid.size == (32 * (2 + 3 + 1) + 4 * 5, TITLE_HEIGHT + 32 * 2 + 4)
    after = trainer.model.state_dict()
    assert not torch.equal(
        after["generator.down.0.conv.weight"], before["generator.down.0.conv.weight"]
    )
    assert not torch.equal(
        after["discriminator.convs.0.weight"], before["discriminator.convs.0.weight"]
    )


def test_the_last_epochs_lower_both_rates_linearly_towards_zero(tiny_config):
    config = tiny_config(
        "train.epochs=4", "optim.decay_epochs=2", "train.eval_every=0", "train.sample_every=0",
        "optim.generator_lr=0.003", "optim.discriminator_lr=0.0003",
    )  # fmt: skip
    # pix2pix's linear policy: decay epoch k of N at 1 - k / (N + 1); later epochs keep it
    factors = [rate_factor(config, epoch) for epoch in range(6)]
    assert factors == pytest.approx([1, 1, 2 / 3, 1 / 3, 1 / 3, 1 / 3])
    history = TRANSLATION.trainer(config, progress=False).fit()
    assert [r["lr_generator"] for r in history] == pytest.approx([3e-3, 3e-3, 2e-3, 1e-3])
    assert [r["lr_discriminator"] for r in history] == pytest.approx([3e-4, 3e-4, 2e-4, 1e-4])
    with pytest.raises(ValueError, match=r"optim.decay_epochs: expected 0..train.epochs \(2\)"):
        TRANSLATION.trainer(tiny_config("train.epochs=2", "optim.decay_epochs=3"), progress=False)


def test_resume_continues_exactly(tiny_config, tmp_path):
    straight = TRANSLATION.trainer(
        tiny_config(f"output_dir={tmp_path / 'a'}", "train.eval_every=1", "train.sample_every=1"),
        progress=False,
    )
    straight.fit()
    first = TRANSLATION.trainer(
        tiny_config(f"output_dir={tmp_path / 'b'}", "train.epochs=1", "train.eval_every=0"),
        progress=False,
    )
    first.fit()
    resumed = TRANSLATION.trainer(
        tiny_config(f"output_dir={tmp_path / 'b'}", "train.eval_every=0", "train.sample_every=0"),
        resume=True,
        progress=False,
    )
    assert resumed.start_epoch == 1
    resumed.fit()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(
        straight.optimisers["g_optimiser"].state_dict()["state"][0]["exp_avg"],
        resumed.optimisers["g_optimiser"].state_dict()["state"][0]["exp_avg"],
    )


def test_evaluation_scores_every_branch_and_the_ensemble_with_a_stand_in_extractor(tiny_config):
    config = tiny_config()
    trainer = TRANSLATION.trainer(config, progress=False)
    scores = evaluate(trainer.model, trainer.datasets["val"], config, StandIn(), progress=False)
    assert set(scores) == {"texture", "reshading", "ensemble"}
    assert all(
        s.fid is not None and s.kid_x100 is not None and s.num_images == 2 for s in scores.values()
    )


def test_the_public_codes_train_mode_evaluation_changes_nothing_it_should_not(tiny_config):
    config = tiny_config("eval.generator_mode=train")
    model = build_model(config)
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    x = {"texture": torch.rand(1, 3, 32, 32), "reshading": torch.rand(1, 3, 32, 32)}
    rng = torch.get_rng_state()
    with torch.no_grad(), generator_mode(model, "train"):
        assert model.training
        train_mode = model(x)["ensemble"]
        assert not torch.equal(train_mode, model(x)["ensemble"])  # dropout stays on
    with torch.no_grad(), generator_mode(model, "eval"):
        eval_mode = model(x)["ensemble"]
    assert not torch.allclose(train_mode, eval_mode)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, buffers[k]) for k, v in model.named_buffers())
    with pytest.raises(ValueError, match="eval.generator_mode"), generator_mode(model, "test"):
        pass


def test_a_missing_inception_file_fails_before_training(tiny_config, tmp_path):
    missing = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    with pytest.raises(FileNotFoundError, match="pt_inception-2015-12-05-6726825d.pth"):
        TRANSLATION.trainer(tiny_config(f"eval.inception_weights={missing}"), progress=False)


def test_the_cli_trains_and_evaluates_from_a_config(tiny_config, tmp_path, capsys):
    config = tiny_config("train.epochs=1", "train.eval_every=0", "train.sample_every=0")
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    assert main(["train", str(path), "--no-progress"]) == 0
    checkpoint = Path(config.output_dir) / "last.pt"
    assert main(["evaluate", str(path), "--checkpoint", str(checkpoint), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "texture + reshading -> rgb" in printed and "ensemble" in printed and "n/a" in printed
    assert FID_SKIPPED_MESSAGE in printed and "PSNR" in printed and "SSIM" in printed
    scores = json.loads((checkpoint.parent / "scores_val.json").read_text())
    assert set(scores) == {"texture", "reshading", "ensemble"}
    assert all(s["psnr"] > 0 and -1 <= s["ssim"] <= 1 and s["fid"] is None for s in scores.values())
    # no config: the checkpoint's own; one input missing: its scores beside the full ones
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--drop", "reshading",
                 "--no-progress"]) == 0  # fmt: skip
    without = json.loads((checkpoint.parent / "scores_val_without_reshading.json").read_text())
    assert set(without) == {"texture", "ensemble"}
    assert set(json.loads((checkpoint.parent / "scores_val.json").read_text())) == set(scores)


def test_evaluation_saves_the_images_in_the_public_codes_layout(tiny_config, tmp_path):
    config = tiny_config("eval.batch_size=1")
    trainer = TRANSLATION.trainer(config, progress=False)
    results = tmp_path / "results"
    scores = evaluate(
        trainer.model, trainer.datasets["val"], config, progress=False, save_dir=results
    )
    assert all(s.psnr is not None and s.ssim is not None for s in scores.values())
    folders = {"input0", "input1", "fake0", "fake1", "fake2", "real"}
    assert {p.name for p in results.iterdir()} == folders
    for folder in folders:
        assert sorted(p.name for p in (results / folder).iterdir()) == ["000.png", "001.png"]
    real = np.asarray(Image.open(results / "real" / "001.png"))
    expected = trainer.datasets["val"][1]["target"]
    expected = ((expected + 1) / 2 * 255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
    assert real.shape == (32, 32, 3) and np.array_equal(real, expected)


def test_predict_translates_files_and_folders(tiny_config, tmp_path, synthetic_taskonomy, capsys):
    config = tiny_config("train.epochs=1", "train.eval_every=0", "train.sample_every=0")
    TRANSLATION.trainer(config, progress=False).fit()
    checkpoint = str(Path(config.output_dir) / "last.pt")
    folders = {m: tmp_path / m for m in ("texture", "reshading")}
    for name, folder in folders.items():
        folder.mkdir()
        files = sorted((synthetic_taskonomy / name).glob("*.png"))[:2]
        for index, file in enumerate(files):
            (folder / f"scene{index}.png").write_bytes(file.read_bytes())
    out = tmp_path / "single" / "out.png"
    args = ["predict", "--checkpoint", checkpoint, "-o", str(out)]
    assert main([*args, "--texture", str(folders["texture"] / "scene0.png"),
                 "--reshading", str(folders["reshading"] / "scene0.png")]) == 0  # fmt: skip
    for path in (out, out.with_name("out_texture.png"), out.with_name("out_reshading.png")):
        assert np.asarray(Image.open(path)).shape == (32, 32, 3)
    batch = tmp_path / "batch"
    assert main(["predict", "--checkpoint", checkpoint, "-o", str(batch),
                 "--texture", str(folders["texture"]),
                 "--reshading", str(folders["reshading"])]) == 0  # fmt: skip
    assert "wrote 2 translations" in capsys.readouterr().out
    assert sorted(p.name for p in batch.iterdir()) == [
        "scene0.png", "scene0_reshading.png", "scene0_texture.png",
        "scene1.png", "scene1_reshading.png", "scene1_texture.png",
    ]  # fmt: skip
    # a file and the same file in a folder give the same translation; one input alone works
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(batch / "scene0.png")))
    assert main([*args, "--texture", str(folders["texture"] / "scene0.png")]) == 0


def test_the_translation_configs_parse_and_the_recipe_is_the_papers():
    recipe = load_config(CONFIGS["taskonomy_shade_texture_to_rgb"])
    assert recipe.task == "translation" and recipe.model.arch == "pix2pix"
    assert (recipe.model.modalities, recipe.model.target) == (["reshading", "edge_texture"], "rgb")
    assert (recipe.model.ngf, recipe.model.ndf, recipe.model.num_downs) == (64, 64, 8)
    assert (recipe.model.insnorm_threshold, recipe.train.lam, recipe.train.l1_weight) == (
        1e-2,
        1e-3,
        100,
    )
    assert (recipe.optim.generator_lr, recipe.optim.discriminator_lr) == (2e-4, 2e-4)
    assert recipe.optim.betas == [0.5, 0.999]
    assert (recipe.train.batch_size, recipe.train.epochs) == (1, 300)
    assert recipe.data.load_size == [286, 286] and recipe.data.crop_size == [256, 256]
    assert recipe.data.flip_prob == 0.5 and recipe.data.val_resize == [256, 256]
    synthetic = load_config(CONFIGS["synthetic_shade_texture_to_rgb"])
    assert synthetic.task == "translation" and synthetic.data.format == "taskonomy"


def test_fid_can_be_left_out_of_the_validations_during_training(tiny_config, monkeypatch, capsys):
    def colour_means(images):  # a stand-in Inception: 3 features per image
        return images.float().mean(dim=(2, 3))

    monkeypatch.setattr(translation_task, "inception_features", lambda *a, **k: colour_means)
    records, printed = {}, {}
    for during in (True, False):
        config = tiny_config("train.epochs=1", "train.eval_every=1", "train.sample_every=0",
                             f"eval.fid_in_training={str(during).lower()}")  # fmt: skip
        records[during] = TRANSLATION.trainer(config, progress=False).fit()[-1]["val"]
        printed[during] = capsys.readouterr().out
    assert "not during training" in printed[False] and FID_SKIPPED_MESSAGE not in printed[False]
    assert records[True]["ensemble"]["fid"] is not None
    assert records[False]["ensemble"]["fid"] is None and records[False]["ensemble"]["l1"] > 0
    assert records[False]["ensemble"]["l1"] == records[True]["ensemble"]["l1"]


def test_shared_evaluations_load_the_inception_once_and_score_exactly_the_same(
    tiny_config, monkeypatch
):
    """A trained model's test scores: each evaluation used to load the network again and to
    run it on the same real images again."""
    loads, seen = [], []

    def counting_extractor(*args, **kwargs):
        loads.append(1)

        def colour_means(images):
            seen.append(len(images))
            return images.float().mean(dim=(2, 3))

        return colour_means

    monkeypatch.setattr(translation_task, "inception_features", counting_extractor)
    config = tiny_config()
    trainer = TRANSLATION.trainer(config, progress=False)
    model, val = trainer.model, trainer.datasets["val"]
    alone = model.with_modalities(["texture"])
    loads.clear()
    plain = [TRANSLATION.evaluate(m, val, config, progress=False) for m in (model, alone)]
    assert len(loads) == 2  # each evaluation loads it
    seen.clear()
    with TRANSLATION.shared_evaluations(config):
        shared = [TRANSLATION.evaluate(m, val, config, progress=False) for m in (model, alone)]
    assert shared == plain and plain[0]["ensemble"].fid is not None
    assert len(loads) == 3  # once for the block
    assert sum(seen) == 2 * 3 + 2 * 2 + 2  # outputs of both, the 2 real images once
    assert TRANSLATION._shared is None  # left as it was


def test_a_comparisons_analyses_can_leave_fid_out(tiny_config, monkeypatch):
    """Each input alone and each stage's exchange switched off: L1 as before, no FID/KID."""
    from cenfusion.experiments.runner import exchange_off_scores, single_modality_scores

    def colour_means(images):
        return images.float().mean(dim=(2, 3))

    monkeypatch.setattr(translation_task, "inception_features", lambda *a, **k: colour_means)
    found = {}
    for with_fid in (True, False):
        config = tiny_config(f"eval.fid_in_analyses={str(with_fid).lower()}")
        trainer = TRANSLATION.trainer(config, progress=False)
        model, val = trainer.model, trainer.datasets["val"]
        found[with_fid] = (
            TRANSLATION.evaluate(model, val, config, progress=False),
            single_modality_scores(model, val, config),
            exchange_off_scores(model, val, config),
        )
    (test, alone, off), (test_lean, alone_lean, off_lean) = found[True], found[False]
    assert test == test_lean and test["ensemble"].fid is not None  # the test scores keep FID
    assert set(alone) == {"texture", "reshading"} and off
    for full, lean in ((alone, alone_lean), (off, off_lean)):
        assert full.keys() == lean.keys()
        for key in full:
            for output, scores in full[key].items():
                assert scores["fid"] is not None and lean[key][output]["fid"] is None
                assert lean[key][output]["kid_x100"] is None
                assert lean[key][output]["l1"] == scores["l1"]
