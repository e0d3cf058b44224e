"""The tiny translation config of the root conftest, as ``tiny_config``."""

import pytest


@pytest.fixture
def tiny_config(translation_config):
    return translation_config
