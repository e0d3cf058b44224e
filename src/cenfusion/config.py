"""Run configuration: a YAML file validated into typed dataclasses, plus ``key=value`` overrides.

A key has one name from YAML to command-line override to object field: ``train.batch_size: 4``
in the file, ``train.batch_size=4`` on the command line, ``config.train.batch_size`` in code.
Unknown keys and values of the wrong type are refused with the dotted key and what was
expected, so a typo never silently falls back to a default.

The sections here hold what every task shares; each task adds its own fields by subclassing
them and registering the result (:func:`register_task_sections`; the task objects of
:mod:`cenfusion.tasks` do so), so a segmentation config has no translation keys and the other
way round. ``task`` picks the sections a file is read with.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

DEFAULT_TASK = "segmentation"
SECTION_NAMES = ("model", "data", "optim", "train", "eval")


@dataclass
class ModelConfig:
    # the architecture of the task (segmentation: refinenet | pspnet; translation: pix2pix)
    arch: str = ""
    # input modalities, in stacking order (translation: the input domains)
    modalities: list[str] = field(default_factory=lambda: ["rgb", "depth"])
    # false: no exchange, the norms stay L1 sites (the "private BN + L1" ablation)
    exchange: bool = True
    # where the exchange happens: early | middle | late | all, or stage numbers (1-based:
    # ResNet layer1..4; U-Net encoder blocks, whose sites are blocks 2..num_downs-1, so
    # early and late name none there; blocks 1..num_downs-1 with model.first_block_norm);
    # the other sites keep the L1 term but do not exchange; with exchange false it has no
    # effect (a warning); a fusion baseline ignores it
    exchange_stages: str | list[int] = "all"
    # cen | concat | average | align | self_attention (cenfusion.models.fusion)
    fusion: str = "cen"
    # where a baseline fuses: early | middle | late | all, or stage numbers (1-based)
    fusion_stages: str | list[int] = "all"
    # decoder dropout; default 0.5 (RefineNet; pix2pix's first 3 up blocks), 0.1 (PSPNet)
    dropout: float | None = None


@dataclass
class DataConfig:
    # the layout of the data set (segmentation: nyudv2 | sunrgbd | folder; translation:
    # taskonomy | folder)
    format: str = ""
    # the data set folder; list files and image paths are relative to it
    root: str = ""
    # list file of the training split
    train_list: str = "train.txt"
    # list file of the validation split (scores during training, choices of settings)
    val_list: str = "val.txt"
    # list file of the held-out test split (the scores a comparison reports, when present)
    test_list: str = "test.txt"
    # training crop (H, W)
    crop_size: list[int] = field(default_factory=lambda: [500, 500])
    # probability of a horizontal flip in training
    flip_prob: float = 0.5
    # validation images resized to (H, W); None: evaluated at their own size
    val_resize: list[int] | None = None
    # DataLoader worker processes
    workers: int = 0
    # per modality, how it is stored and normalised (segmentation: keyword arguments of
    # cenfusion.data.segmentation.Modality: channels, scale, mean, std, norm, interpolation,
    # pad_value, folder, ext; translation: fields of cenfusion.data.translation.Domain: log,
    # min_value, max_value, folder, ext)
    modality_settings: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class OptimConfig:
    """The optimiser: every field belongs to a task (see its section)."""


@dataclass
class TrainConfig:
    # the global batch of one optimiser step, over all torchrun processes and micro-batches
    batch_size: int = 6
    # lambda, the weight of the L1 term on the penalised scaling factors
    lam: float = 2e-4
    # which scaling factors the L1 term covers: none | disjoint (1/M share each) | all
    sparsity: str = "disjoint"
    align_weight: float = 0.1  # weight of the MMD loss of model.fusion: align
    # seed of the initialisation, the shuffle order and the augmentation
    seed: int = 0
    # exact: precision, channels_last and compile as set here | fast: the host's fastest
    # choice of the three (bf16 + channels_last with bf16 hardware, else fp32; see
    # cenfusion.engine.speed.choose_settings), replacing them
    speed: str = "exact"
    # fp32 | bf16 (autocast on CPU and CUDA; slow on CPUs without hardware bf16)
    precision: str = "fp32"
    # channels_last memory format for the model and its inputs
    channels_last: bool = False
    # torch.compile the forward pass (inductor; a C++ compiler on the CPU; minutes of
    # compilation before the first step; see cenfusion.engine.speed)
    compile: bool = False
    # epochs between validations, the last epoch always included (0: no validation)
    eval_every: int = 1
    # after the schedule, train on at its last rates, one validated epoch at a time, until the
    # ensemble's validation score gained less than converged_gain over the last quarter of all
    # epochs, at most this many epochs more (0: the schedule only)
    until_converged: int = 0
    # the gain that counts as converged, in the task's headline score (segmentation: mIoU as a
    # fraction, 0.005 = 0.5 points; translation: L1, a drop)
    converged_gain: float = 0.005
    # cut every epoch after this many optimiser steps (None: the whole shuffled split)
    max_steps_per_epoch: int | None = None
    # micro-batches per optimiser step: each of N processes trains on batch_size / N samples
    # of a step, in accumulate_steps parts of batch_size / (N * accumulate_steps)
    accumulate_steps: int = 1
    # several processes: batch-norm statistics over all of them (per modality)
    sync_bn: bool = False
    # each sample's augmentation seeded by (seed, epoch, position): the same batches whatever
    # the number of processes or data workers
    per_sample_rng: bool = False
    # deterministic kernels only: bit-identical runs on the CPU
    deterministic: bool = False
    # a NaN/inf loss: stop (an error naming the step) | skip (that step, logged)
    nonfinite: str = "stop"
    # also checkpoint every N optimiser steps (0: after each epoch only)
    checkpoint_every: int = 0
    # also write TensorBoard event files to output_dir/tensorboard (the tensorboard extra)
    tensorboard: bool = False
    # epochs between sample grids of validation predictions in output_dir/samples (0: none)
    sample_every: int = 1
    # validation images in a sample grid
    sample_images: int = 4


@dataclass
class EvalConfig:
    # evaluation batch size
    batch_size: int = 1


@dataclass(frozen=True)
class TaskSections:
    """The section classes of one task (subclasses of the shared ones above)."""

    model: type = ModelConfig
    data: type = DataConfig
    optim: type = OptimConfig
    train: type = TrainConfig
    eval: type = EvalConfig


_TASK_SECTIONS: dict[str, TaskSections] = {}


def register_task_sections(task: str, sections: TaskSections) -> None:
    """Make ``task`` a valid ``task:`` of configs, read with ``sections``."""
    _TASK_SECTIONS[task] = sections


def task_sections(task: str) -> TaskSections:
    """The sections a ``task:`` config is read with."""
    if task not in _TASK_SECTIONS:
        raise ValueError(f"task: expected one of {sorted(_TASK_SECTIONS)}, got {task!r}")
    return _TASK_SECTIONS[task]


def registered_tasks() -> tuple[str, ...]:
    return tuple(_TASK_SECTIONS)


@dataclass
class Config:
    # the task, which decides the fields of every section (segmentation | translation)
    task: str = DEFAULT_TASK
    # checkpoints, metrics.jsonl, config.yaml and samples go here
    output_dir: str = "runs/default"
    # the network
    model: ModelConfig = None  # type: ignore[assignment]
    # the data
    data: DataConfig = None  # type: ignore[assignment]
    # the optimiser
    optim: OptimConfig = None  # type: ignore[assignment]
    # the training loop
    train: TrainConfig = None  # type: ignore[assignment]
    # evaluation
    eval: EvalConfig = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        """Sections not given are the task's defaults (``Config(task="translation")``)."""
        sections = task_sections(self.task)
        for name in SECTION_NAMES:
            if getattr(self, name) is None:
                setattr(self, name, getattr(sections, name)())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def shipped_configs() -> dict[str, Path]:
    """``{name: path}`` of the configs that come with the package (``cenfusion/configs``)."""
    folder = Path(str(resources.files("cenfusion") / "configs"))
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))}


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A config file given as a path, or by the name of a shipped config (with or without
    ``.yaml``): ``synthetic_refinenet18`` is the demo's."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_configs()
    name = path.name.removesuffix(".yaml")
    if len(path.parts) <= 2 and name in shipped and path.parent.name in ("", "configs"):
        return shipped[name]
    raise FileNotFoundError(
        f"config {str(name_or_path)!r} does not exist (neither a file nor a shipped config: "
        f"{', '.join(shipped)})"
    )


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (a path or a shipped config's name; or the defaults) and apply
    ``dotted.key=value`` overrides."""
    data: dict[str, Any] = {}
    where = "config"
    if path is not None:
        file = resolve_config_path(path)
        where = str(path)
        try:
            data = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"config {where!r} is not valid YAML: {error}") from error
        if not isinstance(data, dict):
            raise ValueError(f"config {where!r}: expected a mapping at the top level")
    for override in overrides or []:
        apply_override(data, override)
    return config_from_dict(data, where)


def apply_override(data: dict[str, Any], override: str) -> None:
    """``a.b.c=value`` (value parsed as YAML) into the nested dict ``data``."""
    if "=" not in override:
        raise ValueError(f"override {override!r}: expected dotted.key=value")
    key, raw = override.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"override {override!r}: {part!r} is not a section")
    node[parts[-1]] = yaml.safe_load(raw)


def config_from_dict(data: dict[str, Any], where: str = "config") -> Config:
    """A :class:`Config` from a nested dict (a YAML file's, or a checkpoint's), each section
    read with the classes of its ``task``.

    A key that belongs to another task's section is refused, naming that task, unless it holds
    that task's default: configs written by earlier versions, whose sections held the fields of
    every task, load unchanged.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping for Config, got {data!r}")
    task = data.get("task", DEFAULT_TASK)
    if not isinstance(task, str):
        raise ValueError(f"{where}.task: expected a string, got {task!r}")
    sections = task_sections(task)
    top = [f.name for f in dataclasses.fields(Config)]
    unknown = [k for k in data if k not in top]
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r}; valid keys: {top}")
    values: dict[str, Any] = {"task": task}
    if "output_dir" in data:
        values["output_dir"] = _convert(str, data["output_dir"], f"{where}.output_dir")
    for name in SECTION_NAMES:
        section = data.get(name, {})
        if section is None:
            section = {}
        cls = getattr(sections, name)
        section = _without_other_tasks_defaults(section, name, task, f"{where}.{name}")
        values[name] = from_dict(cls, section, f"{where}.{name}")
    return Config(**values)


def _without_other_tasks_defaults(section: Any, name: str, task: str, where: str) -> Any:
    """``section`` without the keys that only another task's section has, when they hold that
    task's default (see :func:`config_from_dict`); any other value of such a key is an error."""
    if not isinstance(section, dict):
        return section
    own = {f.name for f in dataclasses.fields(getattr(task_sections(task), name))}
    kept = {}
    for key, value in section.items():
        owner = None if key in own else _other_task_with_key(name, key, task)
        if owner is None:
            kept[key] = value
            continue
        cls = getattr(task_sections(owner), name)
        default = _field_default(cls, key)
        try:
            matches = _convert(typing.get_type_hints(cls)[key], value, where) == default
        except ValueError:
            matches = False
        if not matches:
            raise ValueError(
                f"{where}.{key} is a setting of {owner}, not of {task} (task: {task}); "
                f"valid keys: {sorted(own)}"
            )
    return kept


def _other_task_with_key(section: str, key: str, task: str) -> str | None:
    for other, sections in _TASK_SECTIONS.items():
        if other != task and key in {
            f.name for f in dataclasses.fields(getattr(sections, section))
        }:
            return other
    return None


def _field_default(cls: type, name: str) -> Any:
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            return f.default
    raise KeyError(name)


def from_dict(cls: type, data: Any, where: str) -> Any:
    """Build dataclass ``cls`` from ``data``, checking keys and types recursively."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping for {cls.__name__}, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r}; valid keys: {names}")
    values = {name: _convert(hints[name], data[name], f"{where}.{name}") for name in data}
    return cls(**values)


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(option, value, where)
            except ValueError as error:
                errors.append(str(error))
        raise ValueError(errors[0])
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        return [_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is Any:
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    return value
