"""One speed switch: what each host gets, and every choice it can make checked on this host."""

import copy

import pytest
import torch

import cenfusion
from cenfusion.engine import speed
from cenfusion.engine.speed import HostCapabilities, SpeedSettings, accelerate, choose_settings
from cenfusion.models import create_model
from cenfusion.tasks import get_task

AVX2 = HostCapabilities("cpu", bf16=False, compiler=True, cpu="AVX2")
AMX = HostCapabilities("cpu", bf16=True, compiler=True, cpu="AVX512")
H200 = HostCapabilities("cuda", bf16=True, compiler=True)


def test_each_kind_of_host_gets_its_choice():
    for mode in ("inference", "training"):
        assert choose_settings(mode, "exact", AMX) == SpeedSettings()
        fast = choose_settings(mode, "fast", AMX)
        assert (fast.precision, fast.channels_last, fast.compile) == ("bf16", True, False)
        assert choose_settings(mode, "fast", H200).precision == "bf16"
        avx2 = choose_settings(mode, "fast", AVX2)  # never slower than exact: stays fp32
        assert (avx2.precision, avx2.channels_last, avx2.compile) == ("fp32", False, False)
        assert "no bf16 hardware" in avx2.describe()
    with pytest.raises(ValueError, match="speed: expected one of"):
        choose_settings("inference", "ludicrous", AMX)


CHOICES = [
    SpeedSettings("fp32", False, False, "forced"),
    SpeedSettings("fp32", True, False, "forced"),
    SpeedSettings("bf16", False, False, "forced"),
    SpeedSettings("bf16", True, False, "forced"),
]


@pytest.mark.parametrize("settings", CHOICES, ids=lambda s: s.describe().split(" (")[0])
def test_every_choice_gives_the_models_outputs_and_leaves_its_weights(settings):
    torch.manual_seed(0)
    model = create_model("segmentation", modalities=("rgb", "depth"), backbone="resnet18",
                         num_classes=5, decoder_channels=(8, 8)).eval()  # fmt: skip
    before = copy.deepcopy(model.state_dict())
    inputs = {"rgb": torch.randn(1, 3, 64, 64), "depth": torch.randn(1, 1, 64, 64)}
    with torch.no_grad():
        expected = model(inputs)
        fast = accelerate(model, settings=settings)
        outputs = [fast(inputs), fast([inputs["rgb"], inputs["depth"]])]
    assert fast.settings is settings
    for got in outputs:
        for key, value in expected.items():
            assert got[key].dtype == torch.float32
            if settings.precision == "fp32":
                torch.testing.assert_close(got[key], value, atol=1e-5, rtol=1e-5)
            else:
                error = float((got[key] - value).norm() / value.norm())
                assert 0 < error < 2e-2, (key, error)
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_the_hosts_own_choice_is_recorded():
    model = create_model("translation", modalities=("a", "b"), ngf=4, ndf=4, num_downs=5).eval()
    fast = cenfusion.accelerate(model.generator, mode="inference")
    assert fast.settings in (choose_settings("inference", "fast", h) for h in (AMX, AVX2))
    out = fast({"a": torch.randn(1, 3, 32, 32), "b": torch.randn(1, 3, 32, 32)})
    assert out["ensemble"].dtype == torch.float32


def test_a_fast_run_resumes_exactly_like_an_uninterrupted_one(segmentation_config, tmp_path,
                                                              monkeypatch):  # fmt: skip
    """train.speed fast, forced to bf16 + channels_last whatever this host is."""
    monkeypatch.setattr(speed, "host_capabilities", lambda device: AMX)
    monkeypatch.setattr("cenfusion.engine.trainer.host_capabilities", lambda device: AMX)
    task = get_task("segmentation")
    common = ("train.speed=fast", "train.eval_every=0", "model.dropout=0.0",
              "train.checkpoint_every=1")  # fmt: skip
    whole = task.trainer(segmentation_config(*common, f"output_dir={tmp_path / 'a'}"),
                         progress=False)  # fmt: skip
    assert (whole.config.train.precision, whole.config.train.channels_last) == ("bf16", True)
    whole.fit()
    one_epoch = "optim.stages=[{epochs: 1, encoder_lr: 0.01, decoder_lr: 0.01}]"
    cut = segmentation_config(*common, f"output_dir={tmp_path / 'b'}", one_epoch)
    task.trainer(cut, progress=False).fit()
    resumed = task.trainer(segmentation_config(*common, f"output_dir={tmp_path / 'b'}"),
                           resume=True, progress=False)  # fmt: skip
    resumed.fit()
    expected, got = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_an_unknown_speed_is_refused_naming_the_key(segmentation_config):
    with pytest.raises(ValueError, match="train.speed: expected one of"):
        get_task("segmentation").trainer(segmentation_config("train.speed=warp"), progress=False)


def test_settings_given_by_hand_say_so():
    assert SpeedSettings().reason == "exact: fp32, the default path"
    hand = SpeedSettings("bf16", channels_last=True, compile=True)
    assert hand.describe() == "bf16 + channels_last + compile (set by hand)"
    assert SpeedSettings("bf16", reason="long job").describe() == "bf16 (long job)"
