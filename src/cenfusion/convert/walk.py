"""Module replacement: find a model's norms, check each can be converted, swap in private twins.

Which torch layers become what (every other layer, convolutions and linears included, is kept
and shared by the modalities, since it treats the samples of the stacked batch independently):

- ``BatchNorm2d`` (affine, running statistics) -> :class:`~cenfusion.nn.ModalityBatchNorm2d`
- ``InstanceNorm2d`` (affine) -> :class:`~cenfusion.nn.ModalityInstanceNorm2d` with running
  statistics, else :class:`~cenfusion.convert.ModalityInstanceNorm2dNoStats`
- ``GroupNorm`` (affine) -> :class:`~cenfusion.convert.ModalityGroupNorm`

A per-sample norm with neither parameters nor running statistics (``GroupNorm``,
``InstanceNorm``, ``LayerNorm`` with ``affine=False``, ``LocalResponseNorm``) already computes
what one copy per modality would, so it stays as it is. Everything else that normalises is
refused with the layer's name and the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm
from torch.nn.modules.lazy import LazyModuleMixin

from cenfusion.nn.norm import ModalityNorm

CONVERTIBLE_NORMS: tuple[type[nn.Module], ...] = (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)
"""The torch norms that get one set of parameters per modality."""

NORM_TYPES: tuple[type[nn.Module], ...] = (
    _BatchNorm,
    _InstanceNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)
"""Every torch norm: the tracer keeps them as single nodes, the walk judges each one."""

ExchangeAfter = str | Iterable[str] | Callable[[str, nn.Module], bool] | None


def _is_stateless(norm: nn.Module) -> bool:
    """No parameters and no running statistics: a per-sample norm that needs no private copy."""
    return next(norm.parameters(recurse=False), None) is None and not any(
        buffer is not None and name != "num_batches_tracked"
        for name, buffer in norm.named_buffers(recurse=False)
    )


def _forward_overridden(norm: nn.Module) -> bool:
    base = next(t for t in (*CONVERTIBLE_NORMS, *NORM_TYPES) if isinstance(norm, t))
    return type(norm).forward is not base.forward


def conversion_problem(module: nn.Module) -> str | None:
    """Why ``module`` cannot go into a converted model, or ``None`` when it can."""
    if isinstance(module, ModalityNorm):
        return "it is already a per-modality norm: this model has been converted"
    if isinstance(module, LazyModuleMixin) and module.has_uninitialized_params():
        return "it is a lazy module with uninitialised parameters: run one forward pass first"
    if not isinstance(module, NORM_TYPES):
        return None
    name = type(module).__name__
    if isinstance(module, nn.SyncBatchNorm):
        return "SyncBatchNorm is not supported: use nn.BatchNorm2d (statistics stay per modality)"
    if _forward_overridden(module):
        return (
            f"{name} subclasses a torch norm but overrides forward, so what else it computes is "
            "unknown; replace it by the plain torch norm (and any activation it applies)"
        )
    if isinstance(module, nn.BatchNorm2d):
        if not module.affine:
            return (
                "BatchNorm2d with affine=False has no scaling factors to exchange by, "
                "and its batch statistics would mix the modalities"
            )
        if not module.track_running_stats:
            return (
                "BatchNorm2d with track_running_stats=False normalises by batch statistics "
                "at evaluation; the private BatchNorm keeps running statistics"
            )
        return None
    if isinstance(module, (nn.InstanceNorm2d, nn.GroupNorm)):
        if module.affine or _is_stateless(module):
            return None
        return f"{name} with running statistics but affine=False has no scaling factors"
    if _is_stateless(module):
        return None
    if isinstance(module, _BatchNorm):
        return (
            f"{name}: only 2-d batch norms over (N, C, H, W) have a per-modality version; "
            "batch statistics must not mix the modalities"
        )
    if isinstance(module, _InstanceNorm):
        return f"{name}: only 2-d instance norms over (N, C, H, W) have a per-modality version"
    return (
        f"{name} has shared parameters and no per-modality version in cenfusion "
        "(channel exchanging keeps every norm private to its modality)"
    )


def is_convertible(module: nn.Module) -> bool:
    """True for a norm that becomes a private norm (not one left shared or refused)."""
    return (
        isinstance(module, CONVERTIBLE_NORMS)
        and conversion_problem(module) is None
        and not _is_stateless(module)
    )


def find_norms(model: nn.Module) -> dict[str, nn.Module]:
    """``{qualified name: norm}`` of every norm to convert, after refusing what cannot be.

    Raises ``ValueError`` naming the first layer that cannot be converted and why. A norm
    reachable under several names is listed under its first.
    """
    norms: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        problem = conversion_problem(module)
        if problem is not None:
            raise ValueError(f"cannot convert layer {name or '<root>'!r}: {problem}")
        if is_convertible(module):
            norms[name] = module
    return norms


def replace_modules(model: nn.Module, replacements: Mapping[int, nn.Module]) -> None:
    """Replace every reference to a module (by ``id``) with its replacement, in place.

    Walks all names (duplicates included), so a norm shared by two parents stays shared.
    """
    parents = [module for _, module in model.named_modules(remove_duplicate=False)]
    for parent in parents:
        for child_name, child in list(parent._modules.items()):
            if id(child) in replacements:
                setattr(parent, child_name, replacements[id(child)])


def aliases(model: nn.Module) -> dict[str, nn.Module]:
    """Every qualified name of every module, shared modules under each of their names."""
    return dict(model.named_modules(remove_duplicate=False))


def resolve_sites(
    exchange_after: ExchangeAfter,
    norms: Mapping[str, nn.Module],
    all_names: Mapping[str, nn.Module],
    model_name: str,
) -> list[str]:
    """The names (keys of ``norms``) of the norms that ``exchange_after`` makes exchange sites.

    ``"all"``: every converted norm; a callable: ``predicate(name, norm)`` on the original torch
    norm; an iterable of names (any name a shared norm is reachable under). The default rule
    (``None``) is resolved by the caller, which has the graph.
    """
    if isinstance(exchange_after, str):
        if exchange_after != "all":
            raise ValueError(
                f"exchange_after: expected None, 'all', a list of norm names or a predicate, "
                f"got {exchange_after!r}"
            )
        return list(norms)
    if callable(exchange_after):
        return [name for name, norm in norms.items() if exchange_after(name, norm)]
    if exchange_after is None:
        raise ValueError("exchange_after=None is the default rule; resolve it from the graph")
    wanted = list(exchange_after)
    by_module = {id(norm): name for name, norm in norms.items()}
    sites = []
    for name in wanted:
        if not isinstance(name, str):
            raise ValueError(f"exchange_after: expected names of norms, got {name!r}")
        module = all_names.get(name)
        if module is None or id(module) not in by_module:
            if module is not None and isinstance(module, NORM_TYPES):
                why = "it has no scaling factors (affine=False) and stays shared"
            elif module is not None:
                why = f"it is a {type(module).__name__}, not a norm"
            else:
                why = "there is no such module"
            shown = ", ".join(list(norms)[:12]) + (", ..." if len(norms) > 12 else "")
            raise ValueError(
                f"exchange_after: {name!r} cannot be an exchange site of {model_name}: {why} "
                f"(its convertible norms: {shown or 'none'})"
            )
        sites.append(by_module[id(module)])
    return [name for name in norms if name in set(sites)]
