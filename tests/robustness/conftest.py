"""Small data sets and models, made once, that the fuzz tests break in many ways."""

import pytest

from cenfusion.data.synthetic.writers import write_nyudv2, write_taskonomy


@pytest.fixture(scope="session")
def nyudv2_root(tmp_path_factory):
    """Two training and one validation scene of 16x20 pixels in the NYUDv2 layout."""
    root = tmp_path_factory.mktemp("fuzz-nyudv2")
    write_nyudv2(root, n_train=2, n_val=1, seed=5, size=(16, 20), progress=False)
    return root


@pytest.fixture(scope="session")
def taskonomy_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-taskonomy")
    write_taskonomy(root, n_train=2, n_val=1, seed=5, size=(32, 32),
                    domains=("rgb", "reshading", "texture"), progress=False)  # fmt: skip
    return root
