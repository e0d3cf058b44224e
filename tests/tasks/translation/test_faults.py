"""The translation trainer survives Ctrl-C mid-epoch, skips non-finite steps, accumulates."""

import os
import signal

import pytest
import torch

from cenfusion.engine.faults import NonFiniteLossError, TrainingInterrupted
from cenfusion.tasks import get_task
from cenfusion.tasks.translation import training as engine

TRANSLATION = get_task("translation")


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def optimiser_tensors(optimiser) -> list:
    return [v.clone() for state in optimiser.state.values() for v in state.values()
            if isinstance(v, torch.Tensor)]  # fmt: skip


def test_ctrl_c_mid_epoch_then_resume_is_exact(tiny_config, tmp_path):
    quiet = ("train.eval_every=0", "train.sample_every=0")
    whole = TRANSLATION.trainer(tiny_config(*quiet, f"output_dir={tmp_path / 'a'}"),
                               progress=False)  # fmt: skip
    whole.fit()
    config = tiny_config(*quiet, f"output_dir={tmp_path / 'b'}")
    cut = TRANSLATION.trainer(config, progress=False)
    original = cut.parts.step

    def train_step(*args, **kwargs):  # Ctrl-C during the first step of the second epoch
        if args[1] == 1 and args[2] == 0:
            os.kill(os.getpid(), signal.SIGINT)
        return original(*args, **kwargs)

    cut.parts.step = train_step
    with pytest.raises(TrainingInterrupted, match="epoch 2, step 1: checkpoint saved"):
        cut.fit()
    resumed = TRANSLATION.trainer(config, resume=True, progress=False)
    assert resumed.resume_progress.step == 1
    resumed.fit()
    assert states_equal(resumed.model.state_dict(), whole.model.state_dict())
    for key in ("g_optimiser", "d_optimiser"):
        mine, theirs = resumed.optimisers[key], whole.optimisers[key]
        pairs = zip(optimiser_tensors(mine), optimiser_tensors(theirs), strict=True)
        assert all(torch.equal(a, b) for a, b in pairs)


@pytest.mark.parametrize("accumulate", [1, 2])
def test_a_non_finite_generator_loss_is_skipped_leaving_both_networks_untouched(
    tiny_config, monkeypatch, accumulate
):
    trainer = TRANSLATION.trainer(
        tiny_config("train.nonfinite=skip", f"train.accumulate_steps={accumulate}"),
        progress=False,
    )
    batch = [trainer.datasets["train"][i] for i in range(2)]
    collated = {k: torch.stack([sample[k] for sample in batch]) for k in batch[0]}
    micro = [{k: v[i::accumulate] for k, v in collated.items()} for i in range(accumulate)]
    trainer.parts.step(micro)  # a good step: Adam has state
    model = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    adam = optimiser_tensors(trainer.optimisers["g_optimiser"]) + optimiser_tensors(
        trainer.optimisers["d_optimiser"]
    )
    original = engine.generator_loss

    def poisoned(*args):
        total, parts = original(*args)
        return total * float("inf"), {**parts, "g_loss": float("inf")}

    monkeypatch.setattr(engine, "generator_loss", poisoned)
    result = trainer.parts.step(micro)
    assert not result.finite  # the discriminator had stepped: it was put back
    assert states_equal(trainer.model.state_dict(), model)
    after = optimiser_tensors(trainer.optimisers["g_optimiser"]) + optimiser_tensors(
        trainer.optimisers["d_optimiser"]
    )
    assert all(torch.equal(a, b) for a, b in zip(after, adam, strict=True))
    trainer.config.train.nonfinite = "stop"
    with pytest.raises(NonFiniteLossError, match="epoch 1, step 1"):
        trainer.parts.step(micro)


def test_accumulated_micro_batches_train_and_log_the_global_batch(tiny_config):
    trainer = TRANSLATION.trainer(
        tiny_config("train.accumulate_steps=2", "train.epochs=1", "train.sample_every=0"),
        progress=False,
    )
    assert (trainer.plan.micro_batch, trainer.plan.per_process) == (1, 2)
    (record,) = trainer.fit()
    assert record["val"]["ensemble"]["num_images"] == 2
    assert all(record[k] == record[k] for k in ("d_loss", "g_loss", "l1_ensemble"))  # finite
