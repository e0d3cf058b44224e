"""The benchmark suite: CEN models against the list-of-tensors design and the unimodal network.

    python -m benchmarks.run [--quick] [--models ...] [--modalities 2 3 4] [--repeats 5]
        [--device cpu|cuda] [--options fp32 channels_last bf16 compile fast] [--json PATH]

For every model (RefineNet-ResNet-50 and -101 segmentation, the pix2pix U-Net generator) and
every number of modalities M, batch B per modality at HxW, it times

- ``list``: the public code's design (``benchmarks/list_baseline.py``: one module call per
  modality, per-modality norms, boolean-index exchange, torch's stock max pooling) with the
  same weights, its outputs checked equal to the stacked model's before any timing;
- ``unimodal``: the same network on one modality (the list twin of a 1-modality model: plain
  norms, no exchange, no ensemble, cenfusion's max pooling), batch B;
- the stacked cenfusion model under each ``--options`` entry: ``fp32`` (the default path),
  ``channels_last``, ``bf16`` (autocast), ``compile`` (``torch.compile``, inductor) and
  ``fast`` (the host's own choice of ``train.speed: fast``, printed) and ``fast+compile`` (that
  choice with ``torch.compile`` on top, to see whether it would pay), the last five through the
  switches users set (:mod:`cenfusion.engine.speed`, ``autocast_context``), each checked
  against ``fp32`` first.

Two modes: ``infer`` (eval, no_grad; throughput in samples/s) and ``train`` (train mode,
forward + backward + optimiser step: SGD with momentum for segmentation, Adam for the
generator; the loss is the mean square of every output). Variants are timed round-robin and the
median of ``--repeats`` runs after ``--warmup`` is reported. Peak memory is measured in a
fresh process (``--no-memory`` skips it): on the CPU one process per variant and the largest
resident set size of that process sampled every millisecond during one step after a warm-up
step (glibc told to return freed blocks, so that the RSS follows the live tensors; it includes
the interpreter and torch, alike for every variant); on CUDA one process per model and M, the
variants in turn, and ``torch.cuda.max_memory_allocated`` (exact: the allocator counts every
live tensor). On CUDA cuDNN's autotuner is on (``cudnn.benchmark``) and TF32 keeps torch's
defaults for the timings; the parity checks run in full fp32. With ``--json`` the file is
rewritten after every model and M (``"complete": false`` until the end), so that a run cut
short keeps what it measured.

Ratios: ``vs list`` = list time / variant time (> 1: faster than the list design);
``overhead`` = variant time / (M x unimodal time), the cost of fusion beyond running M networks;
``mem vs list`` = variant peak / list peak. Every ratio is against the fp32 list and unimodal
runs. The JSON holds the settings, the machine (CPU/GPU, threads, load average before and
after: a busy machine distorts every figure), every row and the speed targets.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from benchmarks.list_baseline import list_twin

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
OPTIONS = ("fp32", "channels_last", "bf16", "compile", "fast", "fast+compile")
BASELINES = ("list", "unimodal")


@dataclass(frozen=True)
class ModelSpec:
    task: str
    backbone: str = "resnet50"
    description: str = ""


MODELS: dict[str, ModelSpec] = {
    "refinenet-resnet50": ModelSpec("segmentation", "resnet50", "RefineNet, ResNet-50, 40 classes"),
    "refinenet-resnet101": ModelSpec(
        "segmentation", "resnet101", "RefineNet, ResNet-101, 40 classes"
    ),
    "pix2pix": ModelSpec("translation", description="pix2pix U-Net generator, ngf 64, 8 downs"),
}


@dataclass
class Settings:
    """What is measured; ``--quick`` shrinks the networks and images, never the method."""

    models: list[str] = field(default_factory=lambda: list(MODELS))
    modalities: list[int] = field(default_factory=lambda: [2, 3, 4])
    options: list[str] = field(default_factory=lambda: ["fp32"])
    modes: list[str] = field(default_factory=lambda: ["infer", "train"])
    batch_size: int = 2
    size: int = 256
    warmup: int = 1
    repeats: int = 5
    device: str = "cpu"
    threads: int | None = None
    memory: bool = True
    quick: bool = False
    decoder_channels: tuple[int, int] = (512, 256)
    ngf: int = 64
    num_downs: int = 8
    num_classes: int = 40


QUICK = {
    "models": ["refinenet-resnet50", "pix2pix"],
    "modalities": [2],
    "batch_size": 1,
    "size": 64,
    "warmup": 1,
    "repeats": 2,
    "decoder_channels": (32, 32),
    "ngf": 8,
    "num_downs": 6,
}


# --- the networks ----------------------------------------------------------------------------


def build_cen(name: str, num_modalities: int, settings: Settings) -> nn.Module:
    """The cenfusion network of ``name`` over M modalities, seeded, with ~30 % of its scaling
    factors below the threshold so that the exchange really runs."""
    import cenfusion

    spec = MODELS[name]
    torch.manual_seed(0)
    if spec.task == "segmentation":
        model = cenfusion.create_model(
            task="segmentation",
            arch="refinenet",
            backbone=spec.backbone,
            num_classes=settings.num_classes,
            modalities=num_modalities,
            decoder_channels=settings.decoder_channels,
        )
    else:
        model = cenfusion.create_model(
            task="translation",
            modalities=num_modalities,
            ngf=settings.ngf,
            num_downs=settings.num_downs,
        ).generator
    realistic_scaling_factors(model)
    return model.to(settings.device)


def realistic_scaling_factors(model: nn.Module, seed: int = 0) -> None:
    """~30 % of every private norm's scaling factors below its exchange threshold."""
    from cenfusion.nn.norm import ModalityNorm

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, ModalityNorm):
                threshold = module.exchange_threshold or 2e-2
                u = torch.rand(module.weight.shape, generator=generator)
                module.weight.copy_(torch.where(u < 0.3, u * threshold, 0.5 + u))


@dataclass
class Variant:
    """One thing to time: a network, how to call it, its inputs and its optimiser."""

    name: str
    model: nn.Module
    call: Callable[[Any], Any]
    inputs: Any
    optimiser: torch.optim.Optimizer
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext

    def outputs(self) -> list[Tensor]:
        with self.autocast():
            out = self.call(self.inputs)
        return list(out.values()) if isinstance(out, dict) else list(out)

    def infer(self) -> None:
        with torch.no_grad():
            self.outputs()

    def train_step(self) -> None:
        loss = sum(o.float().square().mean() for o in self.outputs())
        loss.backward()
        self.optimiser.step()
        self.optimiser.zero_grad(set_to_none=True)


def make_variant(
    variant: str, cen: nn.Module, name: str, num_modalities: int, settings: Settings
) -> Variant:
    """``list``, ``unimodal`` or a stacked option, with its own copy of the weights."""
    from cenfusion.config import TrainConfig
    from cenfusion.engine.speed import (
        apply_speed_options,
        choose_settings,
        host_capabilities,
        prepare_inputs,
    )

    device, batch = settings.device, settings.batch_size
    images = example_images(num_modalities, settings)
    if variant in BASELINES:
        if variant == "list":
            model, inputs = list_twin(cen), images
        else:
            model, inputs = list_twin(build_cen(name, 1, settings), stock_pooling=False), images[:1]
        return Variant(variant, model, model, inputs, _optimiser(model, name))
    if variant not in OPTIONS:
        raise ValueError(f"variant: expected one of {BASELINES + OPTIONS}, got {variant!r}")
    model = copy.deepcopy(cen)
    config = TrainConfig(channels_last=variant == "channels_last", compile=variant == "compile")
    bf16 = variant == "bf16"
    if variant in ("fast", "fast+compile"):  # the host's own choice (engine.speed)
        chosen = choose_settings("training", "fast", host_capabilities(device))
        print(f"fast on this host: {chosen.describe()}", flush=True)
        # fast+compile: that choice with torch.compile on top, to check it would not pay
        compiled = chosen.compile or variant == "fast+compile"
        config = TrainConfig(channels_last=chosen.channels_last, compile=compiled)
        bf16 = chosen.precision == "bf16"
    call = apply_speed_options(model, config)
    inputs = prepare_inputs(torch.cat(images), config)
    autocast = contextlib.nullcontext
    if bf16:
        device_type = torch.device(device).type
        autocast = functools.partial(torch.autocast, device_type, dtype=torch.bfloat16)
    assert inputs.shape[0] == num_modalities * batch
    return Variant(variant, model, call, inputs, _optimiser(model, name), autocast)


def example_images(num_modalities: int, settings: Settings) -> list[Tensor]:
    generator = torch.Generator().manual_seed(1)
    shape = (settings.batch_size, 3, settings.size, settings.size)
    return [
        torch.randn(shape, generator=generator).to(settings.device) for _ in range(num_modalities)
    ]


def _optimiser(model: nn.Module, name: str) -> torch.optim.Optimizer:
    """The paper's optimisers: SGD with momentum (segmentation), Adam (translation)."""
    if MODELS[name].task == "segmentation":
        return torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-5)
    return torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.5, 0.999))


def parity(reference: Variant, other: Variant) -> float:
    """Relative L2 error of ``other``'s eval outputs against ``reference``'s (all outputs), in
    full fp32 (no TF32 on CUDA, whose 10-bit mantissa differs by ~1e-3 between algorithms)."""
    reference.model.eval()
    other.model.eval()
    with torch.no_grad(), full_fp32():
        ours = torch.cat([o.float().flatten() for o in reference.outputs()])
        theirs = torch.cat([o.float().flatten() for o in other.outputs()])
    return float((ours - theirs).norm() / ours.norm().clamp_min(1e-12))


@contextlib.contextmanager
def full_fp32():
    """TF32 off for the block (CUDA's matmul and cuDNN); nothing changes on the CPU."""
    previous = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous


TOLERANCE = {"list": 1e-5, "channels_last": 1e-4, "compile": 1e-4, "bf16": 5e-2, "fast": 5e-2,
             "fast+compile": 5e-2}  # fmt: skip


# --- timing and memory -------------------------------------------------------------------------


def synchronise(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def interleaved_medians(
    fns: dict[str, Callable[[], object]], warmup: int, repeats: int, device: str
) -> dict[str, float]:
    """Median seconds of each function, timed round-robin so machine drift hits all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            synchronise(device)
            start = time.perf_counter()
            fn()
            synchronise(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


class PeakRSS:
    """The largest resident set size (bytes) seen while the block runs, sampled every ms."""

    def __init__(self, interval: float = 1e-3) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def rss(self) -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * self._page

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self.peak = self.rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def peak_memory_mb(fn: Callable[[], object], device: str) -> float:
    """Peak memory of one call: RSS on the CPU, ``max_memory_allocated`` on CUDA, in MiB."""
    if torch.device(device).type == "cuda":
        synchronise(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        synchronise(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    with PeakRSS() as peak:
        fn()
    return peak.peak / 2**20


def memory_child(payload: dict[str, Any]) -> dict[str, dict[str, float]]:
    """In a fresh process: the peak memory of inference and of a training step of each of
    ``payload["variants"]`` (the suite passes one), after a warm-up step (the compilation, for
    ``compile``)."""
    settings = Settings(**payload["settings"])
    _set_threads(settings)
    name, num_modalities = payload["model"], payload["modalities"]
    peaks = {}
    for v in payload["variants"]:
        cen = build_cen(name, num_modalities, settings)
        variant = make_variant(v, cen, name, num_modalities, settings)
        del cen
        peaks[v] = {}
        for mode in settings.modes:
            variant.model.train(mode == "train")
            step = variant.infer if mode == "infer" else variant.train_step
            step()
            peaks[v][mode] = peak_memory_mb(step, settings.device)
        del variant
        gc.collect()
        if torch.device(settings.device).type == "cuda":
            torch.cuda.empty_cache()
    return peaks


def measure_memory(
    name: str, num_modalities: int, variants: Sequence[str], settings: Settings
) -> dict[str, dict[str, float]]:
    """Run :func:`memory_child` in a new interpreter, where glibc hands every block of 64 KiB
    or more straight back to the OS when freed (a fixed mmap threshold), so that the RSS
    follows the live tensors (the timing process keeps the default allocator)."""
    payload = {
        "model": name,
        "modalities": num_modalities,
        "variants": list(variants),
        "settings": asdict(settings),
    }
    env = dict(os.environ)
    env["MALLOC_MMAP_THRESHOLD_"] = str(64 * 1024)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--memory-child", json.dumps(payload)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"memory of {name} M={num_modalities}: {result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- the suite ---------------------------------------------------------------------------------


def run_group(name: str, num_modalities: int, settings: Settings) -> list[dict[str, Any]]:
    """Every variant of one model at one M: parity checks, timings, memory; one row each."""
    cen = build_cen(name, num_modalities, settings)
    names = ["list", "unimodal", *settings.options]
    variants = {v: make_variant(v, cen, name, num_modalities, settings) for v in names}
    del cen
    errors = {}
    for v in ["list", *settings.options]:
        if v == "fp32":
            continue
        errors[v] = parity(variants["fp32"], variants[v])
        if errors[v] > TOLERANCE[v]:
            raise AssertionError(
                f"{name} M={num_modalities}: {v} differs from the stacked fp32 model by a "
                f"relative L2 error of {errors[v]:.2e} (tolerance {TOLERANCE[v]:.0e})"
            )
    times: dict[str, dict[str, float]] = {}
    for mode in settings.modes:
        for variant in variants.values():
            variant.model.train(mode == "train")
        fns = {
            v: (variant.infer if mode == "infer" else variant.train_step)
            for v, variant in variants.items()
        }
        times[mode] = interleaved_medians(fns, settings.warmup, settings.repeats, settings.device)
    del variants
    memory = {}
    if settings.memory and torch.device(settings.device).type == "cuda":
        # the CUDA allocator counts live tensors exactly: one process, variant after variant
        memory = measure_memory(name, num_modalities, names, settings)
    elif settings.memory:
        # one process per variant: each peak is that of a process running only that variant
        memory = {v: measure_memory(name, num_modalities, [v], settings)[v] for v in names}
    rows = []
    for mode in settings.modes:
        t = times[mode]
        for v in names:
            m = 1 if v == "unimodal" else num_modalities
            row = {
                "model": name,
                "modalities": num_modalities,
                "mode": mode,
                "variant": v,
                "ms": t[v] * 1e3,
                "samples_per_s": settings.batch_size / t[v],
                "speedup_vs_list": t["list"] / t[v],
                "fusion_overhead": t[v] / (m * t["unimodal"]),
                "rel_error_vs_fp32": errors.get(v, 0.0 if v == "fp32" else None),
            }
            if memory:
                row["peak_mb"] = memory[v][mode]
                row["mem_vs_list"] = memory[v][mode] / memory["list"][mode]
            rows.append(row)
    return rows


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The speed targets for the stacked fp32 model, one verdict per model, M and mode."""
    checks = []
    for row in rows:
        if row["variant"] != "fp32":
            continue
        mode, m = row["mode"], row["modalities"]
        wanted = []
        if mode == "infer":
            wanted.append(("infer speed-up vs list", row["speedup_vs_list"], 1.5, ">="))
        elif m in (2, 3):
            need = 1.5 if m == 2 else 2.0
            wanted.append(("train speed-up vs list", row["speedup_vs_list"], need, ">="))
        if mode == "train" and "mem_vs_list" in row:
            wanted.append(("train peak memory vs list", row["mem_vs_list"], 1.0, "<="))
        wanted.append((f"{mode} fusion overhead", row["fusion_overhead"], 1.10, "<="))
        checks += [_check(row["model"], m, *w) for w in wanted]
    return checks


def _check(model: str, m: int, what: str, value: float, bound: float, op: str) -> dict[str, Any]:
    holds = value >= bound if op == ">=" else value <= bound
    target = f"{what} {op} {bound}"
    return {"model": model, "modalities": m, "target": target, "value": value, "holds": holds}


def machine_info(settings: Settings) -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": settings.device,
        "cpu_bf16_hardware": _cpu_bf16(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": _git("rev-parse", "HEAD"),
        "dirty": bool(_git("status", "--porcelain")),
    }
    if torch.device(settings.device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(settings.device)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
        info["cudnn_benchmark"] = torch.backends.cudnn.benchmark
        info["tf32"] = {
            "matmul": torch.backends.cuda.matmul.allow_tf32,
            "cudnn": torch.backends.cudnn.allow_tf32,
        }
    return info


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _cpu_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return ""
    return out.stdout.strip()


def _load() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _set_threads(settings: Settings) -> None:
    """Thread count on the CPU; on CUDA, cuDNN's autotuner, which any GPU user switches on
    (each variant's convolutions get their fastest algorithm during the warm-up)."""
    if settings.threads:
        torch.set_num_threads(settings.threads)
    if torch.device(settings.device).type == "cuda":
        torch.backends.cudnn.benchmark = True


def run(settings: Settings, out: Path | None = None, echo: bool = True) -> dict[str, Any]:
    """Run the suite; print the table, write the JSON (``out``), return its payload."""
    _set_threads(settings)
    if "fp32" not in settings.options:  # the reference of every other option
        settings.options = ["fp32", *settings.options]
    warnings.filterwarnings("ignore", message=".*bf16.*")
    load_before = _load()
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []

    def payload(complete: bool) -> dict[str, Any]:
        machine = {**machine_info(settings), "load_before": load_before, "load_after": _load()}
        return {
            "settings": {
                k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()
            },
            "machine": machine,
            "complete": complete,
            "seconds": time.perf_counter() - started,
            "rows": rows,
            "targets": targets(rows),
        }

    for name in settings.models:
        for m in settings.modalities:
            group = run_group(name, m, settings)
            rows += group
            if echo:
                print(format_table(group, header=not rows[: -len(group)]), flush=True)
            if out is not None:  # a run cut short keeps every finished group
                write_json(out, payload(complete=False))
    result = payload(complete=True)
    if echo:
        print()
        print(format_targets(result["targets"]))
    if out is not None:
        write_json(out, result)
        if echo:
            print(f"\nwrote {out}")
    return result


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(partial, path)


def format_table(rows: Sequence[dict[str, Any]], header: bool = True) -> str:
    """One line per model, M, mode and variant."""
    lines = []
    if header:
        title = (
            f"{'model':<20}{'M':>2} {'mode':<6}{'variant':<14}{'ms':>10}{'samples/s':>11}"
            f"{'vs list':>9}{'overhead':>10}"
        )
        if any("peak_mb" in r for r in rows):
            title += f"{'peak MiB':>10}{'mem/list':>10}"
        lines += [title, "-" * len(title)]
    for r in rows:
        peak = f"{r['peak_mb']:>10.0f}{r['mem_vs_list']:>10.2f}" if "peak_mb" in r else ""
        lines.append(
            f"{r['model']:<20}{r['modalities']:>2} {r['mode']:<6}{r['variant']:<14}"
            f"{r['ms']:>10.1f}{r['samples_per_s']:>11.2f}{r['speedup_vs_list']:>8.2f}x"
            f"{r['fusion_overhead']:>10.3f}{peak}"
        )
    return "\n".join(lines)


def format_targets(checks: Sequence[dict[str, Any]]) -> str:
    lines = ["targets (stacked fp32):"]
    for c in checks:
        verdict = "holds" if c["holds"] else "MISSED"
        lines.append(
            f"  {c['model']:<20} M={c['modalities']}  {c['target']:<36} {c['value']:>7.3f}  "
            f"{verdict}"
        )
    return "\n".join(lines)


def format_markdown(payload: dict[str, Any]) -> str:
    """The README's table: one line per model, M and mode; options as extra columns."""
    rows = payload["rows"]
    options = payload["settings"]["options"]
    extra = [o for o in options if o != "fp32"]
    has_memory = any("peak_mb" in r for r in rows)
    head = ["model", "M", "mode", "list ms", "unimodal ms", "stacked ms", "vs list", "overhead"]
    head += [f"{o} ms (vs list{', peak' if has_memory else ''})" for o in extra]
    if has_memory:
        head += ["peak MiB list / stacked"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    index = {(r["model"], r["modalities"], r["mode"], r["variant"]): r for r in rows}
    groups = sorted({k[:3] for k in index}, key=lambda k: (list(MODELS).index(k[0]), k[1], k[2]))
    for model, m, mode in groups:
        found = {v: r for (mo, mm, md, v), r in index.items() if (mo, mm, md) == (model, m, mode)}
        get = found.get
        stacked = get("fp32")
        cells = [model, str(m), mode, f"{get('list')['ms']:.0f}", f"{get('unimodal')['ms']:.0f}"]
        if stacked:
            cells += [
                f"{stacked['ms']:.0f}",
                f"{stacked['speedup_vs_list']:.2f}x",
                f"{stacked['fusion_overhead']:.2f}",
            ]
        else:
            cells += ["", "", ""]
        for o in extra:
            r = get(o)
            memory = f", {r['peak_mb']:.0f} MiB" if r and "peak_mb" in r else ""
            cells.append(f"{r['ms']:.0f} ({r['speedup_vs_list']:.2f}x{memory})" if r else "")
        if has_memory:
            ref = stacked or get(extra[0]) if extra else stacked
            cells.append(f"{get('list')['peak_mb']:.0f} / {ref['peak_mb']:.0f}" if ref else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(
    argv: Sequence[str] | None = None, prog: str = "python -m benchmarks.run"
) -> tuple[Settings, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="CEN models against the list-of-tensors design and the unimodal network: "
        "inference throughput, training-step time and peak memory.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a tiny configuration (64x64, batch 1, M=2, narrow networks) to check the suite "
        "in under a minute; its figures say nothing about speed",
    )
    parser.add_argument("--models", nargs="+", choices=list(MODELS))
    parser.add_argument("--modalities", nargs="+", type=int, metavar="M")
    parser.add_argument("--options", nargs="+", choices=OPTIONS, help="default: fp32")
    parser.add_argument(
        "--modes", nargs="+", choices=("infer", "train"), help="default: infer train"
    )
    parser.add_argument("--batch-size", type=int, help="samples per modality (default 2)")
    parser.add_argument("--size", type=int, help="height = width of the images (default 256)")
    parser.add_argument("--warmup", type=int, help="untimed runs of each variant (default 1)")
    parser.add_argument("--repeats", type=int, help="timed runs; the median counts (default 5)")
    parser.add_argument("--device", help="cpu or cuda[:k] (default: cuda if available)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--markdown", action="store_true", help="also print the README table")
    parser.add_argument(
        "--speed",
        choices=("exact", "fast"),
        help="fast: add the host's own choice (the fast option) to the options measured",
    )
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.speed == "fast":
        args.options = [*(args.options or ["fp32"]), "fast"]
    values: dict[str, Any] = dict(QUICK) if args.quick else {}
    keys = ("models", "modalities", "options", "modes", "batch_size", "size", "warmup", "repeats")
    for key in keys:
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    settings = Settings(
        **values, device=device, threads=args.threads, memory=not args.no_memory,
        quick=args.quick,
    )  # fmt: skip
    if any(m < 1 for m in settings.modalities) or settings.repeats < 1 or settings.warmup < 0:
        parser.error("--modalities must be >= 1, --repeats >= 1 and --warmup >= 0")
    return settings, args


def main(argv: Sequence[str] | None = None, prog: str = "python -m benchmarks.run") -> int:
    """The command line; ``prog`` names it in the help (``cenfusion bench`` calls it too)."""
    settings, args = parse_args(argv, prog)
    if args.memory_child:
        print(json.dumps(memory_child(json.loads(args.memory_child))))
        return 0
    payload = run(settings, args.json)
    if args.markdown:
        print()
        print(format_markdown(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
