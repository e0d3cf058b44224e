"""Checkpoints that are damaged, foreign or hostile are refused by name; none runs code."""

import os
import pickle
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cenfusion.cli import main
from cenfusion.compat import load_official
from cenfusion.config import load_config
from cenfusion.engine.checkpoint import (
    load_checkpoint,
    load_latest,
    load_model_state,
    save_checkpoint,
)
from cenfusion.tasks import load_trained
from cenfusion.tasks.segmentation.training import build_model
from tests.clear_errors import assert_clear

SMALL = {
    "model": {"w": torch.arange(600, dtype=torch.float32), "n": torch.tensor(3)},
    "optimiser": {"state": {0: {"momentum_buffer": torch.ones(4)}}, "param_groups": [{"lr": 0.1}]},
    "epoch": 2,
    "history": "[]",
}


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("checkpoint") / "last.pt"
    save_checkpoint(SMALL, path)
    return path.read_bytes()


def same_as_small(payload: dict) -> bool:
    return payload["epoch"] == 2 and torch.equal(payload["model"]["w"], SMALL["model"]["w"])


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_a_truncated_or_flipped_checkpoint_is_detected_and_the_previous_one_used(
    small_checkpoint, tmp_path_factory, data
):
    folder = tmp_path_factory.mktemp("run")
    save_checkpoint({**SMALL, "epoch": 1}, folder / "previous.pt")
    damaged = bytearray(small_checkpoint)
    if data.draw(st.booleans(), label="truncate"):
        damaged = damaged[: data.draw(st.integers(0, len(damaged) - 1), label="length")]
    else:
        position = data.draw(st.integers(0, len(damaged) - 1), label="position")
        damaged[position] ^= data.draw(st.integers(1, 255), label="bits")
    (folder / "last.pt").write_bytes(bytes(damaged))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            payload = load_checkpoint(folder / "last.pt")
        except ValueError as error:
            assert_clear(error, str(folder / "last.pt"))
            path, payload = load_latest(folder)
            assert path.name == "previous.pt" and payload["epoch"] == 1
        else:  # a byte nothing reads (zip padding): then the content is intact
            assert same_as_small(payload)


class Hostile:
    def __reduce__(self):
        return (os.system, (f"touch {Hostile.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("wrapped", [True, False])
def test_a_malicious_pickle_is_refused_everywhere_and_never_runs(tmp_path, wrapped, capsys):
    Hostile.marker = tmp_path / "ran"
    evil = tmp_path / "evil.pt"
    if wrapped:
        torch.save({"format": "cenfusion-checkpoint-v1", "model": Hostile()}, evil)
    else:
        evil.write_bytes(pickle.dumps(Hostile()))
    for load in (load_checkpoint, load_trained, load_official):
        with pytest.raises(ValueError) as caught:
            load(evil)
        assert_clear(caught.value, str(evil), "weights-only")
    with pytest.raises(ValueError) as caught:
        build_model(load_config(None, ["model.backbone=resnet18", f"model.pretrained={evil}"]))
    assert_clear(caught.value, str(evil))
    image = tmp_path / "a.png"
    image.write_bytes(b"")  # never read: the checkpoint is refused first
    code = main(["predict", "--checkpoint", str(evil), "--rgb", str(image), "-o", "x.png"])
    assert code == 2 and str(evil) in capsys.readouterr().err
    assert not Hostile.marker.exists()


@pytest.mark.parametrize(
    ("other", "culprits"),
    [
        (["model.backbone=resnet34"], ["another architecture", "missing"]),
        (["model.modalities=[rgb, depth, normal]"], ["number of modalities", "shape mismatch"]),
        (["model.num_classes=7"], ["shape mismatch", "classifier"]),
        (["model.arch=pspnet", "model.decoder_channels=[8]"], ["another architecture"]),
    ],
)
def test_weights_of_another_model_are_refused_naming_the_keys(tmp_path, other, culprits):
    base = ["model.backbone=resnet18", "model.num_classes=5", "model.decoder_channels=[8, 8]"]
    path = tmp_path / "weights.pt"
    save_checkpoint({"model": build_model(load_config(None, base)).state_dict()}, path)
    target = build_model(load_config(None, [*base, *other]))
    with pytest.raises(ValueError) as caught:
        load_model_state(target, load_checkpoint(path)["model"], path)
    assert_clear(caught.value, str(path), *culprits)


@pytest.mark.parametrize("what", ["no model", "no config", "config not json", "folder", "missing"])
def test_a_checkpoint_without_what_prediction_reads_is_refused(tmp_path, what):
    path = tmp_path / "ckpt.pt"
    payload = {"model": {}, "config": "{}"}
    if what == "no model":
        del payload["model"]
    elif what == "no config":
        del payload["config"]
    elif what == "config not json":
        payload["config"] = "{not json"
    save_checkpoint(payload, path)
    if what == "folder":
        path = tmp_path
    elif what == "missing":
        path = tmp_path / "nowhere.pt"
    with pytest.raises(Exception) as caught:
        load_trained(path)
    assert_clear(caught.value, str(path))


def test_resuming_from_a_checkpoint_of_the_other_task_is_refused(tmp_path):
    from cenfusion.engine.checkpoint import find_resume_checkpoint, require_entries

    path = Path(tmp_path / "generator.pt")
    save_checkpoint({"model": {}, "g_optimiser": {}, "d_optimiser": {}, "epoch": 0, "rng": {}},
                    path)  # fmt: skip
    _, payload = find_resume_checkpoint(str(path), tmp_path)
    with pytest.raises(ValueError) as caught:
        require_entries(payload, ("model", "optimiser"), path, "a segmentation training checkpoint")
    assert_clear(caught.value, str(path), "'optimiser'", "segmentation training checkpoint")
