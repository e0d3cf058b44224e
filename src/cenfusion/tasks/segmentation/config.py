"""The config sections of ``task: segmentation``: the shared ones plus RefineNet/PSPNet, the
RGB-D data sets, the SGD schedule and test-time augmentation."""

from __future__ import annotations

from dataclasses import dataclass, field

from cenfusion.config import (
    DataConfig,
    EvalConfig,
    ModelConfig,
    OptimConfig,
    TaskSections,
    TrainConfig,
)


@dataclass
class SegmentationModelConfig(ModelConfig):
    # refinenet | pspnet
    arch: str = "refinenet"
    # resnet18 | resnet34 | resnet50 | resnet101 | resnet152
    backbone: str = "resnet50"
    # classes of the label maps (ignore_index is not one of them)
    num_classes: int = 40
    # theta: a channel whose |gamma| falls below it takes the other modalities' mean
    bn_threshold: float = 2e-2
    # norms of each residual block that exchange (default bn2 / basic bn1; "all")
    exchange_norms: list[str] | None = None
    # the stages whose sites stay sites (early | middle | late | all, or 1-based numbers): the
    # other stages' norms are plain private norms, neither under the L1 term nor exchanging
    site_stages: str | list[int] = "all"
    # local torchvision-format ImageNet state dict for the backbone (never downloaded)
    pretrained: str | None = None
    # 32 | 16 | 8 (dilated); default 32 for RefineNet, 8 for PSPNet
    output_stride: int | None = None
    # activated: relu(x) + f(relu(x)) as the public code; input: x + f(relu(x))
    rcu_residual: str = "activated"
    # the backbone's four stage widths, default [64, 128, 256, 512] (narrower: cheaper;
    # ImageNet weights need the default)
    stage_channels: list[int] | None = None
    # RefineNet (deepest, other) widths, default (512, 256); PSPNet: [width], default [512]
    decoder_channels: list[int] | None = None
    # false: every modality its own convolutions (ablation)
    share_convs: bool = True
    # false: one BatchNorm shared by all modalities (ablation)
    private_norms: bool = True


@dataclass
class SegmentationDataConfig(DataConfig):
    # nyudv2 | sunrgbd | folder
    format: str = "nyudv2"
    # the data set folder; list files and image paths are relative to it
    root: str = "data/nyudv2"
    # NYUDv2 depth: stored value times this gives metres
    depth_scale: float = 1 / 5000
    # label value that no loss or metric counts
    ignore_index: int = 255
    # accept 8-bit depth PNGs (refused by default: usually a mistake)
    allow_8bit_depth: bool = False
    # random rescaling range of the training images
    scale_range: list[float] = field(default_factory=lambda: [0.5, 2.0])
    # the rescaled short side is kept at least this long
    min_short_side: int = 350
    # folder format: the label folder
    label_folder: str = "label"
    # folder format: the label file extension
    label_ext: str = "png"


@dataclass
class StageConfig:
    # epochs of this stage
    epochs: int = 100
    # SGD learning rate of the backbone in this stage
    encoder_lr: float = 5e-4
    # SGD learning rate of the decoder and the ensemble in this stage
    decoder_lr: float = 3e-3


@dataclass
class SegmentationOptimConfig(OptimConfig):
    # the schedule, one learning-rate pair per stage
    stages: list[StageConfig] = field(default_factory=lambda: [StageConfig()])
    # SGD momentum
    momentum: float = 0.9
    # SGD weight decay
    weight_decay: float = 1e-5
    # learning-rate multiplier of the exchange sites' scaling factors gamma (1: the paper).
    # A short schedule moves gamma too little for the task to pick channels (the L1 term then
    # only sets when every penalised gamma falls, together); k > 1 trains gamma as k times
    # longer would, with the same balance between the task's pull and lambda
    gamma_lr_multiplier: float = 1.0


@dataclass
class SegmentationTrainConfig(TrainConfig):
    # public-code compatibility: the L1 term once per output (M branches and the ensemble)
    l1_per_output: bool = False
    # keep the BatchNorm running statistics fixed (the paper's recipe); gamma and beta train
    freeze_bn: bool = False
    # robustness to a missing camera: each sample loses one random modality with this
    # probability (never all) and trains as the model of its present modalities would (their
    # statistics, exchange among them, the ensemble over their alpha); CEN's norms only
    modality_dropout: float = 0.0


@dataclass
class SegmentationEvalConfig(EvalConfig):
    # test-time scales (probabilities averaged over them)
    scales: list[float] = field(default_factory=lambda: [1.0])
    # also average over horizontal flips
    flip: bool = False
    # bilinear | bicubic (the public code) resizing of the logits to the label size
    logits_resize: str = "bilinear"


SEGMENTATION_SECTIONS = TaskSections(
    model=SegmentationModelConfig,
    data=SegmentationDataConfig,
    optim=SegmentationOptimConfig,
    train=SegmentationTrainConfig,
    eval=SegmentationEvalConfig,
)
