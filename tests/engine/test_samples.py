"""Sample grids: panels in rows, a title above each column, and a clear error otherwise."""

import numpy as np
import pytest
from PIL import Image

from cenfusion.engine.samples import GAP, TITLE_HEIGHT, write_grid


def test_the_grid_holds_every_panel_below_a_title_row(tmp_path):
    red = np.zeros((10, 12, 3), np.uint8)
    red[..., 0] = 255
    blue = np.zeros((10, 8, 3), np.uint8)
    blue[..., 2] = 255
    path = write_grid([[red, blue], [red, blue]], ["a long title", "b"], tmp_path / "g.png")
    grid = np.asarray(Image.open(path))
    assert grid.shape == (TITLE_HEIGHT + 2 * 10 + GAP, 12 + GAP + 8, 3)
    assert (grid[TITLE_HEIGHT : TITLE_HEIGHT + 10, :12] == red).all()
    assert (grid[-10:, 12 + GAP :] == blue).all()
    assert (grid[:TITLE_HEIGHT] < 128).any()  # some title text was drawn


def test_rows_that_do_not_match_the_titles_are_refused(tmp_path):
    panel = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="expected rows of 3 panels"):
        write_grid([[panel, panel]], ["a", "b", "c"], tmp_path / "g.png")
