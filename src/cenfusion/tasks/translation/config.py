"""The config sections of ``task: translation``: the shared ones plus the pix2pix networks, the
Taskonomy layout, the two Adam optimisers and the image metrics."""

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
class TranslationModelConfig(ModelConfig):
    # pix2pix
    arch: str = "pix2pix"
    # the output domain
    target: str | None = None
    # generator width
    ngf: int = 64
    # discriminator width
    ndf: int = 64
    # U-Net depth; image sides must be multiples of 2**num_downs
    num_downs: int = 8
    # theta of the instance norms
    insnorm_threshold: float = 1e-2
    # a norm in the U-Net's first encoder block too (pix2pix and the paper have none there), so
    # that CEN exchanges where the full-resolution skip starts: sites are blocks 1..num_downs-1
    first_block_norm: bool = False
    # with first_block_norm: whether block 1's norm is a site (it exchanges and the L1 term covers
    # it); false keeps it a plain private norm, to measure what the norm alone does
    first_block_site: bool = True


@dataclass
class TranslationDataConfig(DataConfig):
    # taskonomy | folder
    format: str = "taskonomy"
    # the data set folder; list files and image paths are relative to it
    root: str = "data/taskonomy"
    # images resized to this, then cropped to crop_size
    load_size: list[int] = field(default_factory=lambda: [286, 286])


@dataclass
class TranslationOptimConfig(OptimConfig):
    # Adam learning rate of the generator
    generator_lr: float = 2e-4
    # Adam learning rate of the discriminator
    discriminator_lr: float = 2e-4
    # Adam betas
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    # the last N of train.epochs lower both rates linearly towards zero (pix2pix's "linear"
    # policy: decay epoch k = 1..N runs at (1 - k / (N + 1)) x the rate; epochs after the
    # schedule keep the last one); 0: constant rates, the paper's recipe
    decay_epochs: int = 0


@dataclass
class TranslationTrainConfig(TrainConfig):
    # epochs of training
    epochs: int = 300
    # weight of the L1 reconstruction term of every output
    l1_weight: float = 100.0


@dataclass
class TranslationEvalConfig(EvalConfig):
    # local Inception weights for FID/KID (default: the fid extra's file)
    inception_weights: str | None = None
    # eval (running statistics) | train (the public code)
    generator_mode: str = "eval"
    # FID/KID at every validation during training too (false: L1, RMSE, PSNR, SSIM only there;
    # `cenfusion evaluate` and a comparison's test scores still have them)
    fid_in_training: bool = True
    # FID/KID in a comparison's analyses of a trained model too (each input alone, each
    # exchange stage switched off; false: L1, RMSE, PSNR, SSIM only there, its test scores
    # keep them): each such evaluation costs as much as the test scores
    fid_in_analyses: bool = True
    # KID subsets
    kid_subsets: int = 50
    # KID subset size (capped at the number of images)
    kid_subset_size: int = 1000


TRANSLATION_SECTIONS = TaskSections(
    model=TranslationModelConfig,
    data=TranslationDataConfig,
    optim=TranslationOptimConfig,
    train=TranslationTrainConfig,
    eval=TranslationEvalConfig,
)
