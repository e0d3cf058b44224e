"""modality_files: the one check of "one existing file per modality" before prediction."""

import pytest

from cenfusion.data.io import modality_files
from tests.clear_errors import assert_clear


def test_files_come_back_in_the_models_order(tmp_path):
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(b"")
    files = {"depth": tmp_path / "b.png", "rgb": str(tmp_path / "a.png")}
    ordered = modality_files(("rgb", "depth"), files)
    assert list(ordered) == ["rgb", "depth"] and ordered["rgb"] == tmp_path / "a.png"


@pytest.mark.parametrize(
    ("given", "culprits"),
    [
        (["rgb"], ["missing ['depth']", "rgb", "depth"]),
        (["rgb", "depth", "thermal"], ["unexpected ['thermal']"]),
    ],
)
def test_missing_or_extra_modalities_are_named(tmp_path, given, culprits):
    files = {name: tmp_path / f"{name}.png" for name in given}
    with pytest.raises(ValueError) as caught:
        modality_files(("rgb", "depth"), files)
    assert_clear(caught.value, *culprits)


def test_a_file_that_does_not_exist_is_named(tmp_path):
    (tmp_path / "rgb.png").write_bytes(b"")
    with pytest.raises(FileNotFoundError) as caught:
        modality_files(("rgb", "depth"), {"rgb": tmp_path / "rgb.png", "depth": tmp_path / "d.png"})
    assert_clear(caught.value, "--depth", "d.png")
