"""Nothing lost: kills, Ctrl-C, non-finite losses; accumulation and determinism switches."""

import os
import random
import signal
import subprocess
import time

import pytest
import torch

from cenfusion.cli import main
from cenfusion.engine.checkpoint import load_checkpoint
from cenfusion.engine.faults import NonFiniteLossError, TrainingInterrupted
from cenfusion.tasks import get_task
from cenfusion.tasks.segmentation import training as engine
from cenfusion.tasks.segmentation.training import SegmentationStep
from tests.engine.helpers import (
    child_env,
    final_weights,
    metrics,
    run_training,
    train_command,
    write_config,
)

SEGMENTATION = get_task("segmentation")

# 2 epochs x 2 steps of 2 samples, a checkpoint after every step, validation at the end
FAULT_RUN = ("train.checkpoint_every=1", "train.eval_every=2")


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def kill_after_checkpoints(config_file, output_dir, checkpoints: int, delay: float, resume: bool):
    """Start training, SIGKILL it ``delay`` s after it wrote ``checkpoints`` more checkpoints
    (mid-step, mid-write or mid-evaluation, wherever that falls); True if it was still running."""
    last = output_dir / "last.pt"

    def stamp():
        return (last.stat().st_ino, last.stat().st_mtime_ns) if last.exists() else None

    seen, count = stamp(), 0
    extra = ("--resume",) if resume else ()
    process = subprocess.Popen(train_command(config_file, *extra), env=child_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 120
    while count < checkpoints and process.poll() is None and time.monotonic() < deadline:
        now = stamp()
        if now is not None and now != seen:
            seen, count = now, count + 1
        time.sleep(0.005)
    time.sleep(delay)
    running = process.poll() is None
    process.kill()
    _, errors = process.communicate()
    assert running or process.returncode == 0, errors.decode()[-2000:]
    return running


def test_sigkill_at_random_points_then_resume_reproduces_the_uninterrupted_run(
    tiny_config, tmp_path
):
    whole = SEGMENTATION.trainer(tiny_config(*FAULT_RUN, f"output_dir={tmp_path / 'whole'}"),
                                progress=False)  # fmt: skip
    whole.fit()
    killed_dir = tmp_path / "killed"
    config_file = write_config(tiny_config(*FAULT_RUN, f"output_dir={killed_dir}"),
                               tmp_path / "killed.yaml")  # fmt: skip
    draw = random.Random(9)  # each process: killed 0-0.6 s after its first checkpoint
    for attempt in range(2):  # (every start costs seconds of imports: two kills, not more)
        assert kill_after_checkpoints(config_file, killed_dir, 1, draw.uniform(0.0, 0.6),
                                      resume=attempt > 0)  # fmt: skip
    run_training(config_file, "--resume")
    assert states_equal(final_weights(killed_dir), whole.model.state_dict())
    assert metrics(killed_dir) == metrics(tmp_path / "whole")


def interrupt_at_step(trainer, step: int):
    """Deliver SIGINT to this process during the given (0-based) optimiser step."""
    original = trainer.parts.step
    calls = {"n": 0}

    def train_step(*args, **kwargs):
        if calls["n"] == step:
            os.kill(os.getpid(), signal.SIGINT)
        calls["n"] += 1
        return original(*args, **kwargs)

    trainer.parts.step = train_step


def test_ctrl_c_saves_the_current_step_and_resume_continues_exactly(tiny_config, tmp_path):
    whole = SEGMENTATION.trainer(
        tiny_config("train.max_steps_per_epoch=3", f"output_dir={tmp_path / 'whole'}"),
        progress=False,
    )
    whole.fit()
    config = tiny_config("train.max_steps_per_epoch=3", f"output_dir={tmp_path / 'cut'}")
    first = SEGMENTATION.trainer(config, progress=False)
    interrupt_at_step(first, 4)  # the second step of the second epoch
    # the handler the process started with: default_int_handler, or SIG_IGN in a background job
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted, match=r"epoch 2, step 2: checkpoint saved"):
        first.fit()
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
    payload = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert payload["epoch"] == 0 and '"step": 2' in payload["position"]
    resumed = SEGMENTATION.trainer(config, resume=True, progress=False)
    resumed.fit()
    assert states_equal(resumed.model.state_dict(), whole.model.state_dict())
    assert metrics(tmp_path / "cut") == metrics(tmp_path / "whole")


def test_ctrl_c_in_the_command_exits_130_with_a_message(tiny_config, tmp_path, monkeypatch,
                                                        capsys):  # fmt: skip
    original = SegmentationStep.__call__

    def train_step(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SegmentationStep, "__call__", train_step)
    config_file = write_config(tiny_config(), tmp_path / "tiny.yaml")
    assert main(["train", str(config_file), "--no-progress"]) == 130
    error = capsys.readouterr().err
    assert "SIGINT: finishing this step" in error
    assert "interrupted at epoch 1, step 1: checkpoint saved" in error and "--resume" in error


def poison_step(monkeypatch, step: int):
    """Make the loss of the given (0-based) training step NaN."""
    original = engine.segmentation_loss
    calls = {"n": 0}

    def poisoned(model, logits, label, config, *scaling):
        total, parts = original(model, logits, label, config, *scaling)
        calls["n"] += 1
        if calls["n"] == step + 1:
            return total * float("nan"), {**parts, "loss": float("nan")}
        return total, parts

    monkeypatch.setattr(engine, "segmentation_loss", poisoned)


def test_a_skipped_non_finite_step_leaves_weights_optimiser_and_statistics_untouched(
    tiny_config, monkeypatch, capsys
):
    trainer = SEGMENTATION.trainer(
        tiny_config("train.nonfinite=skip", "optim.stages=[{epochs: 1}]", "train.eval_every=0"),
        progress=False,
    )
    trainer.parts.step([next(iter(make_loader(trainer)))], 0, 0)  # one good step: momentum
    model_before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    momentum_before = [
        s["momentum_buffer"].clone() for s in trainer.optimisers["optimiser"].state.values()
    ]
    poison_step(monkeypatch, 0)
    result = trainer.parts.step([next(iter(make_loader(trainer)))], 0, 1)
    assert not result.finite
    assert states_equal(trainer.model.state_dict(), model_before)  # incl. running statistics
    after = [s["momentum_buffer"] for s in trainer.optimisers["optimiser"].state.values()]
    assert all(torch.equal(a, b) for a, b in zip(after, momentum_before, strict=True))
    poison_step(monkeypatch, 1)
    (record,) = trainer.fit()
    assert record["skipped_steps"] == 1 and record["loss"] == record["loss"]  # finite mean
    assert "epoch 1, step 2: loss is nan, step skipped" in capsys.readouterr().out


def make_loader(trainer):
    from cenfusion.engine.loop import epoch_loader

    return epoch_loader(trainer.datasets["train"], trainer.plan, 0, 0, 0)


def test_a_non_finite_loss_stops_naming_the_step_before_any_update(tiny_config, monkeypatch):
    trainer = SEGMENTATION.trainer(tiny_config(), progress=False)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    poison_step(monkeypatch, 2)
    with pytest.raises(NonFiniteLossError, match=r"nan at epoch 2, step 1: stopping"):
        trainer.fit()
    assert not states_equal(trainer.model.state_dict(), before)  # two good steps were taken
    assert load_checkpoint(trainer.output_dir / "last.pt")["epoch"] == 0  # epoch 1's, kept


def test_accumulating_two_micro_batches_equals_the_batch_of_both(tiny_config, tmp_path):
    """Exact up to float rounding while batch statistics do not see the split (frozen BN) and
    dropout is off: the cross-entropies are normalised by the global batch's labelled pixels."""
    common = ("train.freeze_bn=true", "model.dropout=0.0", "train.batch_size=4",
              "train.eval_every=0")  # fmt: skip
    whole = SEGMENTATION.trainer(tiny_config(*common, f"output_dir={tmp_path / 'a'}"),
                                progress=False)  # fmt: skip
    whole.fit()
    accumulated = SEGMENTATION.trainer(
        tiny_config(*common, "train.accumulate_steps=2", f"output_dir={tmp_path / 'b'}"),
        progress=False,
    )
    assert accumulated.plan.micro_batch == 2
    accumulated.fit()
    expected, got = whole.model.state_dict(), accumulated.model.state_dict()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-5, msg=key)
    for a, b in zip(metrics(tmp_path / "a"), metrics(tmp_path / "b"), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)


def test_deterministic_runs_are_bit_identical(tiny_config, tmp_path):
    runs = []
    for name in ("a", "b"):
        trainer = SEGMENTATION.trainer(
            tiny_config("train.deterministic=true", "train.eval_every=0",
                        f"output_dir={tmp_path / name}"),
            progress=False,
        )  # fmt: skip
        trainer.fit()
        runs.append(trainer.model.state_dict())
    assert states_equal(*runs)
    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")
    assert not torch.are_deterministic_algorithms_enabled()  # the setting does not leak
