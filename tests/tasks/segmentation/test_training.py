"""Training, resuming, evaluating and predicting with the segmentation engine."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cenfusion.cli import main
from cenfusion.engine.checkpoint import (
    load_checkpoint,
    load_latest,
    load_model_state,
    save_checkpoint,
)
from cenfusion.nn import (
    ModalityBatchNorm2d,
    StackedOutputs,
    exchange_sites,
    penalised_scaling_factors,
)
from cenfusion.tasks import get_task
from cenfusion.tasks.segmentation import training as engine
from cenfusion.tasks.segmentation.evaluation import predict_probabilities
from cenfusion.tasks.segmentation.prediction import write_prediction
from cenfusion.tasks.segmentation.training import build_model, segmentation_loss
from tests.clear_errors import assert_clear

SEGMENTATION = get_task("segmentation")


def test_loss_sums_branch_and_ensemble_cross_entropies_and_the_l1_term(tiny_config):
    config = tiny_config("train.lam=0.5")
    model = build_model(config)
    torch.manual_seed(0)
    logits = torch.randn(4, 10, 8, 10)
    label = torch.randint(0, 10, (2, 32, 40))
    label[0, :3] = 255
    upsampled = F.interpolate(logits, size=(32, 40), mode="bilinear", align_corners=False)
    stacked = StackedOutputs(upsampled, model.ensemble(upsampled))
    total, parts = segmentation_loss(model, stacked, label, config)
    expected = 0.0
    outputs = [logits[:2], logits[2:], model.ensemble(logits)]
    for out in outputs:  # the paper: each output upsampled to the label, its CE, summed
        up = F.interpolate(out, size=(32, 40), mode="bilinear", align_corners=False)
        expected = expected + F.cross_entropy(up, label, ignore_index=255)
    l1 = sum(float(f.detach().abs().sum()) for f in penalised_scaling_factors(model, "disjoint"))
    torch.testing.assert_close(total, expected + 0.5 * l1, rtol=1e-5, atol=1e-5)
    per_output = tiny_config("train.lam=0.5", "train.l1_per_output=true")
    total3, _ = segmentation_loss(model, stacked, label, per_output)
    torch.testing.assert_close(total3 - total, torch.tensor(2 * 0.5 * l1), rtol=1e-4, atol=1e-4)
    assert parts["l1"] == pytest.approx(0.5 * l1, rel=1e-5)


def state_of(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


@pytest.mark.parametrize("extra", [[], ["train.modality_dropout=0.5"]])
def test_resume_after_an_interruption_gives_the_same_final_weights(tiny_config, tmp_path, extra):
    whole = SEGMENTATION.trainer(
        tiny_config(f"output_dir={tmp_path / 'whole'}", *extra), progress=False
    )
    whole.fit()
    interrupted_dir = tmp_path / "interrupted"
    first = tiny_config(
        f"output_dir={interrupted_dir}",
        "optim.stages=[{epochs: 1, encoder_lr: 0.01, decoder_lr: 0.01}]",
        *extra,
    )
    SEGMENTATION.trainer(first, progress=False).fit()
    second = tiny_config(f"output_dir={interrupted_dir}", *extra)
    resumed = SEGMENTATION.trainer(second, resume=True, progress=False)
    assert resumed.start_epoch == 1
    resumed.fit()
    expected, got = state_of(whole), state_of(resumed)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    lines = (interrupted_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


def test_frozen_batch_norm_keeps_running_statistics_but_trains_gamma(tiny_config):
    trainer = SEGMENTATION.trainer(
        tiny_config("train.freeze_bn=true", "optim.stages=[{epochs: 1}]", "train.eval_every=0"),
        progress=False,
    )
    norm = trainer.model.backbone.layer1[0].bn2
    before_mean, before_gamma = norm.running_mean.clone(), norm.weight.detach().clone()
    trainer.fit()
    assert torch.equal(norm.running_mean, before_mean)
    assert not torch.equal(norm.weight.detach(), before_gamma)


def test_non_finite_loss_stops_and_names_the_step(tiny_config, monkeypatch):
    trainer = SEGMENTATION.trainer(tiny_config(), progress=False)
    original = engine.segmentation_loss

    def poisoned(model, logits, label, config, *scaling):
        total, parts = original(model, logits, label, config, *scaling)
        return total * float("nan"), {**parts, "loss": float("nan")}

    monkeypatch.setattr(engine, "segmentation_loss", poisoned)
    with pytest.raises(engine.NonFiniteLossError, match="epoch 1, step 1"):
        trainer.fit()
    assert not (trainer.output_dir / "last.pt").exists()


def test_checkpoint_of_another_architecture_is_refused_by_name(tiny_config, tmp_path):
    trainer = SEGMENTATION.trainer(tiny_config("optim.stages=[{epochs: 1}]"), progress=False)
    trainer.fit()
    other = tiny_config("model.backbone=resnet34", f"output_dir={tmp_path / 'run'}")
    with pytest.raises(ValueError, match=r"last.pt' is for another architecture"):
        SEGMENTATION.trainer(other, resume=str(tmp_path / "run" / "last.pt"), progress=False)
    three = tiny_config("model.modalities=[rgb, depth, normal]")
    with pytest.raises(ValueError, match="another architecture or number of modalities"):
        model = build_model(three)
        load_model_state(model, load_checkpoint(tmp_path / "run" / "last.pt")["model"],
                                "last.pt")  # fmt: skip


def test_corrupt_last_checkpoint_falls_back_to_the_previous_one(tmp_path):
    save_checkpoint({"epoch": 1}, tmp_path / "previous.pt")
    (tmp_path / "last.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="last.pt' is corrupt"):
        load_checkpoint(tmp_path / "last.pt")
    with pytest.warns(UserWarning, match="trying the previous checkpoint"):
        path, payload = load_latest(tmp_path)
    assert path.name == "previous.pt" and payload["epoch"] == 1


def test_single_scale_probabilities_argmax_equals_the_logits_argmax(tiny_config):
    model = build_model(tiny_config()).eval()
    inputs = torch.randn(4, 3, 32, 40)
    probabilities = predict_probabilities(model, inputs, (32, 40))
    with torch.no_grad():
        logits = model.forward_stacked(inputs)
        ensemble = model.ensemble(logits)
    up = F.interpolate(ensemble, size=(32, 40), mode="bilinear", align_corners=False)
    assert torch.equal(probabilities["ensemble"].argmax(1), up.argmax(1))
    multi = predict_probabilities(model, inputs, (32, 40), scales=(0.75, 1.0), flip=True)
    assert multi["rgb"].shape == (2, 10, 32, 40)
    torch.testing.assert_close(multi["rgb"].sum(1), torch.full((2, 32, 40), 4.0))


def test_train_evaluate_predict_from_the_command_line(tiny_config, synthetic_nyudv2, tmp_path,
                                                      capsys):  # fmt: skip
    config_file = tmp_path / "tiny.yaml"
    config = tiny_config("optim.stages=[{epochs: 1}]")
    import yaml

    config_file.write_text(yaml.safe_dump(config.to_dict()))
    assert main(["train", str(config_file), "--no-progress"]) == 0
    checkpoint = tmp_path / "run" / "last.pt"
    assert main(["evaluate", str(config_file), "--checkpoint", str(checkpoint),
                 "--no-progress", "--scales", "1", "0.75"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "ensemble" in out and "mIoU" in out
    scores = json.loads((tmp_path / "run" / "scores_val.json").read_text())
    assert set(scores) == {"rgb", "depth", "ensemble"}
    rgb = synthetic_nyudv2 / "rgb" / "000007.png"
    depth = synthetic_nyudv2 / "depth" / "000007.png"
    output = tmp_path / "pred" / "scene.png"
    assert main(["predict", "--checkpoint", str(checkpoint), "--rgb", str(rgb),
                 "--depth", str(depth), "-o", str(output)]) == 0  # fmt: skip
    labels = np.asarray(Image.open(tmp_path / "pred" / "scene_labels.png"))
    assert labels.shape == (40, 48) and labels.max() < 10
    assert Image.open(tmp_path / "pred" / "scene_overlay.png").size == (48, 40)
    rgb_only = tmp_path / "pred" / "rgb_only.png"  # a camera missing: RGB's branch alone
    assert main(["predict", "--checkpoint", str(checkpoint), "--rgb", str(rgb),
                 "-o", str(rgb_only)]) == 0  # fmt: skip
    assert "no --depth: predicting from rgb only" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(checkpoint), "--rgb", str(rgb),
                 "--thermal", str(rgb), "-o", str(output)]) == 2  # fmt: skip
    assert "takes --rgb --depth, not --thermal" in capsys.readouterr().err


def test_label_files_keep_every_class_index(tmp_path):
    """8-bit indices up to 256 classes, 16-bit beyond (NYUDv2's raw 894 classes)."""
    labels = np.array([[0, 255, 256], [300, 857, 893]])
    paths = write_prediction(labels, None, 894, tmp_path / "raw.png")
    written = np.asarray(Image.open(paths["labels"]))
    assert written.dtype == np.uint16 and written.tolist() == labels.tolist()
    paths = write_prediction(labels % 40, None, 40, tmp_path / "forty.png")
    written = np.asarray(Image.open(paths["labels"]))
    assert written.dtype == np.uint8 and written.tolist() == (labels % 40).tolist()
    with pytest.raises(ValueError, match="outside 0..39"):
        write_prediction(labels, None, 40, tmp_path / "bad.png")


def test_config_typos_are_refused_with_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  batch_sise: 4\n")
    assert main(["train", str(bad)]) == 2


def test_private_norms_are_used_throughout(tiny_config):
    model = build_model(tiny_config())
    assert any(isinstance(m, ModalityBatchNorm2d) for m in model.modules())
    assert not any(type(m) is torch.nn.BatchNorm2d for m in model.modules())


def test_training_and_prediction_read_modalities_the_same_way(tiny_config):
    nyu = engine.modality_specs(tiny_config("data.depth_scale=0.001"))
    assert [s.name for s in nyu] == ["rgb", "depth"] and nyu[1].scale == 0.001
    assert nyu[1].require_16bit
    sun = engine.modality_specs(tiny_config("data.format=sunrgbd", "data.allow_8bit_depth=true"))
    assert sun[1].norm == "minmax" and not sun[1].require_16bit
    folder = engine.modality_specs(
        tiny_config(
            "data.format=folder",
            "model.modalities=[rgb, thermal]",
            "data.modality_settings={thermal: {channels: 1, scale: 0.01}}",
        )
    )
    assert folder[0].mean is None  # the folder format takes no presets
    assert (folder[1].name, folder[1].channels, folder[1].scale) == ("thermal", 1, 0.01)


def test_modality_settings_amend_the_data_sets_presets(tiny_config):
    """NYUDv2 and SUN RGB-D start rgb and depth from their presets; a setting given for them
    changes that setting only, and an unknown one is refused as for any other modality."""
    settings = "{rgb: {mean: [0.5], std: [0.25]}, depth: {interpolation: bilinear}}"
    nyu = engine.modality_specs(tiny_config(f"data.modality_settings={settings}"))
    assert (nyu[0].mean, nyu[0].std, nyu[0].scale) == ((0.5,), (0.25,), 1 / 255)
    assert (nyu[1].interpolation, nyu[1].scale, nyu[1].require_16bit) == ("bilinear", 2e-4, True)
    metres = "{depth: {norm: affine, scale: 0.001}}"
    sun = engine.modality_specs(tiny_config("data.format=sunrgbd",
                                            f"data.modality_settings={metres}"))  # fmt: skip
    assert (sun[1].norm, sun[1].scale) == ("affine", 0.001)
    with pytest.raises(ValueError) as caught:
        engine.modality_specs(tiny_config("data.modality_settings={depth: {units: mm}}"))
    assert_clear(caught.value, "data.modality_settings.depth", "'units'")


def test_with_modality_dropout_a_branch_a_sample_lacks_is_not_counted(tiny_config):
    config = tiny_config()
    model = build_model(config)
    torch.manual_seed(0)
    logits = torch.randn(6, 10, 8, 10)
    label = torch.randint(0, 10, (3, 8, 10))
    label[0, :2] = 255
    present = torch.tensor([[1, 0, 1], [1, 1, 0]], dtype=torch.bool)
    stacked = StackedOutputs(logits, model.ensemble(logits, present))
    total, parts = segmentation_loss(model, stacked, label, config, present=present)
    # slow reference: pixel sums over the present (modality, sample) pairs, over their count
    per = logits.unflatten(0, (2, 3))
    summed, pixels = 0.0, 0
    for m in range(2):
        for b in range(3):
            if present[m, b]:
                summed += F.cross_entropy(per[m, b : b + 1], label[b : b + 1], ignore_index=255,
                                          reduction="sum")  # fmt: skip
                pixels += int((label[b] != 255).sum())
    assert parts["ce_branches"] == pytest.approx(float(summed / pixels * 2), rel=1e-5)
    ensemble = F.cross_entropy(stacked.ensemble, label, ignore_index=255)
    assert parts["ce_ensemble"] == pytest.approx(float(ensemble.detach()), rel=1e-6)


def test_modality_dropout_trains_differently_and_is_refused_where_it_cannot_hold(tiny_config):
    plain = SEGMENTATION.trainer(tiny_config("train.eval_every=0"), progress=False)
    plain.fit()
    dropped = SEGMENTATION.trainer(
        tiny_config("train.eval_every=0", "train.modality_dropout=0.5"), progress=False
    )
    dropped.fit()
    weight = "backbone.conv1.weight"
    assert not torch.equal(state_of(plain)[weight], state_of(dropped)[weight])
    for overrides, reason in [
        (["train.modality_dropout=1.0"], r"\[0, 1\)"),
        (["train.modality_dropout=0.3", "model.modalities=[rgb]"], "two or more"),
        (["train.modality_dropout=0.3", "model.fusion=concat", "model.exchange=false",
          "train.sparsity=none"], "the baselines mix every modality"),
        (["train.modality_dropout=0.3", "model.private_norms=false", "model.exchange=false",
          "train.sparsity=none"], "a shared norm"),
        (["train.modality_dropout=0.3", "train.sync_bn=true"], "train.sync_bn"),
    ]:  # fmt: skip
        with pytest.raises(ValueError, match=reason):
            SEGMENTATION.trainer(tiny_config(*overrides), progress=False)


def one_sgd_step(config):
    """Parameters before and after one optimiser step on a fixed random batch and label."""
    torch.manual_seed(0)
    model = build_model(config)
    optimiser = engine.build_optimiser(model, config)
    engine.set_stage_learning_rates(optimiser, config, epoch=0)
    generator = torch.Generator().manual_seed(1)
    inputs = {
        "rgb": torch.randn(2, 3, 32, 40, generator=generator),
        "depth": torch.randn(2, 1, 32, 40, generator=generator),
    }
    label = torch.randint(0, 10, (2, 32, 40), generator=generator)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    outputs = model(inputs, label.shape[-2:], stacked=True)
    segmentation_loss(model, outputs, label, config)[0].backward()
    optimiser.step()
    return before, dict(model.named_parameters()), optimiser


def test_gamma_lr_multiplier_scales_the_step_of_the_sites_scaling_factors_only(tiny_config):
    plain_before, plain, plain_optimiser = one_sgd_step(tiny_config())
    before, scaled, optimiser = one_sgd_step(tiny_config("optim.gamma_lr_multiplier=4"))
    assert [g["name"] for g in plain_optimiser.param_groups] == ["encoder", "decoder"]
    assert [g["name"] for g in optimiser.param_groups] == ["encoder", "decoder", "gamma"]
    site_gammas = {f"{name}.weight" for name, _ in exchange_sites(build_model(tiny_config()))}
    assert site_gammas and site_gammas <= set(scaled)
    for name, value in scaled.items():
        plain_step = plain[name].detach() - plain_before[name]
        step = value.detach() - before[name]
        factor = 4.0 if name in site_gammas else 1.0
        # steps of 1e-6 on values near 1: a few float32 ulps of the parameter apart
        torch.testing.assert_close(step, factor * plain_step, rtol=1e-4, atol=5e-7, msg=name)


def test_gamma_lr_multiplier_follows_the_schedule_and_is_checked(tiny_config):
    config = tiny_config(
        "optim.gamma_lr_multiplier=3",
        "optim.stages=[{epochs: 1, encoder_lr: 0.01, decoder_lr: 0.02},"
        " {epochs: 1, encoder_lr: 0.001, decoder_lr: 0.002}]",
    )
    optimiser = engine.build_optimiser(build_model(config), config)
    engine.set_stage_learning_rates(optimiser, config, epoch=1)
    rates = {g["name"]: g["lr"] for g in optimiser.param_groups}
    assert rates == pytest.approx({"encoder": 0.001, "decoder": 0.002, "gamma": 0.003})
    with pytest.raises(ValueError, match="positive number, got -1"):
        engine.build_optimiser(build_model(config), tiny_config("optim.gamma_lr_multiplier=-1"))
    concat = tiny_config(
        "model.fusion=concat", "model.exchange=false", "train.sparsity=none",
        "optim.gamma_lr_multiplier=2",
    )  # fmt: skip
    groups = engine.build_optimiser(build_model(concat), concat).param_groups
    assert [g["name"] for g in groups] == ["encoder", "decoder"]  # no sites: nothing to scale
