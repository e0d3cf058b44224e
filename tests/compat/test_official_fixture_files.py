"""The public code's reference outputs ship with the repository: none may go missing."""

import pytest

from tests.compat.fixtures import FIXTURES, IN_REPOSITORY, official_file

FILES = (
    "segmentation_refinenet50_keys.json",
    "segmentation_refinenet50_io.pt",
    "segmentation_exchange_masks.json",
    "translation_pix2pix_ngf8_keys.json",
    "translation_pix2pix_ngf8_io.pt",
)


@pytest.mark.parametrize("name", FILES)
def test_every_fixture_file_is_in_the_repository(name):
    assert (IN_REPOSITORY / name).is_file(), f"tests/compat/official_fixtures/{name} is missing"
    assert official_file(name) == FIXTURES / name
    assert (IN_REPOSITORY / "README.md").is_file()


def test_a_missing_fixture_is_an_error_not_a_skip():
    with pytest.raises(FileNotFoundError, match="official fixture nope.pt not found"):
        official_file("nope.pt")
