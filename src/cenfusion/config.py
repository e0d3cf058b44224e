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
    # refinenet | pspnet (segmentation); pix2pix (translation)
    arch: str = "refinenet"
    # resnet18 | resnet34 | resnet50 | resnet101 | resnet152
    backbone: str = "resnet50"
    # classes of the label maps (ignore_index is not one of them)
    num_classes: int = 40
    # input modalities, in stacking order (translation: the input domains)
    modalities: list[str] = field(default_factory=lambda: ["rgb", "depth"])
    # theta: a channel whose |gamma| falls below it takes the other modalities' mean
    bn_threshold: float = 2e-2
    # false: no exchange, the norms stay L1 sites (the "private BN + L1" ablation)
    exchange: bool = True
    # norms of each residual block that exchange (default bn2 / basic bn1; "all")
    exchange_norms: list[str] | None = None
    # local torchvision-format ImageNet state dict for the backbone (never downloaded)
    pretrained: str | None = None
    # 32 | 16 | 8 (dilated); default 32 for RefineNet, 8 for PSPNet
    output_stride: int | None = None
    # activated: relu(x) + f(relu(x)) as the public code; input: x + f(relu(x))
    rcu_residual: str = "activated"
    # RefineNet (deepest, other) widths, default (512, 256); PSPNet: [width]
    decoder_channels: list[int] | None = None
    # decoder dropout; default 0.5 (RefineNet; pix2pix's first 3 up blocks), 0.1 (PSPNet)
    dropout: float | None = None
    # cen | concat | average | align | self_attention (cenfusion.models.fusion)
    fusion: str = "cen"
    # where a baseline fuses: early | middle | late | all, or stage numbers (1-based)
    fusion_stages: str | list[int] = "all"
    # false: every modality its own convolutions (segmentation ablation)
    share_convs: bool = True
    # false: one BatchNorm shared by all modalities (segmentation ablation)
    private_norms: bool = True
    # translation: the output domain
    target: str | None = None
    # translation: generator width
    ngf: int = 64
    # translation: discriminator width
    ndf: int = 64
    # translation: U-Net depth; image sides must be multiples of 2**num_downs
    num_downs: int = 8
    # translation: theta of the instance norms
    insnorm_threshold: float = 1e-2


@dataclass
class DataConfig:
    # nyudv2 | sunrgbd | folder; translation: taskonomy | folder
    format: str = "nyudv2"
    # the data set folder; list files and image paths are relative to it
    root: str = "data/nyudv2"
    # list file of the training split
    train_list: str = "train.txt"
    # list file of the validation split
    val_list: str = "val.txt"
    # NYUDv2 depth: stored value times this gives metres
    depth_scale: float = 1 / 5000
    # label value that no loss or metric counts
    ignore_index: int = 255
    # accept 8-bit depth PNGs (refused by default: usually a mistake)
    allow_8bit_depth: bool = False
    # training crop (H, W), padded with ignore_index where the image is smaller
    crop_size: list[int] = field(default_factory=lambda: [500, 500])
    # random rescaling range of the training images
    scale_range: list[float] = field(default_factory=lambda: [0.5, 2.0])
    # the rescaled short side is kept at least this long
    min_short_side: int = 350
    # probability of a horizontal flip in training
    flip_prob: float = 0.5
    # validation images resized to (H, W); None: evaluated at their own size
    val_resize: list[int] | None = None
    # DataLoader worker processes
    workers: int = 0
    # folder format: the label folder
    label_folder: str = "label"
    # folder format: the label file extension
    label_ext: str = "png"
    # per modality, keyword arguments of cenfusion.data.segmentation.Modality (channels,
    # scale, mean, std, norm, interpolation, pad_value, folder, ext); translation: fields of
    # cenfusion.data.translation.Domain per domain (log, min_value, max_value, folder, ext)
    modality_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    # translation: images resized to this, then cropped to crop_size
    load_size: list[int] = field(default_factory=lambda: [286, 286])


@dataclass
class StageConfig:
    # epochs of this stage
    epochs: int = 100
    # SGD learning rate of the backbone in this stage
    encoder_lr: float = 5e-4
    # SGD learning rate of the decoder and the ensemble in this stage
    decoder_lr: float = 3e-3


@dataclass
class OptimConfig:
    # segmentation: the schedule, one learning-rate pair per stage
    stages: list[StageConfig] = field(default_factory=lambda: [StageConfig()])
    # SGD momentum (segmentation)
    momentum: float = 0.9
    # SGD weight decay (segmentation)
    weight_decay: float = 1e-5
    # translation: Adam learning rate of the generator
    generator_lr: float = 2e-4
    # translation: Adam learning rate of the discriminator
    discriminator_lr: float = 2e-4
    # translation: Adam betas
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])


@dataclass
class TrainConfig:
    # the global batch of one optimiser step, over all torchrun processes and micro-batches
    batch_size: int = 6
    # lambda, the weight of the L1 term on the penalised scaling factors
    lam: float = 2e-4
    # which scaling factors the L1 term covers: none | disjoint (1/M share each) | all
    sparsity: str = "disjoint"
    l1_per_output: bool = False  # public-code compatibility: the L1 term once per output
    align_weight: float = 0.1  # weight of the MMD loss of model.fusion: align
    # keep the BatchNorm running statistics fixed (the paper's recipe); gamma and beta train
    freeze_bn: bool = False
    # seed of the initialisation, the shuffle order and the augmentation
    seed: int = 0
    # fp32 | bf16 (autocast on CPU and CUDA; slow on CPUs without hardware bf16)
    precision: str = "fp32"
    # channels_last memory format for the model and its inputs
    channels_last: bool = False
    # torch.compile the forward pass (inductor; a C++ compiler on the CPU; minutes of
    # compilation before the first step; see cenfusion.engine.speed)
    compile: bool = False
    # epochs between validations, the last epoch always included (0: no validation)
    eval_every: int = 1
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
    # translation: epochs (segmentation's schedule is optim.stages)
    epochs: int = 300
    # translation: weight of the L1 reconstruction term of every output
    l1_weight: float = 100.0
    # epochs between sample grids of validation predictions in output_dir/samples (0: none)
    sample_every: int = 1
    # validation images in a sample grid
    sample_images: int = 4


@dataclass
class EvalConfig:
    # test-time scales (probabilities averaged over them)
    scales: list[float] = field(default_factory=lambda: [1.0])
    # also average over horizontal flips
    flip: bool = False
    # bilinear | bicubic (the public code) resizing of the logits to the label size
    logits_resize: str = "bilinear"
    # evaluation batch size
    batch_size: int = 1
    # translation: local Inception weights for FID/KID (default: the fid extra's file)
    inception_weights: str | None = None
    # translation: eval (running statistics) | train (the public code)
    generator_mode: str = "eval"
    # translation: KID subsets
    kid_subsets: int = 50
    # translation: KID subset size (capped at the number of images)
    kid_subset_size: int = 1000


@dataclass
class Config:
    # segmentation | translation
    task: str = "segmentation"
    # checkpoints, metrics.jsonl, config.yaml and samples go here
    output_dir: str = "runs/default"
    # the network (below)
    model: ModelConfig = field(default_factory=ModelConfig)
    # the data (below)
    data: DataConfig = field(default_factory=DataConfig)
    # the optimiser (below)
    optim: OptimConfig = field(default_factory=OptimConfig)
    # the training loop (below)
    train: TrainConfig = field(default_factory=TrainConfig)
    # evaluation (below)
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
