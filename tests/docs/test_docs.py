"""The documentation cannot rot: its commands parse and run, its code runs, its pages are current.

Every ``cenfusion`` command in a bash block of README.md and docs/*.md is parsed by the real
argument parser, and its config (with its overrides) loads. The quick start of the README and
the own-modalities guide run end to end as written, on smaller images and a one-step training
budget: the only changes, appended to the commands below as extra arguments, are ``--size`` for
``synth`` and budget overrides for ``train``/``evaluate``. Every python block of the README
runs, and each ``# {...}`` line must be the value of the expression above it. Each benchmark
protocol's committed report is what its committed per-run results give.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cenfusion.cli import build_parser, main
from cenfusion.config import Config, load_config, registered_tasks
from cenfusion.docgen import api_reference, config_reference
from cenfusion.experiments import resolve_variants
from cenfusion.experiments.protocol import Protocol, format_protocol
from cenfusion.tasks import get_task

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


def commands(path: Path, section: str | None = None) -> list[list[str]]:
    """``cenfusion`` argument lists of the bash blocks (of one ``## section`` if given)."""
    text = path.read_text(encoding="utf-8")
    if section is not None:
        text = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            tokens = shlex.split(line, comments=True)
            if "cenfusion" in tokens[:3] and tokens[0] in ("cenfusion", "torchrun", "python"):
                found.append(tokens[tokens.index("cenfusion") + 1 :])
    return found


DOCUMENTED = [(page.name, argv) for page in PAGES for argv in commands(page)]


def test_the_docs_document_commands():
    assert len(DOCUMENTED) > 20


@pytest.mark.parametrize(
    "page, argv", DOCUMENTED, ids=[f"{p}:{' '.join(a[:2])}" for p, a in DOCUMENTED]
)
def test_every_documented_command_parses_and_its_config_loads(page, argv):
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)  # a wrong option exits: the test fails
    overrides = [t for t in extra if "=" in t and not t.startswith("-")]
    unknown = [t for t in extra if t not in overrides]
    assert not unknown or getattr(args, "accepts_extra", False), unknown
    config = getattr(args, "config", None)
    if config:  # a shipped config's name, or a file of the repository
        path = ROOT / config if (ROOT / config).is_file() else config
        loaded = load_config(path, [*getattr(args, "overrides", []), *overrides])
        if args.command == "compare":
            task = get_task(loaded.task)
            resolve_variants(args.methods, loaded.model.modalities, task.backbone_ablations)


def test_the_reference_pages_are_what_the_code_generates():
    assert (ROOT / "docs" / "config.md").read_text() == config_reference(), (
        "docs/config.md is stale: run python -m cenfusion.docgen docs"
    )
    assert (ROOT / "docs" / "api.md").read_text() == api_reference(), (
        "docs/api.md is stale: run python -m cenfusion.docgen docs"
    )


def test_every_config_key_is_in_the_reference():
    reference = config_reference()
    for task in registered_tasks():
        for section, values in Config(task=task).to_dict().items():
            keys = [section] if not isinstance(values, dict) else [f"{section}.{k}" for k in values]
            for key in keys:
                assert f"`{key}`" in reference, (task, key)


TINY_TRAIN = [
    "data.crop_size=[32, 40]",
    "model.decoder_channels=[8, 8]",
    "optim.stages=[{epochs: 1, encoder_lr: 0.01, decoder_lr: 0.01}]",
    "train.max_steps_per_epoch=1",
    "train.batch_size=2",
]
SMALLER = {
    "synth": ["--size", "32", "40", "--no-progress"],
    "train": [*TINY_TRAIN, "--no-progress"],
    "evaluate": [*TINY_TRAIN, "--no-progress"],
}


def run_as_written(argvs: list[list[str]], workdir: Path, monkeypatch) -> None:
    monkeypatch.chdir(workdir)
    for argv in argvs:
        code = main([*argv, *SMALLER.get(argv[0], [])])
        assert code == 0, argv


def test_the_quick_start_runs(tmp_path, monkeypatch):
    argvs = commands(ROOT / "README.md", "Quick start (5 minutes)")
    assert [a[0] for a in argvs] == ["synth", "train", "evaluate", "predict", "inspect"]
    run_as_written(argvs, tmp_path, monkeypatch)
    out = tmp_path / "runs" / "synthetic_rgb_normal"
    assert (out / "00701.png").is_file() and (out / "gammas.png").stat().st_size > 10_000


RGB_THERMAL = "4. RGB + thermal, step by step"


def test_the_own_modalities_guide_runs(tmp_path, monkeypatch):
    page = ROOT / "docs" / "own_modalities.md"
    argvs = [a for a in commands(page) if a not in commands(page, RGB_THERMAL)]
    assert [a[0] for a in argvs] == ["synth", "train", "evaluate", "predict", "inspect"]
    run_as_written(argvs, tmp_path, monkeypatch)
    out = tmp_path / "runs" / "folder_rgb_depth_normal"
    assert (out / "00601.png").is_file() and (out / "gammas.png").is_file()
    assert sorted(p.name for p in (tmp_path / "data" / "my-scenes").iterdir()) == [
        "depth", "label", "meta.json", "normal", "rgb", "train.txt", "val.txt",
    ]  # fmt: skip


def test_the_rgb_thermal_guide_runs_on_data_in_mfnets_layout(tmp_path, monkeypatch):
    """A small made-up data set laid out like MFNet's (4-channel PNGs, labels 0..8, split
    lists): the guide's snippet converts it, then its commands train and score it."""
    source = tmp_path / "data" / "MFNet"
    (source / "images").mkdir(parents=True)
    (source / "labels").mkdir()
    rng = np.random.default_rng(0)
    names = {"train": ["00001D", "00002N", "00003D"], "val": ["00004N"], "test": ["00005D"]}
    for split, ids in names.items():
        (source / f"{split}.txt").write_text("\n".join(ids) + "\n")
        for sample in ids:
            image = rng.integers(0, 256, (48, 64, 4), dtype=np.uint8)
            Image.fromarray(image, mode="RGBA").save(source / "images" / f"{sample}.png")
            label = rng.integers(0, 9, (48, 64), dtype=np.uint8)
            Image.fromarray(label).save(source / "labels" / f"{sample}.png")
    page = ROOT / "docs" / "own_modalities.md"
    (snippet,) = blocks(page, "python")
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet, "own_modalities.md python block", "exec"), {})
    target = tmp_path / "data" / "my-rgbt"
    assert np.asarray(Image.open(target / "thermal" / "00002N.png")).shape == (48, 64)
    assert np.array_equal(
        np.asarray(Image.open(target / "rgb" / "00002N.png")),
        np.asarray(Image.open(source / "images" / "00002N.png"))[..., :3],
    )
    argvs = commands(page, RGB_THERMAL)
    assert [a[0] for a in argvs] == ["train", "evaluate", "evaluate", "train", "evaluate"]
    run_as_written(argvs, tmp_path, monkeypatch)
    assert (tmp_path / "runs" / "folder_rgb_thermal_robust" / "last.pt").is_file()
    runs = tmp_path / "runs"
    both = json.loads((runs / "folder_rgb_thermal" / "scores_test.json").read_text())
    assert set(both) == {"rgb", "thermal", "ensemble"}
    alone = json.loads((runs / "folder_rgb_thermal" / "scores_test_without_rgb.json").read_text())
    assert set(alone) == {"thermal", "ensemble"}  # the night case, beside the full scores
    robust = runs / "folder_rgb_thermal_robust" / "scores_test_without_rgb.json"
    assert set(json.loads(robust.read_text())) == {"thermal", "ensemble"}


@pytest.mark.parametrize("index", range(len(blocks(ROOT / "README.md", "python"))))
def test_every_python_block_of_the_readme_runs_and_shows_its_values(index):
    code = blocks(ROOT / "README.md", "python")[index]
    namespace: dict = {}
    exec(compile(code, f"README.md python block {index}", "exec"), namespace)
    lines = code.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("# {"):
            assert eval(lines[i - 1], namespace) == ast.literal_eval(line[2:])


def test_every_relative_link_of_the_docs_resolves():
    pages = [*PAGES, *sorted((ROOT / "docs" / "results").rglob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            external = target.startswith(("http://", "https://", "mailto:"))
            if not external and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken


# the benchmarks, and the diagnostics that rerun their chosen settings another way
PROTOCOLS = sorted((ROOT / "experiments" / "protocols").rglob("*.yaml"))


@pytest.mark.parametrize("path", PROTOCOLS, ids=[p.stem for p in PROTOCOLS])
def test_each_committed_benchmark_report_is_what_its_committed_results_give(path, monkeypatch):
    """A figure the README quotes from a report can be traced to the per-run JSON: the report
    regenerated from the results folder equals the committed one."""
    monkeypatch.chdir(ROOT)  # a protocol's paths are relative to the repository's root
    protocol = Protocol.load(path.relative_to(ROOT))
    committed = protocol.results / "README.md"
    if not committed.is_file():
        pytest.skip(f"{path.name} has no committed report yet")
    text = format_protocol(protocol, protocol.report())
    for page in [committed, *protocol.report_copies]:
        assert page.is_file() and text == page.read_text(), (
            f"{page} is not what `cenfusion protocol report {path.relative_to(ROOT)}` writes "
            "from the committed results: regenerate it"
        )


def test_the_readme_quotes_the_benchmark_reports(monkeypatch):
    """The README's benchmark section claims nothing the committed reports do not say: each of
    its table rows is a row of a report, and each figure with an interval is in one."""
    monkeypatch.chdir(ROOT)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("### The benchmark")
    section = readme[start : readme.index("\n## ", start)]
    reports = []
    for path in PROTOCOLS:
        results = Protocol.load(path.relative_to(ROOT)).results / "README.md"
        if results.is_file():
            reports.append(results.read_text(encoding="utf-8"))
    lines = {line for report in reports for line in report.splitlines()}
    rows = [line for line in section.splitlines() if line.startswith("|")]
    assert rows and rows[0].startswith("| method |"), "the section shows no headline table"
    assert [row for row in rows if row not in lines] == []
    figures = re.findall(r"[+-]?\d+\.\d+ ± \d+\.\d+", " ".join(section.split()))
    assert [f for f in figures if not any(f in report for report in reports)] == []
