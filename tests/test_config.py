"""The shipped configs parse, and the paper's recipe says what docs/method.md §4 says."""

from pathlib import Path

import pytest

from cenfusion.config import load_config, shipped_configs

CONFIGS = list(shipped_configs().values())


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_parses(path):
    config = load_config(path)
    assert config.task in ("segmentation", "translation")


def test_nyudv2_recipe_is_the_papers():
    config = load_config(Path(CONFIGS[0]).parent / "nyudv2_refinenet101.yaml")
    assert (config.model.backbone, config.model.num_classes) == ("resnet101", 40)
    assert [(s.epochs, s.encoder_lr, s.decoder_lr) for s in config.optim.stages] == [
        (100, 5e-4, 3e-3),
        (100, 2.5e-4, 1.5e-3),
        (100, 1e-4, 7e-4),
    ]
    assert (config.optim.momentum, config.optim.weight_decay) == (0.9, 1e-5)
    assert (config.train.batch_size, config.train.lam, config.model.bn_threshold) == (6, 2e-4, 2e-2)
    assert config.train.freeze_bn and config.train.sparsity == "disjoint"
    assert config.data.crop_size == [500, 500] and config.data.scale_range == [0.5, 2.0]
    assert config.data.min_short_side == 350 and config.data.depth_scale == 1 / 5000


def test_overrides_use_the_same_dotted_names(tmp_path):
    config = load_config(CONFIGS[0], ["train.batch_size=2", "model.modalities=[rgb, thermal]"])
    assert config.train.batch_size == 2 and config.model.modalities == ["rgb", "thermal"]
    with pytest.raises(ValueError, match=r"config.train.batch_size: expected an integer"):
        load_config(None, ["train.batch_size=two"])
    with pytest.raises(ValueError, match="unknown key 'lr'"):
        load_config(None, ["optim.lr=0.1"])
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_overrides_may_follow_the_options_on_the_command_line(monkeypatch):
    import cenfusion.cli.train as train_cli
    from cenfusion.cli import main

    seen = {}

    def fake_run(args):
        seen.update(overrides=args.overrides, no_progress=args.no_progress)
        return 0

    monkeypatch.setattr(train_cli, "run", fake_run)  # add_parser binds it when main runs
    assert main(["train", str(CONFIGS[0]), "a.b=1", "--no-progress", "train.seed=3"]) == 0
    assert seen == {"overrides": ["a.b=1", "train.seed=3"], "no_progress": True}
