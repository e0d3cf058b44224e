import pytest
import yaml

from cenfusion.data.synthetic.writers import write_nyudv2
from tests.experiments.tiny import write_tiny_translation


@pytest.fixture(scope="session")
def segmentation_yaml(tmp_path_factory):
    """A YAML config of a ResNet-18 RefineNet that trains one step per run in about a second."""
    root = tmp_path_factory.mktemp("compare-segmentation")
    write_nyudv2(root / "data", n_train=4, n_val=2, n_test=2, seed=5, size=(32, 40), progress=False)
    config = {
        "task": "segmentation",
        "output_dir": str(root / "run"),
        "model": {"backbone": "resnet18", "num_classes": 10, "decoder_channels": [8, 8]},
        "data": {
            "root": str(root / "data"),
            "crop_size": [32, 32],
            "scale_range": [1.0, 1.0],
            "min_short_side": 0,
        },
        "optim": {"stages": [{"epochs": 1, "encoder_lr": 0.01, "decoder_lr": 0.01}]},
        "train": {"batch_size": 2, "lam": 0.01, "max_steps_per_epoch": 1},
    }
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="session")
def translation_yaml(tmp_path_factory):
    """A YAML config of a 5-level U-Net with ngf 4: one step per run."""
    return write_tiny_translation(tmp_path_factory.mktemp("compare-translation"))
