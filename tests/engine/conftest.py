import pytest

from cenfusion.config import load_config
from cenfusion.data.synthetic.writers import write_nyudv2


@pytest.fixture(scope="session")
def synthetic_nyudv2(tmp_path_factory):
    """A tiny NYUDv2-format set written by `cenfusion synth nyudv2`'s writer."""
    root = tmp_path_factory.mktemp("synthetic-nyudv2")
    write_nyudv2(root, n_train=6, n_val=2, seed=3, size=(40, 48), progress=False)
    return root


@pytest.fixture
def tiny_config(synthetic_nyudv2, tmp_path):
    """A ResNet-18 RefineNet small enough to train a few steps in seconds."""

    def make(*overrides):
        return load_config(
            None,
            [
                f"output_dir={tmp_path / 'run'}",
                "model.backbone=resnet18",
                "model.num_classes=10",
                "model.decoder_channels=[16, 8]",
                f"data.root={synthetic_nyudv2}",
                "data.crop_size=[32, 40]",
                "data.scale_range=[0.8, 1.2]",
                "data.min_short_side=0",
                "optim.stages=[{epochs: 2, encoder_lr: 0.01, decoder_lr: 0.01}]",
                "train.batch_size=2",
                "train.lam=0.01",
                "train.max_steps_per_epoch=2",
                *overrides,
            ],
        )

    return make
