"""The tiny segmentation config of the root conftest, as ``tiny_config``."""

import pytest


@pytest.fixture
def tiny_config(segmentation_config):
    return segmentation_config
