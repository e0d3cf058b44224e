"""Several processes train as one: the global batch, its shards, DDP, synchronised batch norm."""

import pytest
import torch

from cenfusion.engine import distributed
from cenfusion.engine.loop import BatchPlan, EpochBatches, epoch_order
from cenfusion.nn import ModalityBatchNorm2d, SyncModalityBatchNorm2d, convert_sync_batch_norm
from cenfusion.tasks import get_task
from tests.engine.helpers import final_weights, metrics, run_training, write_config

SEGMENTATION = get_task("segmentation")


def test_the_epoch_order_is_the_one_earlier_versions_shuffled():
    from torch.utils.data import DataLoader

    generator = torch.Generator().manual_seed(4 * 100_003 + 2)
    old = DataLoader(list(range(9)), batch_size=3, shuffle=True, drop_last=True,
                     generator=generator)  # fmt: skip
    assert [batch.tolist() for batch in old] == list(EpochBatches(9, BatchPlan(3), 4, 2))
    assert sorted(epoch_order(9, 4, 2)) == list(range(9))


def test_processes_and_micro_batches_split_the_same_global_batches():
    single = list(EpochBatches(12, BatchPlan(4), seed=1, epoch=3))
    for world, accumulate in [(2, 1), (1, 2), (2, 2), (4, 1)]:
        plan = BatchPlan(4, world, accumulate)
        per_rank = [list(EpochBatches(12, plan, 1, 3, rank=r)) for r in range(world)]
        for step, batch in enumerate(single):
            parts = [m for r in range(world) for m in per_rank[r][step * accumulate :][:accumulate]]
            assert [i for m in parts for i in m] == batch
            assert all(len(m) == plan.micro_batch for m in parts)
    resumed = list(EpochBatches(12, BatchPlan(4), 1, 3, start_step=2))
    assert resumed == single[2:]


def test_a_batch_that_does_not_split_evenly_is_refused_with_the_numbers():
    with pytest.raises(ValueError, match=r"batch_size=6 .* multiple of 2 process\(es\) x "
                                         r"train.accumulate_steps=2 = 4"):  # fmt: skip
        BatchPlan(6, 2, 2)
    with pytest.raises(ValueError, match="fewer than train.batch_size=8"):
        BatchPlan(8, 2).steps(6)


def test_synchronised_batch_norm_is_the_plain_norm_in_one_process():
    torch.manual_seed(0)
    plain = ModalityBatchNorm2d(4, 2)
    synced = ModalityBatchNorm2d(4, 2)
    synced.load_state_dict(plain.state_dict())
    assert convert_sync_batch_norm(torch.nn.Sequential(synced)) == 1
    assert type(synced) is SyncModalityBatchNorm2d
    x = torch.randn(6, 4, 5, 5)
    torch.testing.assert_close(synced(x), plain(x), rtol=0, atol=0)
    assert synced.state_dict().keys() == plain.state_dict().keys()


def test_two_processes_train_as_one_on_the_same_global_batch(tiny_config, tmp_path):
    """2 gloo processes x 1 sample = 1 process x 2 samples, step for step.

    Holds because nothing in a step depends on how the global batch is split: batch-norm
    statistics are synchronised (train.sync_bn), each sample's augmentation is seeded by its
    position (train.per_sample_rng), the decoder has no dropout, and the cross-entropies are
    normalised by the labelled pixels of the whole global batch. Validation is sharded and the
    confusion matrices summed.
    """
    settings = ("model.dropout=0.0", "train.sync_bn=true", "train.per_sample_rng=true",
                "optim.stages=[{epochs: 1, encoder_lr: 0.01, decoder_lr: 0.01}]")  # fmt: skip
    single = SEGMENTATION.trainer(tiny_config(*settings, f"output_dir={tmp_path / 'one'}"),
                                 progress=False)  # fmt: skip
    single.fit()
    config = tiny_config(*settings, f"output_dir={tmp_path / 'two'}")
    run_training(write_config(config, tmp_path / "two.yaml"), processes=2)
    expected, got = single.model.state_dict(), final_weights(tmp_path / "two")
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-5, msg=key)
    (one,), (two,) = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    for key in ("loss", "ce_branches", "ce_ensemble", "l1"):
        assert two[key] == pytest.approx(one[key], rel=1e-5), key
    for output in ("rgb", "depth", "ensemble"):
        for score in ("pixel_accuracy", "mean_accuracy", "mean_iou"):
            assert two["val"][output][score] == pytest.approx(one["val"][output][score],
                                                              abs=1e-3)  # fmt: skip


def test_accumulation_skips_the_all_reduce_through_a_compiled_wrapper(tmp_path):
    """``train.compile`` wraps the DDP module; the micro-batches before the last of a step
    must still run under DDP's ``no_sync`` (torch.compile builds nothing until called)."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(torch.nn.Linear(2, 2))
        for module in (ddp, torch.compile(ddp)):
            with distributed.sync_gradients(module, sync=False):
                assert not ddp.require_backward_grad_sync
            with distributed.sync_gradients(module, sync=True):
                assert ddp.require_backward_grad_sync
    finally:
        dist.destroy_process_group()
