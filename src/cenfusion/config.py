"""Run configuration: a YAML file validated into typed dataclasses, plus ``key=value`` overrides.

A key has one name from YAML to command-line override to object field: ``train.batch_size: 4``
in the file, ``train.batch_size=4`` on the command line, ``config.train.batch_size`` in code.
Unknown keys and values of the wrong type are refused with the dotted key and what was
expected, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class ModelConfig:
    arch: str = "refinenet"
    backbone: str = "resnet50"
    num_classes: int = 40
    modalities: list[str] = field(default_factory=lambda: ["rgb", "depth"])
    bn_threshold: float = 2e-2
    exchange: bool = True
    exchange_norms: list[str] | None = None
    pretrained: str | None = None
    output_stride: int | None = None
    rcu_residual: str = "activated"
    decoder_channels: list[int] | None = None  # RefineNet (deepest, other); None = (512, 256)
    # baselines and ablations (cenfusion.models.fusion): cen | concat | average | align |
    # self_attention, after early | middle | late | all stages (or a list of stage numbers)
    fusion: str = "cen"
    fusion_stages: str | list[int] = "all"
    share_convs: bool = True  # False: every modality its own convolutions (segmentation)
    private_norms: bool = True  # False: one BatchNorm shared by all modalities (segmentation)
    # translation (task: translation, arch: pix2pix); modalities are the input domains
    target: str | None = None  # the output domain
    ngf: int = 64
    ndf: int = 64
    num_downs: int = 8
    insnorm_threshold: float = 1e-2


@dataclass
class DataConfig:
    format: str = "nyudv2"  # nyudv2 | sunrgbd | folder; translation: taskonomy | folder
    root: str = "data/nyudv2"
    train_list: str = "train.txt"
    val_list: str = "val.txt"
    depth_scale: float = 1 / 5000
    ignore_index: int = 255
    allow_8bit_depth: bool = False
    crop_size: list[int] = field(default_factory=lambda: [500, 500])
    scale_range: list[float] = field(default_factory=lambda: [0.5, 2.0])
    min_short_side: int = 350
    flip_prob: float = 0.5
    val_resize: list[int] | None = None
    workers: int = 0
    label_folder: str = "label"  # folder format: the label folder
    label_ext: str = "png"  # folder format
    # folder format: per modality, keyword arguments of cenfusion.data.segmentation.Modality
    # (channels, scale, mean, std, norm, interpolation, pad_value, folder, ext, ...);
    # translation: per domain (inputs and target), fields of cenfusion.data.translation.Domain
    # (log, min_value, max_value, interpolation, folder, ext)
    modality_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    load_size: list[int] = field(default_factory=lambda: [286, 286])  # translation: resize, crop


@dataclass
class StageConfig:
    epochs: int = 100
    encoder_lr: float = 5e-4
    decoder_lr: float = 3e-3


@dataclass
class OptimConfig:
    stages: list[StageConfig] = field(default_factory=lambda: [StageConfig()])
    momentum: float = 0.9
    weight_decay: float = 1e-5
    # translation: Adam for the generator and the discriminator
    generator_lr: float = 2e-4
    discriminator_lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])


@dataclass
class TrainConfig:
    batch_size: int = 6
    lam: float = 2e-4
    sparsity: str = "disjoint"  # none | disjoint | all
    l1_per_output: bool = False  # public-code compatibility: the L1 term once per output
    align_weight: float = 0.1  # weight of the MMD loss of model.fusion: align
    freeze_bn: bool = False
    seed: int = 0
    precision: str = "fp32"  # fp32 | bf16
    channels_last: bool = False
    eval_every: int = 1
    max_steps_per_epoch: int | None = None
    # translation (segmentation's schedule is optim.stages)
    epochs: int = 300
    l1_weight: float = 100.0  # weight of the L1 reconstruction term of every output
    sample_every: int = 1  # epochs between sample grids (0: none)
    sample_images: int = 4  # validation images in a sample grid


@dataclass
class EvalConfig:
    scales: list[float] = field(default_factory=lambda: [1.0])
    flip: bool = False
    logits_resize: str = "bilinear"  # bilinear | bicubic (the public code)
    batch_size: int = 1
    # translation: FID/KID need pytorch-fid's pt_inception-2015-12-05-6726825d.pth (local path)
    inception_weights: str | None = None
    generator_mode: str = "eval"  # eval (running statistics) | train (the public code)
    kid_subsets: int = 50
    kid_subset_size: int = 1000


@dataclass
class Config:
    task: str = "segmentation"
    output_dir: str = "runs/default"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or the defaults) and apply ``dotted.key=value`` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config {str(path)!r} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"config {str(path)!r} is not valid YAML: {error}") from error
        if not isinstance(data, dict):
            raise ValueError(f"config {str(path)!r}: expected a mapping at the top level")
    for override in overrides or []:
        apply_override(data, override)
    return from_dict(Config, data, where=str(path) if path else "config")


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
