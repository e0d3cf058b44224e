"""``convert``: any CNN built from standard layers -> its multimodal CEN version."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence

from torch import fx, nn

from cenfusion.convert import fx as fx_path
from cenfusion.convert.model import MultimodalModel
from cenfusion.convert.norms import modality_norm_from
from cenfusion.convert.sites import default_sites
from cenfusion.convert.walk import (
    ExchangeAfter,
    aliases,
    find_norms,
    replace_modules,
    resolve_sites,
)


def convert(
    model: nn.Module,
    modalities: Sequence[str] | int,
    bn_threshold: float = 2e-2,
    exchange_after: ExchangeAfter = None,
    *,
    exchange: bool = True,
    prediction: bool | None = None,
    in_channels: int | None = None,
) -> MultimodalModel:
    """A multimodal CEN version of ``model``: shared layers, private norms, channel exchange.

    Every convolution, linear and other layer stays shared by the modalities; every affine
    ``BatchNorm2d`` / ``InstanceNorm2d`` / ``GroupNorm`` becomes a per-modality norm whose rows
    all start as the original (so a pretrained model starts where it was), and the norms named
    by ``exchange_after`` exchange channels whose ``|gamma| < bn_threshold``:

    - ``None`` (default): the rule of :mod:`cenfusion.convert.sites`, the norm after a spatial
      convolution that is followed by a non-linearity inside a residual branch (a ResNet's
      ``bn2`` of each bottleneck, ``bn1`` of each basic block, exactly as ``create_backbone``);
    - ``"all"``, a list of module names, or a predicate ``(name, torch_norm) -> bool``.

    ``exchange=False`` keeps the sites (for the L1 term) without exchanging. ``prediction``:
    whether the output gets per-modality and ``ensemble`` entries; ``None`` decides from the
    traced graph (the model returns one tensor). ``in_channels`` is the width 1-channel inputs
    are tiled to (default: the first convolution's). ``modalities`` is a sequence of names or a
    count ``M`` (names ``m0 .. m{M-1}``).

    Norms called as functions are found by torch.fx tracing and lifted into modules (the result
    then runs a ``GraphModule``); a model that cannot be converted (a BatchNorm1d, a norm
    without scaling factors, a hard-coded batch size, data-dependent control flow where the
    graph is needed, ...) raises ``ValueError`` naming the layer and why. ``model`` itself is
    left unchanged.
    """
    names = _modality_names(modalities)
    if isinstance(bn_threshold, bool) or not isinstance(bn_threshold, (int, float)):
        raise ValueError(f"bn_threshold: expected a number, got {bn_threshold!r}")
    if isinstance(model, MultimodalModel):
        raise ValueError("cannot convert a MultimodalModel: it is converted already")
    network = copy.deepcopy(model)
    model_name = type(model).__name__
    find_norms(network)  # refuse unconvertible layers before anything else
    graph = fx_path.trace(network)
    if isinstance(graph, fx.Graph):
        if fx_path.functional_norm_nodes(graph):
            network = fx_path.lift_functional_norms(network, graph)
            graph = network.graph
        fx_path.check_batch_layout(graph, network)
    elif exchange_after is None:
        raise ValueError(
            f"cannot convert {model_name} with the default exchange rule, which needs its "
            f"graph: {graph.describe()}; pass exchange_after as names, 'all' or a predicate"
        )
    else:
        warnings.warn(
            f"convert: {graph.describe()}; converted by module replacement alone, so norms "
            "called as functions and batch-mixing operations were not checked",
            stacklevel=2,
        )
    norms = find_norms(network)
    if exchange_after is None:
        sites = default_sites(graph, network, norms)
        if not sites:
            warnings.warn(
                f"convert: the default rule found no exchange site in {model_name} (no norm "
                "after a spatial convolution and before a non-linearity inside a residual "
                "branch); its norms are private but nothing exchanges. Pass exchange_after "
                "as names, 'all' or a predicate",
                stacklevel=2,
            )
    else:
        sites = resolve_sites(exchange_after, norms, aliases(network), model_name)
    site_set = set(sites)
    threshold = bn_threshold if exchange else None
    replace_modules(
        network,
        {
            id(norm): modality_norm_from(
                norm,
                len(names),
                exchange_threshold=threshold if name in site_set else None,
                exchange_site=name in site_set,
            )
            for name, norm in norms.items()
        },
    )
    return MultimodalModel(
        network,
        names,
        in_channels=in_channels if in_channels is not None else _first_conv_width(network, graph),
        prediction=_ends_in_prediction(graph) if prediction is None else prediction,
        exchange_norms=sites,
    )


def _modality_names(modalities: Sequence[str] | int) -> tuple[str, ...]:
    if isinstance(modalities, int):
        if modalities < 1:
            raise ValueError(f"modalities: expected at least 1, got {modalities}")
        return tuple(f"m{i}" for i in range(modalities))
    names = tuple(modalities)
    if not names or len(set(names)) != len(names) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"modalities: expected distinct names, got {list(names)}")
    return names


def _first_conv_width(network: nn.Module, graph: fx.Graph | fx_path.TraceFailure) -> int | None:
    """The input width of the first 2-d convolution the data meets (graph order, else module
    order); ``None`` without one."""
    if isinstance(graph, fx.Graph):
        for node in graph.nodes:
            if node.op == "call_module":
                module = network.get_submodule(str(node.target))
                if isinstance(module, nn.Conv2d):
                    return module.in_channels
    for module in network.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    return None


def _ends_in_prediction(graph: fx.Graph | fx_path.TraceFailure) -> bool | None:
    """True when the traced network returns one tensor; ``None`` when there is no graph."""
    if not isinstance(graph, fx.Graph):
        return None
    output = next(node for node in graph.nodes if node.op == "output")
    return isinstance(output.args[0], fx.Node)
