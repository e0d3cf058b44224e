"""The tasks cenfusion trains: one object each, looked up by the ``task:`` of a config.

``get_task("segmentation")`` and ``get_task("translation")`` return the objects of
:mod:`cenfusion.tasks.segmentation` and :mod:`cenfusion.tasks.translation`;
:func:`load_trained` rebuilds any cenfusion checkpoint with the task it was trained for.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from cenfusion.config import Config, register_task_sections
from cenfusion.engine.checkpoint import checkpoint_config, load_checkpoint, require_entries
from cenfusion.tasks.base import ComparisonMetrics, EvaluateOptions, Task
from cenfusion.tasks.segmentation import SegmentationTask
from cenfusion.tasks.translation import TranslationTask

TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Make ``task`` known by its name, to :func:`get_task` and to the config reader."""
    TASKS[task.name] = task
    register_task_sections(task.name, task.sections)
    return task


def get_task(name: str) -> Task:
    """The task object of ``task: name``."""
    if name not in TASKS:
        raise ValueError(f"task: expected one of {sorted(TASKS)}, got {name!r}")
    return TASKS[name]


def load_trained(
    checkpoint: str | Path, payload: Mapping[str, Any] | None = None
) -> tuple[Task, nn.Module, Config]:
    """The task, the model (weights loaded, evaluation mode) and the config of a cenfusion
    checkpoint (``payload``: the checkpoint already read, to avoid reading it twice)."""
    if payload is None:
        payload = load_checkpoint(checkpoint)
    require_entries(payload, ("model",), checkpoint, "a model checkpoint")
    config = checkpoint_config(payload, checkpoint)
    task = get_task(config.task)
    return task, task.load_trained(checkpoint, config, payload["model"]), config


register_task(SegmentationTask())
register_task(TranslationTask())

__all__ = [
    "TASKS",
    "ComparisonMetrics",
    "EvaluateOptions",
    "SegmentationTask",
    "Task",
    "TranslationTask",
    "get_task",
    "load_trained",
    "register_task",
]
