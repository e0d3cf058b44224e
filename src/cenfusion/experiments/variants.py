"""The methods a comparison trains: CEN, its ablations and the fusion baselines, by name.

A variant is a name plus the config overrides that turn the base config into it, so every
method trains with the same data, schedule, budget and seed. Names:

- ``cen`` — channel exchange with the disjoint-half L1 term (the method).
- ``unimodal`` — one network per modality, each on its modality alone (expands to
  ``unimodal-rgb``, ``unimodal-depth``, ... from the config's modalities).
- ``{concat,average,align,self-attention}-{early,middle,late,all}`` — the baselines of
  :mod:`cenfusion.models.fusion` on the same backbone and decoder, without exchange or L1;
  ``<fusion>-<n>`` puts one after stage ``n`` alone (1-based: ``concat-2`` fuses where CEN's
  first U-Net exchange site is, to tell where a method fuses from how).
- the paper's ablation rows (segmentation): ``unshared-convs``, ``shared-bn``, ``private-bn``,
  ``private-bn-l1`` (disjoint half L1, no exchange), ``cen`` (+ exchange), ``cen-l1-all``
  (L1 on all channels + exchange).
- ``cen-modality-dropout`` (segmentation): CEN trained with ``train.modality_dropout: 0.3``,
  for robustness to a missing camera.
- ``cen-exchange-early`` (segmentation): CEN exchanging in the first stage only
  (``model.exchange_stages=early``), the deeper sites keeping their L1 term: whether the deep
  stages' exchange carries anything.
- ``cen-sites-early`` (segmentation): CEN whose first stage alone has sites
  (``model.site_stages=early``): the deeper norms are plain private norms, neither penalised
  nor exchanging, so they keep every channel: what the L1 term's emptied deep channels cost.
- ``cen-first-block-norm`` (translation): CEN with a norm, and so an exchange site, in the
  U-Net's first encoder block (``model.first_block_norm``; pix2pix has none there): whether
  exchanging where the full-resolution skip starts closes the gap to early fusion.
- ``cen-first-block-plain-norm`` (translation): the same norm in block 1, but no site there
  (``model.first_block_site=false``: no exchange, no L1 term), the other sites CEN's: what
  the norm does without its exchange.

Groups: ``baselines`` (unimodal and every baseline at every stage), ``ablations`` (the six
rows), ``all`` (both).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cenfusion.models.fusion import STAGE_NAMES

if TYPE_CHECKING:
    from cenfusion.tasks.base import Task

BASELINE_FUSIONS = {
    "concat": "concat",
    "average": "average",
    "align": "align",
    "self-attention": "self_attention",
}
EVERY_STAGE = "model.exchange_stages=all"  # CEN's rows exchange everywhere whatever the base
# no exchange anywhere: exchange_stages back to its default, so a partial base does not warn
NO_EXCHANGE = ("model.exchange=false", EVERY_STAGE, "train.sparsity=none")


@dataclass(frozen=True)
class Variant:
    """One method of a comparison: its name, what it is, and how the config becomes it."""

    name: str
    description: str
    overrides: tuple[str, ...]
    backbone_ablation: bool = False  # a switch of the segmentation backbone
    unet_ablation: bool = False  # a switch of the translation U-Net
    modality_dropout: bool = False  # needs the task's train.modality_dropout


FIXED_VARIANTS: dict[str, Variant] = {
    "cen": Variant(
        "cen",
        "CEN: shared convs, private norms, disjoint-half L1, exchange",
        ("model.fusion=cen", "model.exchange=true", EVERY_STAGE, "train.sparsity=disjoint"),
    ),
    "unshared-convs": Variant(
        "unshared-convs",
        "own convs and norms per modality, no L1, no exchange",
        ("model.share_convs=false", *NO_EXCHANGE),
        backbone_ablation=True,
    ),
    "shared-bn": Variant(
        "shared-bn",
        "shared convs, one shared BatchNorm, no L1, no exchange",
        ("model.private_norms=false", *NO_EXCHANGE),
        backbone_ablation=True,
    ),
    "private-bn": Variant(
        "private-bn",
        "shared convs, private norms, no L1, no exchange",
        NO_EXCHANGE,
        backbone_ablation=True,
    ),
    "private-bn-l1": Variant(
        "private-bn-l1",
        "shared convs, private norms, disjoint-half L1, no exchange",
        ("model.exchange=false", EVERY_STAGE, "train.sparsity=disjoint"),
        backbone_ablation=True,
    ),
    "cen-l1-all": Variant(
        "cen-l1-all",
        "CEN with the L1 term on all channels of every modality",
        ("model.exchange=true", EVERY_STAGE, "train.sparsity=all"),
        backbone_ablation=True,
    ),
    "cen-modality-dropout": Variant(
        "cen-modality-dropout",
        "CEN trained with a random modality missing from 30 % of the samples",
        (
            "model.fusion=cen",
            "model.exchange=true",
            EVERY_STAGE,
            "train.sparsity=disjoint",
            "train.modality_dropout=0.3",
        ),  # fmt: skip
        modality_dropout=True,
    ),
    "cen-exchange-early": Variant(
        "cen-exchange-early",
        "CEN exchanging in the first stage only; the deeper sites keep the L1 term",
        (
            "model.fusion=cen",
            "model.exchange=true",
            "model.exchange_stages=early",
            "train.sparsity=disjoint",
        ),  # fmt: skip
        backbone_ablation=True,
    ),
    "cen-sites-early": Variant(
        "cen-sites-early",
        "CEN with sites (L1 term and exchange) in the first stage only; deeper norms plain",
        (
            "model.fusion=cen",
            "model.exchange=true",
            EVERY_STAGE,
            "model.site_stages=early",
            "train.sparsity=disjoint",
        ),  # fmt: skip
        backbone_ablation=True,
    ),
    "cen-first-block-norm": Variant(
        "cen-first-block-norm",
        "CEN with a norm, and so an exchange site, in the U-Net's first block too",
        (
            "model.fusion=cen",
            "model.exchange=true",
            EVERY_STAGE,
            "train.sparsity=disjoint",
            "model.first_block_norm=true",
        ),  # fmt: skip
        unet_ablation=True,
    ),
    "cen-first-block-plain-norm": Variant(
        "cen-first-block-plain-norm",
        "CEN with a norm in the U-Net's first block that neither exchanges nor is penalised",
        (
            "model.fusion=cen",
            "model.exchange=true",
            EVERY_STAGE,
            "train.sparsity=disjoint",
            "model.first_block_norm=true",
            "model.first_block_site=false",
        ),  # fmt: skip
        unet_ablation=True,
    ),
}
ABLATIONS = ("unshared-convs", "shared-bn", "private-bn", "private-bn-l1", "cen", "cen-l1-all")


def baseline_names() -> list[str]:
    return [f"{fusion}-{stage}" for fusion in BASELINE_FUSIONS for stage in STAGE_NAMES]


def _baseline_parts(name: str) -> tuple[str, str] | None:
    """``"concat-early"`` -> ``("concat", "early")``, ``"concat-2"`` -> ``("concat", "2")``;
    None for a name that is no baseline."""
    fusion, _, stage = name.rpartition("-")
    numbered = stage.isascii() and stage.isdigit() and not stage.startswith("0")
    if fusion in BASELINE_FUSIONS and (stage in STAGE_NAMES or numbered):
        return fusion, stage
    return None


def _baseline(fusion: str, stage: str) -> Variant:
    if stage == "all":
        where, stages = "every stage", stage
    elif stage.isdigit():  # one stage by number: a list, which the model checks against its depth
        where, stages = f"stage {stage}", f"[{stage}]"
    else:
        where, stages = f"the {stage} stage", stage
    return Variant(
        f"{fusion}-{stage}",
        f"{fusion} fusion after {where}",
        (f"model.fusion={BASELINE_FUSIONS[fusion]}", f"model.fusion_stages={stages}", *NO_EXCHANGE),
    )


def unimodal_modality(name: str) -> str | None:
    """``"unimodal-rgb"`` -> ``"rgb"``: the one modality a one-input method trains on; None for
    a method that fuses (the naming rule :func:`resolve_variants` builds those methods by)."""
    return name.removeprefix("unimodal-") if name.startswith("unimodal-") else None


def _unimodal(modality: str) -> Variant:
    return Variant(
        f"unimodal-{modality}",
        f"{modality} alone (same network, one modality)",
        (f"model.modalities=[{modality}]", *NO_EXCHANGE),
    )


def resolve_task_variants(
    names: Sequence[str], modalities: Sequence[str], task: Task
) -> list[Variant]:
    """:func:`resolve_variants` with the switches the task declares (its backbone and U-Net
    ablations, its modality dropout), so callers name the task, not each switch."""
    return resolve_variants(
        names,
        modalities,
        task.backbone_ablations,
        task.modality_dropout,
        task.unet_ablations,
    )


def resolve_variants(
    names: Sequence[str],
    modalities: Sequence[str],
    backbone_ablations: bool = True,
    modality_dropout: bool = True,
    unet_ablations: bool = False,
) -> list[Variant]:
    """Expand groups and ``unimodal``; refuse unknown names, the backbone ablations when the
    task has no such backbone (``backbone_ablations=False``: translation), the U-Net's when it
    has no U-Net (``unet_ablations=False``: segmentation) and the variants that need
    ``train.modality_dropout`` when the task has none."""
    groups = {
        "all": ["cen", "unimodal", *baseline_names(), *ABLATIONS],
        "baselines": ["unimodal", *baseline_names()],
        "ablations": list(ABLATIONS),
    }
    expanded: list[str] = []
    for name in (member for n in names for member in groups.get(n, [n])):
        expanded += [f"unimodal-{m}" for m in modalities] if name == "unimodal" else [name]
    variants: list[Variant] = []
    for name in dict.fromkeys(expanded):  # keep order, drop repeats
        if name in FIXED_VARIANTS:
            variant = FIXED_VARIANTS[name]
        elif (parts := _baseline_parts(name)) is not None:
            variant = _baseline(*parts)
        elif (modality := unimodal_modality(name)) in modalities:
            variant = _unimodal(modality)
        else:
            known = ["all", "baselines", "ablations", "unimodal", *FIXED_VARIANTS]
            raise ValueError(
                f"method {name!r}: expected one of {known}, unimodal-<modality> with a modality "
                f"of the config {list(modalities)}, or <fusion>-<stage> with fusion in "
                f"{list(BASELINE_FUSIONS)} and stage in {list(STAGE_NAMES)} or a stage number"
            )
        if variant.backbone_ablation and not backbone_ablations:
            if name in names:
                raise ValueError(f"method {name!r} is an ablation of the segmentation backbone")
            continue  # a group brought it in: skip it quietly
        if variant.unet_ablation and not unet_ablations:
            raise ValueError(f"method {name!r} is an ablation of the translation U-Net")
        if variant.modality_dropout and not modality_dropout:
            raise ValueError(f"method {name!r} needs train.modality_dropout, which this task lacks")
        variants.append(variant)
    return variants
