"""The torch.fx path: a model's graph, for what module replacement cannot see.

Tracing serves three ends. The default exchange rule needs the data flow (which norm feeds
which non-linearity, which addition closes a residual branch; see :mod:`.sites`). Norms called
as functions (``F.batch_norm(x, self.running_mean, ...)``) are invisible to module replacement:
the graph shows them, and :func:`lift_functional_norms` turns each into the equivalent torch
norm module, which the walk then converts like any other. And operations that would mix the
modalities of the stacked batch (a hard-coded batch size, a reduction over the batch axis) are
refused before they can silently compute the wrong thing (:func:`check_batch_layout`).
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from cenfusion.convert.walk import NORM_TYPES
from cenfusion.nn.norm import ModalityNorm


@dataclass(frozen=True)
class TraceFailure:
    """Where and why torch.fx could not trace a model."""

    layer: str
    reason: str

    def describe(self) -> str:
        return f"torch.fx cannot trace {self.layer} ({self.reason})"


class _ScopedTracer(fx.Tracer):
    """Keeps every norm a single node, and records the module each node was created in."""

    def __init__(self) -> None:
        super().__init__()
        self._path: list[str] = [""]
        self.failed_in: str | None = None

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, (*NORM_TYPES, ModalityNorm)):
            return True
        return super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m: nn.Module, forward: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        name = self.path_of_module(m)
        self._path.append(name)
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:
                self.failed_in = name
            raise
        finally:
            self._path.pop()

    def create_node(self, *args: Any, **kwargs: Any) -> fx.Node:
        node = super().create_node(*args, **kwargs)
        node.meta["cenfusion_scope"] = self._path[-1]
        return node


def trace(model: nn.Module) -> fx.Graph | TraceFailure:
    """The model's graph (norms as ``call_module`` nodes), or where and why tracing failed."""
    tracer = _ScopedTracer()
    try:
        return tracer.trace(model)
    except Exception as error:  # torch.fx raises many types: TraceError, TypeError, ...
        if tracer.failed_in:
            kind = type(model.get_submodule(tracer.failed_in)).__name__
            layer = f"layer {tracer.failed_in!r} ({kind})"
        else:
            layer = f"the forward of {type(model).__name__} itself"
        first_line = (str(error).strip().splitlines() or [""])[0]
        return TraceFailure(layer, f"{type(error).__name__}: {first_line}")


def scope_of(node: fx.Node) -> str:
    """The qualified name of the module whose forward created ``node`` ('' for the root)."""
    return node.meta.get("cenfusion_scope", "")


def describe(node: fx.Node) -> str:
    """A node as an error message names it: the layer it sits in and the call."""
    scope = scope_of(node)
    where = f"layer {scope!r}" if scope else "the model's own forward"
    target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
    return f"{where}, call {target}() (graph node {node.name!r})"


def get_attr(root: nn.Module, target: str) -> Any:
    value: Any = root
    for part in target.split("."):
        value = getattr(value, part)
    return value


# -- functional norms ----------------------------------------------------------------------

LIFTABLE_FUNCTIONS: dict[Callable[..., Any], str] = {
    F.batch_norm: "batch_norm",
    F.instance_norm: "instance_norm",
    F.group_norm: "group_norm",
}
"""Functional norms turned into modules: the ``torch.nn.functional`` form, with named tensors."""

REFUSED_FUNCTIONS: dict[Callable[..., Any], str] = {
    torch.batch_norm: "batch_norm",
    torch.instance_norm: "instance_norm",
    torch.group_norm: "group_norm",
    torch.layer_norm: "layer_norm",
    F.layer_norm: "layer_norm",
    torch.native_batch_norm: "native_batch_norm",
}


def functional_norm_nodes(graph: fx.Graph) -> list[fx.Node]:
    """Calls of norm functions in ``graph``: each one must become a module or be refused.

    A ``torch.nn.functional`` norm given no tensors at all (``F.group_norm(x, 4)``,
    ``F.instance_norm(x)``, ``F.layer_norm(x, shape)``) normalises each sample alone with
    nothing to share, so it stays as it is, like the parameter-free norm modules.
    """
    return [
        node
        for node in graph.nodes
        if node.op == "call_function"
        and (node.target in LIFTABLE_FUNCTIONS or node.target in REFUSED_FUNCTIONS)
        and not _parameter_free_call(node)
    ]


def _parameter_free_call(node: fx.Node) -> bool:
    if node.target not in (*LIFTABLE_FUNCTIONS, F.layer_norm):
        return False
    arguments = _bound(node).arguments
    keys = ("weight", "bias", "running_mean", "running_var")
    return all(arguments.get(key) is None for key in keys)


def lift_functional_norms(root: nn.Module, graph: fx.Graph) -> fx.GraphModule:
    """Replace every functional norm call by the equivalent torch norm module.

    The new module is registered beside the call, under the module the call sits in, named
    after the function (``block.group_norm``, ``block.group_norm_1``, ...); its parameters and
    running statistics are the tensors the call used, which leave the graph. Returns the
    ``GraphModule`` that runs the rewritten graph. Raises ``ValueError`` for a call that has no
    module equivalent, naming the layer and why, and for a forward that depends on train/eval
    mode (which the graph would freeze).
    """
    lifted = [(node, _module_for(root, node)) for node in functional_norm_nodes(graph)]
    if not graphs_agree(root, graph):
        raise ValueError(
            f"cannot convert {type(root).__name__}: it calls norms as functions, which only a "
            "traced graph can convert, and its forward depends on train/eval mode, which a "
            "traced graph would freeze; use norm modules instead"
        )
    for node, norm in lifted:
        name = _free_name(root, scope_of(node), LIFTABLE_FUNCTIONS[node.target])
        parent_name, _, leaf = name.rpartition(".")
        root.get_submodule(parent_name).add_module(leaf, norm)
        with graph.inserting_before(node):
            call = graph.call_module(name, (_bound(node).arguments["input"],))
        call.meta.update(node.meta)
        node.replace_all_uses_with(call)
        inputs = node.all_input_nodes
        graph.erase_node(node)
        for unused in inputs:
            if unused.op == "get_attr" and not unused.users:
                graph.erase_node(unused)
    module = fx.GraphModule(root, graph, class_name=type(root).__name__)
    module.training = root.training
    return module


def _bound(node: fx.Node) -> inspect.BoundArguments:
    bound = inspect.signature(node.target).bind(*node.args, **node.kwargs)
    bound.apply_defaults()
    return bound


def _module_for(root: nn.Module, node: fx.Node) -> nn.Module:
    """The torch norm module computing what the functional call ``node`` computes."""
    if node.target in REFUSED_FUNCTIONS:
        kind = REFUSED_FUNCTIONS[node.target]
        why = (
            "a LayerNorm's parameters would be shared; cenfusion has no per-modality LayerNorm"
            if kind == "layer_norm"
            else f"call torch.nn.functional.{kind} or use the nn module, which convert lifts"
        )
        raise ValueError(f"cannot convert {describe(node)}: {why}")
    args = _bound(node).arguments
    tensors = {}
    for key in ("weight", "bias", "running_mean", "running_var"):
        value = args.get(key)
        if value is None:
            tensors[key] = None
        elif isinstance(value, fx.Node) and value.op == "get_attr":
            tensors[key] = get_attr(root, value.target)
        else:
            raise ValueError(
                f"cannot convert {describe(node)}: its {key} is computed in forward, not a "
                "parameter or buffer of the model, so there is no tensor to give each modality"
            )
    for key in ("momentum", "eps", "num_groups"):
        if isinstance(args.get(key), fx.Node):
            raise ValueError(f"cannot convert {describe(node)}: its {key} is computed in forward")
    if tensors["weight"] is None or tensors["bias"] is None:
        raise ValueError(
            f"cannot convert {describe(node)}: a norm without both weight and bias has no "
            "scaling factors to make private"
        )
    channels = tensors["weight"].shape[0]
    kind = LIFTABLE_FUNCTIONS[node.target]
    if kind == "group_norm":
        norm: nn.Module = nn.GroupNorm(args["num_groups"], channels, eps=args["eps"])
    elif kind == "batch_norm":
        if tensors["running_mean"] is None or tensors["running_var"] is None:
            raise ValueError(
                f"cannot convert {describe(node)}: batch_norm without running statistics "
                "normalises by batch statistics at evaluation too"
            )
        norm = nn.BatchNorm2d(channels, eps=args["eps"], momentum=args["momentum"])
    else:
        stats = tensors["running_mean"] is not None
        norm = nn.InstanceNorm2d(
            channels, eps=args["eps"], momentum=args["momentum"], affine=True,
            track_running_stats=stats,
        )  # fmt: skip
    norm = norm.to(device=tensors["weight"].device, dtype=tensors["weight"].dtype)
    with torch.no_grad():
        for key, value in tensors.items():
            if value is not None:
                getattr(norm, key).copy_(value)
    norm.weight.requires_grad_(tensors["weight"].requires_grad)
    norm.bias.requires_grad_(tensors["bias"].requires_grad)
    norm.train(root.training)
    return norm


def _free_name(root: nn.Module, scope: str, base: str) -> str:
    parent, leaf, index = root.get_submodule(scope), base, 0
    while hasattr(parent, leaf):
        index += 1
        leaf = f"{base}_{index}"
    return f"{scope}.{leaf}" if scope else leaf


def graphs_agree(model: nn.Module, graph: fx.Graph) -> bool:
    """Whether tracing in the other train/eval mode gives the same graph.

    A graph fixes the branches of ``if self.training`` at tracing time; a rewritten model must
    not depend on them. The ``training`` flag of a functional norm may differ: the lifted module
    follows its own mode, as ``nn.BatchNorm2d`` does.
    """
    modes = {module: module.training for module in model.modules()}
    try:
        model.train(not model.training)
        other = trace(model)
    finally:
        for module, mode in modes.items():
            module.training = mode
    return isinstance(other, fx.Graph) and _signature(other) == _signature(graph)


def _signature(graph: fx.Graph) -> list[tuple[Any, ...]]:
    def plain(value: Any) -> Any:
        return fx.node.map_arg(value, lambda node: f"%{node.name}")

    signature = []
    for node in graph.nodes:
        if node.op == "call_function" and node.target in LIFTABLE_FUNCTIONS:
            arguments = dict(_bound(node).arguments)
            arguments.pop("training", None)
            arguments.pop("use_input_stats", None)
            call: Any = sorted((key, repr(plain(value))) for key, value in arguments.items())
        else:
            call = (repr(plain(node.args)), repr(plain(node.kwargs)))
        signature.append((node.name, node.op, str(node.target), call))
    return signature


# -- the stacked batch ---------------------------------------------------------------------

_REDUCTIONS = {
    "mean", "sum", "prod", "std", "var", "amax", "amin", "max", "min", "logsumexp", "softmax",
    "log_softmax", "cumsum", "cumprod", "argmax", "argmin", "median", "norm", "all", "any",
}  # fmt: skip
_FULL_REDUCTIONS = {"mean", "sum", "prod", "std", "var"}
_LAYOUT_CHANGES = {
    "permute", "transpose", "transpose_", "movedim", "moveaxis", "swapaxes", "swapdims", "t",
    "stack", "unsqueeze", "einsum", "unbind", "split", "chunk", "tensor_split", "flip", "roll",
}  # fmt: skip


def _name(node: fx.Node) -> str:
    if node.op == "call_method":
        return str(node.target)
    if node.op == "call_function":
        return getattr(node.target, "__name__", "")
    return ""


def _arg(node: fx.Node, position: int, keyword: str, default: Any = None) -> Any:
    """Argument ``position`` (counting the tensor itself) or keyword ``keyword`` of a call."""
    if keyword in node.kwargs:
        return node.kwargs[keyword]
    return node.args[position] if len(node.args) > position else default


def _covers_batch_axis(dim: Any) -> bool:
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    return any(isinstance(d, int) and not isinstance(d, bool) and d == 0 for d in dims)


def _receiver_batched(node: fx.Node, batched: set[fx.Node]) -> bool:
    first = node.args[0] if node.args else None
    if isinstance(first, (tuple, list)):
        return any(item in batched for item in first)
    return first in batched


def _view_sizes(node: fx.Node) -> tuple[Any, ...]:
    sizes = node.args[1:] if node.op == "call_method" else (_arg(node, 1, "shape"),)
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list, torch.Size)):
        return tuple(sizes[0])
    return tuple(sizes)


def _batch_problem(node: fx.Node, root: nn.Module, batched: set[fx.Node]) -> str | None:
    """Why ``node`` breaks the stacked, modality-major batch, or ``None``."""
    name = _name(node)
    if node.op == "call_module":
        module = root.get_submodule(node.target)
        if isinstance(module, nn.Flatten) and module.start_dim == 0:
            return "nn.Flatten(start_dim=0) merges the batch axis, mixing the modalities"
        return None
    if node.op not in ("call_method", "call_function") or not _receiver_batched(node, batched):
        return None
    if name in ("view", "reshape"):
        sizes = _view_sizes(node)
        if sizes and isinstance(sizes[0], int) and sizes[0] != -1:
            return (
                f"{name} fixes the batch axis to {sizes[0]}; the stacked batch is M*B, so "
                "take it from x.shape[0] (or write -1)"
            )
    if name == "flatten" and _covers_batch_axis(_arg(node, 1, "start_dim", 0)):
        return "flatten from axis 0 merges the batch axis, mixing the modalities"
    if name in ("cat", "concat", "concatenate") and _covers_batch_axis(_arg(node, 1, "dim", 0)):
        return "concatenating along the batch axis breaks the modality-major order of the stack"
    if name in _REDUCTIONS:
        dim = _arg(node, 1, "dim")
        if isinstance(dim, fx.Node):  # max(x, y): element-wise, not a reduction
            return None
        if _covers_batch_axis(dim):
            return f"{name} over the batch axis mixes the modalities"
        if dim is None and name in _FULL_REDUCTIONS and len(node.args) <= 1:
            return f"{name} over all axes (the batch axis included) mixes the modalities"
    return None


def _keeps_batch_first(node: fx.Node, root: nn.Module) -> bool:
    """Whether a node computed from a stacked tensor still has the stacked batch at axis 0.

    Conservative: only operations known to keep it; anything else ends the check there.
    """
    name = _name(node)
    if node.op == "call_module":
        return getattr(root.get_submodule(node.target), "batch_first", True) is not False
    if node.op not in ("call_method", "call_function"):
        return False
    if name in _LAYOUT_CHANGES or node.target in (operator.getitem, getattr):
        return False
    if name in ("size", "dim", "numel", "tolist", "item"):
        return False
    if name in ("view", "reshape"):
        first = next(iter(_view_sizes(node)), None)
        return isinstance(first, fx.Node) or first == -1
    if name in _REDUCTIONS:  # over other axes (checked above), or max(x, y) element-wise
        return _arg(node, 1, "dim") is not None
    return True


def check_batch_layout(graph: fx.Graph, root: nn.Module) -> None:
    """Refuse operations that would mix the modalities of the stacked first input.

    Follows the first input (the stacked ``(M*B, ...)`` tensor) through the graph while its
    batch axis is known to stay first, and raises ``ValueError`` naming the layer and the call
    on a hard-coded batch size, a flatten or concatenation across the batch axis, or a
    reduction over it. A conservative check: after a permute, a stack or an indexing it stops
    following, so it misses mixing it cannot prove and never refuses a correct model.
    """
    placeholders = [node for node in graph.nodes if node.op == "placeholder"]
    if not placeholders:
        return
    batched = {placeholders[0]}
    for node in graph.nodes:
        if not any(n in batched for n in node.all_input_nodes):
            continue
        problem = _batch_problem(node, root, batched)
        if problem is not None:
            raise ValueError(f"cannot convert {describe(node)}: {problem}")
        if _keeps_batch_first(node, root):
            batched.add(node)
