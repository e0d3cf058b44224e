"""What the task objects own: looked up by name, their config sections, the λ they monitor."""

import warnings

import pytest

from cenfusion.analysis.probes import TheoremProbe
from cenfusion.config import config_from_dict, load_config
from cenfusion.nn import exchange_sites
from cenfusion.tasks import TASKS, get_task
from cenfusion.tasks.segmentation.training import build_model


def theorem_probe(trainer) -> TheoremProbe:
    (probe,) = [p for p in trainer.parts.probes if isinstance(p, TheoremProbe)]
    return probe


def test_tasks_are_looked_up_by_name():
    assert sorted(TASKS) == ["segmentation", "translation"]
    assert get_task("translation").name == "translation"
    with pytest.raises(ValueError, match="expected one of"):
        get_task("depth")


def test_each_task_reads_only_its_own_keys():
    with pytest.raises(ValueError, match="model.ngf is a setting of translation"):
        load_config(None, ["model.ngf=8"])
    with pytest.raises(ValueError, match="train.freeze_bn is a setting of segmentation"):
        load_config(None, ["task=translation", "train.freeze_bn=true"])
    config = load_config(None, ["task=translation"])
    assert config.model.arch == "pix2pix" and not hasattr(config.model, "backbone")


def test_a_config_written_by_an_earlier_version_with_every_tasks_fields_loads():
    """Earlier checkpoints hold one union of fields: the other task's defaults are dropped."""
    old = {
        "task": "translation",
        "model": {"arch": "pix2pix", "backbone": "resnet50", "num_classes": 40, "ngf": 8},
        "data": {"format": "taskonomy", "depth_scale": 1 / 5000, "load_size": [36, 36]},
        "optim": {"stages": [{"epochs": 100, "encoder_lr": 5e-4, "decoder_lr": 3e-3}]},
        "train": {"l1_per_output": False, "epochs": 3},
        "eval": {"scales": [1.0], "kid_subsets": 5},
    }
    config = config_from_dict(old)
    assert config.model.ngf == 8 and config.train.epochs == 3 and config.eval.kid_subsets == 5
    changed = {**old, "train": {"l1_per_output": True}}
    with pytest.raises(ValueError, match="train.l1_per_output is a setting of segmentation"):
        config_from_dict(changed)


def test_segmentation_monitors_the_lambda_its_loss_trains_with(segmentation_config):
    config = segmentation_config("model.exchange=false", "train.lam=0.01")
    assert theorem_probe(get_task("segmentation").trainer(config, progress=False)).lam == 0.01
    per_output = segmentation_config(
        "model.exchange=false", "train.lam=0.01", "train.l1_per_output=true"
    )
    probe = theorem_probe(get_task("segmentation").trainer(per_output, progress=False))
    assert probe.lam == pytest.approx(0.03) and probe.active  # M + 1 = 3 outputs


def test_theorem_1_is_checked_where_the_exchange_is_off(segmentation_config):
    """Every site without exchange; the sites a partial exchange leaves alone; none with it."""
    task = get_task("segmentation")
    off = theorem_probe(task.trainer(segmentation_config("model.exchange=false"), progress=False))
    partial = segmentation_config("model.exchange_stages=early")
    probe = theorem_probe(task.trainer(partial, progress=False))
    assert probe.active and probe.sites
    assert all(not name.startswith("backbone.layer1.") for name in probe.sites)
    assert set(probe.sites) < set(off.sites)
    assert set(off.sites) - set(probe.sites) == {
        name for name in off.sites if name.startswith("backbone.layer1.")
    }
    full = theorem_probe(task.trainer(segmentation_config(), progress=False))
    assert not full.active and full.sites == []


def test_site_stages_reach_the_model_and_its_l1_term(segmentation_config):
    """``model.site_stages=early``: the built network's only sites are layer1's, so the L1
    term and the Theorem-1 monitor see them alone."""
    model = build_model(segmentation_config("model.site_stages=early"))
    sites = [name for name, _ in exchange_sites(model)]
    assert sites and all(name.startswith("backbone.layer1.") for name in sites)
    everywhere = [name for name, _ in exchange_sites(build_model(segmentation_config()))]
    assert set(sites) < set(everywhere)
    task = get_task("segmentation")
    config = segmentation_config("model.site_stages=early", "model.exchange=false")
    probe = theorem_probe(task.trainer(config, progress=False))
    assert probe.active and sorted(probe.sites) == sorted(sites)


def test_translation_monitors_the_lambda_it_trains_with(translation_config):
    """Its loss counts the L1 term once, so its Theorem-1 prediction does too."""
    config = translation_config("model.exchange=false", "train.lam=0.01")
    probe = theorem_probe(get_task("translation").trainer(config, progress=False))
    assert probe.lam == 0.01 and probe.active


def test_resume_with_nothing_to_resume_starts_from_scratch_with_a_warning(segmentation_config):
    config = segmentation_config("optim.stages=[{epochs: 1}]", "train.eval_every=0")
    with pytest.warns(UserWarning, match="no checkpoint .* yet; starting from scratch"):
        trainer = get_task("segmentation").trainer(config, resume=True, progress=False)
    assert trainer.start_epoch == 0 and not trainer.resumed
    assert len(trainer.fit()) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # now there is a checkpoint: no warning
        resumed = get_task("segmentation").trainer(config, resume=True, progress=False)
    assert resumed.resumed and resumed.start_epoch == 1


def test_resume_from_a_named_file_that_does_not_exist_is_an_error(segmentation_config, tmp_path):
    missing = tmp_path / "nowhere.pt"
    with pytest.raises(OSError, match="nowhere.pt"):
        get_task("segmentation").trainer(segmentation_config(), resume=str(missing))
