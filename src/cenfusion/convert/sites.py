"""The default exchange rule: where channel exchanging goes in a network it has never seen.

A norm is an exchange site when, in the traced graph, all three hold:

1. it normalises the output of a *spatial* convolution (a kernel larger than 1 on some axis);
2. its output goes only to a non-linearity (ReLU, GELU, SiLU, ... as a module, function or
   method), possibly through an ``Identity`` or a dropout;
3. it lies *inside a residual branch*: some addition joins two or more paths, and the norm
   feeds some of them but not all.

This is the paper's placement generalised: in a ResNet bottleneck it is ``bn2`` alone (``bn1``
follows a 1x1 convolution, ``bn3`` and the downsample norm feed the addition directly, the stem
norm feeds both sides of every later addition), in a basic block ``bn1``; in an inverted
residual (MobileNetV2) the norm after the depthwise convolution. A network without additive
skips (a plain CNN, a U-Net with concatenated skips) has no site by this rule: pass names,
``"all"`` or a predicate instead.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import fx, nn

from cenfusion.convert.fx import get_attr

ACTIVATION_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh,
    nn.Softplus, nn.Softsign, nn.Tanhshrink, nn.LogSigmoid,
)  # fmt: skip
ACTIVATION_FUNCTIONS = {
    torch.relu, torch.relu_, torch.sigmoid, torch.tanh, torch.selu, torch.celu, torch.prelu,
    F.relu, F.relu_, F.relu6, F.leaky_relu, F.leaky_relu_, F.elu, F.elu_, F.selu, F.celu,
    F.gelu, F.silu, F.mish, F.hardswish, F.hardsigmoid, F.hardtanh, F.hardtanh_, F.prelu,
    F.rrelu, F.softplus, F.softsign, F.sigmoid, F.tanh, F.logsigmoid,
}  # fmt: skip
ACTIVATION_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_"}
PASSTHROUGH_MODULES: tuple[type[nn.Module], ...] = (
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)  # fmt: skip
PASSTHROUGH_FUNCTIONS = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout}
ADDITIONS = {operator.add, operator.iadd, torch.add}
CONV_FUNCTIONS = {F.conv1d, F.conv2d, F.conv3d, torch.conv2d}


def default_sites(graph: fx.Graph, root: nn.Module, norm_names: Iterable[str]) -> list[str]:
    """The names among ``norm_names`` that the default rule makes exchange sites.

    ``graph`` is ``root``'s traced graph with every norm as a ``call_module`` node. A norm
    called at several places is a site only if every call qualifies.
    """
    nodes = list(graph.nodes)
    ancestors: dict[fx.Node, int] = {}
    for index, node in enumerate(nodes):
        mask = 1 << index
        for source in node.all_input_nodes:
            mask |= ancestors[source]
        ancestors[node] = mask
    joins = [operands for node in nodes if len(operands := _added_tensors(node)) >= 2]
    bits = {node: 1 << index for index, node in enumerate(nodes)}

    def in_residual_branch(node: fx.Node) -> bool:
        for operands in joins:
            feeds = sum(bool(ancestors[operand] & bits[node]) for operand in operands)
            if 0 < feeds < len(operands):
                return True
        return False

    calls: dict[str, list[fx.Node]] = {}
    for node in nodes:
        if node.op == "call_module":
            calls.setdefault(str(node.target), []).append(node)
    sites = []
    for name in norm_names:
        nodes_of_norm = calls.get(name, [])
        if nodes_of_norm and all(
            _after_spatial_conv(node, root)
            and _followed_by_activation(node, root)
            and in_residual_branch(node)
            for node in nodes_of_norm
        ):
            sites.append(name)
    return sites


def _added_tensors(node: fx.Node) -> list[fx.Node]:
    """The graph values an addition node sums (empty for anything else)."""
    is_add = (node.op == "call_function" and node.target in ADDITIONS) or (
        node.op == "call_method" and node.target in ("add", "add_", "__add__", "__iadd__")
    )
    if not is_add:
        return []
    operands = [arg for arg in node.args[:2] if isinstance(arg, fx.Node)]
    return [operand for operand in operands if operand.op != "get_attr"]


def _is_passthrough(node: fx.Node, root: nn.Module) -> bool:
    if node.op == "call_module":
        return isinstance(root.get_submodule(str(node.target)), PASSTHROUGH_MODULES)
    return node.op == "call_function" and node.target in PASSTHROUGH_FUNCTIONS


def _is_activation(node: fx.Node, root: nn.Module) -> bool:
    if node.op == "call_module":
        return isinstance(root.get_submodule(str(node.target)), ACTIVATION_MODULES)
    if node.op == "call_function":
        return node.target in ACTIVATION_FUNCTIONS
    return node.op == "call_method" and node.target in ACTIVATION_METHODS


def _followed_by_activation(node: fx.Node, root: nn.Module) -> bool:
    users = list(node.users)
    if not users:
        return False
    for user in users:
        while _is_passthrough(user, root) and len(user.users) == 1:
            user = next(iter(user.users))
        if not _is_activation(user, root):
            return False
    return True


def _after_spatial_conv(node: fx.Node, root: nn.Module) -> bool:
    source = node.args[0] if node.args else None
    while isinstance(source, fx.Node) and _is_passthrough(source, root):
        source = source.args[0] if source.args else None
    if not isinstance(source, fx.Node):
        return False
    if source.op == "call_module":
        module = root.get_submodule(str(source.target))
        if isinstance(module, nn.modules.conv._ConvNd):
            return any(k > 1 for k in module.kernel_size)
        return False
    if source.op == "call_function" and source.target in CONV_FUNCTIONS:
        weight = source.args[1] if len(source.args) > 1 else source.kwargs.get("weight")
        if isinstance(weight, fx.Node) and weight.op == "get_attr":
            return any(k > 1 for k in get_attr(root, str(weight.target)).shape[2:])
    return False
