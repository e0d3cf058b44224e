"""The benchmark suite runs end to end (tiny sizes: these figures are no measurements)."""

from __future__ import annotations

import json

import pytest

from benchmarks import run as suite
from cenfusion.cli import bench, main
from cenfusion.engine.speed import compile_available


def test_quick_mode_runs_and_writes_json(tmp_path, capsys):
    out = tmp_path / "quick.json"
    argv = ["--quick", "--models", "pix2pix", "--json", str(out)]
    assert suite.main([*argv, "--markdown"]) == 0
    payload = json.loads(out.read_text())
    assert payload["complete"] and not out.with_name("quick.json.partial").exists()
    assert payload["settings"]["quick"] and payload["settings"]["options"] == ["fp32"]
    machine = payload["machine"]
    assert {"torch", "cpu", "threads", "device", "load_before", "commit"} <= machine.keys()
    rows = payload["rows"]
    variants = {"list", "unimodal", "fp32"}
    assert {(r["mode"], r["variant"]) for r in rows} == {
        (mode, v) for mode in ("infer", "train") for v in variants
    }
    for row in rows:
        assert row["ms"] > 0 and row["peak_mb"] > 0 and row["samples_per_s"] > 0
        if row["variant"] == "list":
            assert row["speedup_vs_list"] == 1 and row["mem_vs_list"] == 1
    checked = {row["variant"]: row["rel_error_vs_fp32"] for row in rows}
    assert checked["list"] < 1e-5 and checked["fp32"] == 0
    assert {t["target"] for t in payload["targets"]} >= {
        "train speed-up vs list >= 1.5",
        "infer speed-up vs list >= 1.5",
        "train peak memory vs list <= 1.0",
        "train fusion overhead <= 1.1",
    }
    printed = capsys.readouterr().out
    assert "targets (stacked fp32)" in printed and "| pix2pix | 2 | train |" in printed


def test_a_run_cut_short_keeps_its_finished_groups(tmp_path, monkeypatch):
    out = tmp_path / "cut.json"
    real = suite.run_group

    def second_group_fails(name, num_modalities, settings):
        if num_modalities == 3:
            raise KeyboardInterrupt
        return real(name, num_modalities, settings)

    monkeypatch.setattr(suite, "run_group", second_group_fails)
    argv = ["--quick", "--models", "pix2pix", "--modalities", "2", "3", "--no-memory"]
    with pytest.raises(KeyboardInterrupt):
        suite.main([*argv, "--json", str(out)])
    payload = json.loads(out.read_text())
    assert not payload["complete"]
    assert {r["modalities"] for r in payload["rows"]} == {2}


def test_quick_settings_yield_to_explicit_options():
    settings, _ = suite.parse_args(["--quick", "--repeats", "3", "--device", "cpu"])
    assert settings.repeats == 3 and settings.size == 64 and settings.device == "cpu"
    full, _ = suite.parse_args(["--no-memory"])
    assert full.size == 256 and full.batch_size == 2 and full.modalities == [2, 3, 4]
    assert full.models == list(suite.MODELS) and not full.memory


def test_cenfusion_bench_is_the_suite(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["bench", "--help"])
    assert stop.value.code == 0
    assert "usage: cenfusion bench" in capsys.readouterr().out


def test_cenfusion_bench_outside_a_checkout_says_so(monkeypatch, capsys):
    monkeypatch.setattr(bench, "find_checkout", lambda: None)
    assert main(["bench", "--quick"]) == 2
    assert "source checkout" in capsys.readouterr().err


def test_speed_fast_adds_the_hosts_choice():
    settings, _ = suite.parse_args(["--quick", "--speed", "fast"])
    assert settings.options[-1] == "fast" and "fp32" in settings.options


def test_fast_plus_compile_is_the_hosts_choice_compiled():
    if not compile_available("cpu")[0]:
        pytest.skip(compile_available("cpu")[1])
    settings, _ = suite.parse_args(["--quick", "--options", "fast", "fast+compile"])
    cen = suite.build_cen("pix2pix", 2, settings)
    fast = suite.make_variant("fast", cen, "pix2pix", 2, settings)
    compiled = suite.make_variant("fast+compile", cen, "pix2pix", 2, settings)
    assert fast.call is fast.model  # nothing compiled (torch.compile wraps, lazily)
    assert compiled.call is not compiled.model
    assert compiled.call._orig_mod is compiled.model
