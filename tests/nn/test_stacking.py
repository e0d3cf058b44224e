"""Stacking modalities on the batch axis, and the errors a user meets."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cenfusion.nn import modality_view, split_modalities, stack_modalities, unstack_modalities


def test_dict_and_list_stack_modality_major_and_depth_is_tiled():
    rgb, depth = torch.randn(2, 3, 4, 5), torch.randn(2, 1, 4, 5)
    stacked = stack_modalities({"depth": depth, "rgb": rgb}, ["rgb", "depth"], channels=3)
    assert stacked.shape == (4, 3, 4, 5)
    assert torch.equal(stacked[:2], rgb)
    assert torch.equal(stacked[2:], depth.expand(-1, 3, -1, -1))
    assert torch.equal(stack_modalities([rgb, depth], ["rgb", "depth"], channels=3), stacked)


def test_missing_and_extra_modalities_are_named():
    rgb = torch.randn(2, 3, 4, 5)
    with pytest.raises(ValueError, match=r"missing modality 'depth'.*'rgb': \(2, 3, 4, 5\)"):
        stack_modalities({"rgb": rgb}, ["rgb", "depth"])
    with pytest.raises(ValueError, match="unexpected modality 'thermal'"):
        stack_modalities({"rgb": rgb, "depth": rgb, "thermal": rgb}, ["rgb", "depth"])
    with pytest.raises(ValueError, match="expected 2 tensors in the order"):
        stack_modalities([rgb], ["rgb", "depth"])


def test_mismatched_sizes_name_modality_and_shapes():
    with pytest.raises(
        ValueError, match=r"modality 'depth'.*matching 'rgb' \(2, 3, 4, 5\), got \(2, 1, 4, 6\)"
    ):
        stack_modalities(
            {"rgb": torch.randn(2, 3, 4, 5), "depth": torch.randn(2, 1, 4, 6)}, ["rgb", "depth"]
        )
    with pytest.raises(ValueError, match=r"modality 'depth'.*got \(3, 1, 4, 5\)"):
        stack_modalities(
            {"rgb": torch.randn(2, 3, 4, 5), "depth": torch.randn(3, 1, 4, 5)}, ["rgb", "depth"]
        )
    with pytest.raises(ValueError, match=r"expected \(B, 1\|3, H, W\), got \(2, 2, 4, 5\)"):
        stack_modalities([torch.randn(2, 3, 4, 5), torch.randn(2, 2, 4, 5)], ["rgb", "d"], 3)


def test_wrong_dtype_and_rank_are_named():
    with pytest.raises(ValueError, match="modality 'depth': expected a floating-point tensor"):
        stack_modalities(
            [torch.randn(1, 3, 2, 2), torch.zeros(1, 1, 2, 2, dtype=torch.uint8)], ["rgb", "depth"]
        )
    with pytest.raises(ValueError, match=r"modality 'rgb': expected a \(B, C, H, W\) tensor"):
        stack_modalities([torch.randn(3, 2, 2)], ["rgb"])


def test_split_is_by_slicing_and_shares_memory():
    stacked = torch.randn(6, 2, 3, 3)
    parts = split_modalities(stacked, 3)
    assert all(p.data_ptr() == stacked[2 * i].data_ptr() for i, p in enumerate(parts))
    with pytest.raises(ValueError, match="multiple of num_modalities=4"):
        split_modalities(stacked, 4)


@given(num=st.integers(1, 4), batch=st.integers(1, 3), channels=st.integers(1, 4))
def test_stack_then_unstack_is_the_identity(num, batch, channels):
    names = [f"m{i}" for i in range(num)]
    inputs = {n: torch.randn(batch, channels, 2, 3) for n in names}
    stacked = stack_modalities(inputs, names)
    back = unstack_modalities(stacked, names)
    assert all(torch.equal(back[n], inputs[n]) for n in names)
    assert torch.equal(modality_view(stacked, num)[num - 1], inputs[names[-1]])
