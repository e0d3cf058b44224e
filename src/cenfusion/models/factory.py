"""``create_model(task, arch, **kwargs)``: one small surface over per-architecture builders.

Each builder owns and documents its own arguments (:func:`create_refinenet`,
:func:`create_pspnet`, :func:`create_pix2pix`); this module only finds the builder and refuses
an argument that it does not take, naming the ones it does.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from cenfusion.models.backbones import create_backbone
from cenfusion.models.segmentation import create_pspnet, create_refinenet
from cenfusion.models.translation import create_pix2pix

ARCHITECTURES: dict[str, dict[str, Callable[..., nn.Module]]] = {
    "segmentation": {"refinenet": create_refinenet, "pspnet": create_pspnet},
    "translation": {"pix2pix": create_pix2pix},
}
"""``{task: {arch: builder}}``; the first arch of a task is its default."""


def create_model(task: str = "segmentation", arch: str | None = None, **kwargs: Any) -> nn.Module:
    """Build the ``arch`` model of ``task`` (default: the task's first architecture).

    Segmentation: ``"refinenet"`` (the paper's Light-Weight RefineNet) or ``"pspnet"``; both
    take ``backbone`` (``"resnet18"`` .. ``"resnet152"``), ``num_classes``, ``modalities`` and
    every switch of :func:`~cenfusion.models.create_backbone` (``bn_threshold``, ``exchange``,
    ``pretrained`` — a local torchvision ImageNet file —, ``fusion``, ...). Translation:
    ``"pix2pix"`` (``modalities``, ``target``, ``ngf``, ``num_downs``, ``insnorm_threshold``,
    ...). Any number of modalities; see each builder for its arguments and defaults.
    """
    if task not in ARCHITECTURES:
        raise ValueError(f"task: expected one of {tuple(ARCHITECTURES)}, got {task!r}")
    builders = ARCHITECTURES[task]
    arch = arch or next(iter(builders))
    if arch not in builders:
        raise ValueError(f"arch for {task}: expected one of {tuple(builders)}, got {arch!r}")
    builder = builders[arch]
    kwargs = _earlier_arguments(arch, kwargs)
    accepted = builder_arguments(builder)
    unknown = [key for key in kwargs if key not in accepted]
    if unknown:
        raise ValueError(
            f"create_model(task={task!r}, arch={arch!r}): unexpected argument "
            f"{unknown[0]!r}; {builder.__name__} takes {sorted(accepted)}"
        )
    return builder(**kwargs)


def _earlier_arguments(arch: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The calls of the earlier, single ``create_model`` in the builders' terms: ``None`` meant
    "the architecture's default"; PSPNet's width was ``decoder_channels[0]`` and it took (and
    ignored) ``rcu_residual``; pix2pix took the sharing switches, refusing ``False``."""
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    if arch == "pspnet":
        kwargs.pop("rcu_residual", None)
        if "decoder_channels" in kwargs:  # [width], or RefineNet's pair: its first entry
            kwargs.setdefault("channels", int(list(kwargs.pop("decoder_channels"))[0]))
    if arch == "pix2pix":
        shared = [kwargs.pop(key, True) for key in ("share_convs", "private_norms")]
        if not all(shared):
            raise ValueError(
                "share_convs=False / private_norms=False: the sharing ablations are built for "
                "segmentation backbones only"
            )
    return kwargs


def builder_arguments(builder: Callable[..., nn.Module]) -> set[str]:
    """The keyword arguments ``builder`` takes; ``**backbone_options`` stands for those of
    :func:`~cenfusion.models.create_backbone` (except the ones the builder sets itself)."""
    parameters = inspect.signature(builder).parameters
    names = {n for n, p in parameters.items() if p.kind is not p.VAR_KEYWORD}
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        names |= set(inspect.signature(create_backbone).parameters) - {"name"}
    return names
