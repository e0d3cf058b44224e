"""Documentation pages generated from the code, so that they cannot drift from it.

``config_reference()`` turns the config dataclasses (the shared sections of
:mod:`cenfusion.config` and each task's own, field names, types, defaults and the comments
written beside them) into the Markdown of ``docs/config.md``; ``api_reference()`` turns the
signatures and docstrings of the public factories into ``docs/api.md``. ``python -m
cenfusion.docgen docs`` rewrites both; a test fails when a committed page differs from what the
code generates.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import re
import sys
import tokenize
import typing
from pathlib import Path
from typing import Any

import cenfusion
from cenfusion import config as config_module
from cenfusion.config import registered_tasks, task_sections
from cenfusion.models import create_pix2pix, create_pspnet, create_refinenet

SHARED_SECTIONS = (
    ("", config_module.Config, "top level"),
    ("model", config_module.ModelConfig, "the network"),
    ("data", config_module.DataConfig, "the data set and its augmentation"),
    ("train", config_module.TrainConfig, "the training loop"),
    ("eval", config_module.EvalConfig, "evaluation"),
)
TITLES = {
    "model": "the network",
    "data": "the data set and its augmentation",
    "optim": "the optimiser",
    "train": "the training loop",
    "eval": "evaluation",
}


def field_comments(cls: type) -> dict[str, str]:
    """``{field: comment}`` from the comments on a field's line and the lines just above it."""
    source = inspect.getsource(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    comments: dict[str, str] = {}
    pending: list[str] = []
    lines = source.splitlines()
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    trailing = {
        t.start[0]: t.string.lstrip("#").strip()
        for t in tokens
        if t.type == tokenize.COMMENT and lines[t.start[0] - 1].split("#")[0].strip()
    }
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        name = stripped.split(":", 1)[0].strip()
        if name in names and ":" in stripped:
            parts = [*pending, trailing.get(number, "")]
            comments[name] = " ".join(p for p in parts if p)
        pending = []
    return comments


def _type_name(hint: Any) -> str:
    text = str(hint) if typing.get_origin(hint) else getattr(hint, "__name__", str(hint))
    return re.sub(r"cenfusion\.[\w.]*\.", "", text.replace("typing.", ""))


def _default(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return "required"
    if dataclasses.is_dataclass(value):
        return "see below"
    if isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
        return f"{len(value)} stage(s), see below"
    return f"`{value!r}`"


def _table(out: io.StringIO, prefix: str, cls: type, fields: list[dataclasses.Field]) -> None:
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    out.write("| key | type | default | meaning |\n|---|---|---|---|\n")
    for field in fields:
        key = f"{prefix}.{field.name}" if prefix else field.name
        meaning = comments.get(field.name, "").replace("|", "\\|")
        kind = _type_name(hints[field.name]).replace("|", "\\|")
        out.write(f"| `{key}` | `{kind}` | {_default(field)} | {meaning} |\n")


def _own_fields(cls: type) -> list[dataclasses.Field]:
    """The fields a task's section declares itself (new ones, or a shared one's default)."""
    own = cls.__dict__.get("__annotations__", {})
    return [field for field in dataclasses.fields(cls) if field.name in own]


def config_reference() -> str:
    """The Markdown of ``docs/config.md``."""
    out = io.StringIO()
    out.write("# Configuration reference\n\n")
    out.write(
        "Generated from `src/cenfusion/config.py` and each task's `config.py` "
        "(`src/cenfusion/tasks/<task>/config.py`) by `python -m cenfusion.docgen docs` (a test "
        "checks that this page is current). A key has one name everywhere: "
        "`train.batch_size: 4` in YAML, `train.batch_size=4` on the command line, "
        "`config.train.batch_size` in Python. Unknown keys and wrong types are refused with "
        "the dotted key; a key of another task's section is refused naming that task. "
        "`task:` decides which sections a file is read with: the shared keys below, plus the "
        "task's own.\n"
    )
    for prefix, cls, title in SHARED_SECTIONS:
        out.write(f"\n## `{prefix or 'top level'}`: {title}, every task\n\n")
        _table(out, prefix, cls, list(dataclasses.fields(cls)))
    for name in registered_tasks():
        sections = task_sections(name)
        out.write(f"\n## `task: {name}`\n\n")
        out.write("The keys this task adds, and the shared keys whose default it changes.\n")
        for section in config_module.SECTION_NAMES:
            cls = getattr(sections, section)
            fields = _own_fields(cls)
            if fields:
                out.write(f"\n### `{section}`: {TITLES[section]}\n\n")
                _table(out, section, cls, fields)
            for field in fields:  # nested sections: the stages of a schedule
                nested = _list_item_class(typing.get_type_hints(cls)[field.name])
                if nested is not None:
                    out.write(f"\n### `{section}.{field.name}[]`: one entry\n\n")
                    _table(out, f"{section}.{field.name}[]", nested, dataclasses.fields(nested))
    return out.getvalue()


def _list_item_class(hint: Any) -> type | None:
    """``X`` for a ``list[X]`` field of dataclasses, else None."""
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        if dataclasses.is_dataclass(item):
            return item
    return None


def api_reference() -> str:
    """The Markdown of ``docs/api.md``: the public factories, signatures and docstrings."""
    entries = [
        ("cenfusion.create_model", cenfusion.create_model),
        ("cenfusion.models.create_refinenet", create_refinenet),
        ("cenfusion.models.create_pspnet", create_pspnet),
        ("cenfusion.models.create_pix2pix", create_pix2pix),
        ("cenfusion.get_task", cenfusion.get_task),
        ("cenfusion.create_backbone", cenfusion.create_backbone),
        ("cenfusion.create_plain_backbone", cenfusion.create_plain_backbone),
        ("cenfusion.convert", cenfusion.convert),
    ]
    out = io.StringIO()
    out.write("# Python API: the factories\n\n")
    out.write(
        "Generated from the docstrings by `python -m cenfusion.docgen docs` (a test checks "
        "that this page is current). The building blocks are in `cenfusion.nn`, the baselines "
        "in `cenfusion.models.fusion`, the analysis tools in `cenfusion.analysis`.\n"
    )
    for name, function in entries:
        signature = inspect.signature(function)
        items: list[str] = []
        for parameter in signature.parameters.values():
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY and "*" not in items:
                items.append("*")
            items.append(_parameter(parameter))
        parameters = ",\n".join(f"    {item}" for item in items)
        returns = signature.return_annotation
        arrow = "" if returns is inspect.Signature.empty else f" -> {returns}"
        out.write(f"\n## `{name}`\n\n```python\n{name}(\n{parameters},\n){arrow}\n```\n\n")
        out.write(inspect.cleandoc(function.__doc__ or "") + "\n")
    return out.getvalue()


def _parameter(parameter: inspect.Parameter) -> str:
    """``name: annotation = default`` with the annotation as written (not quoted)."""
    text = parameter.name
    if parameter.annotation is not inspect.Parameter.empty:
        text += f": {parameter.annotation}"
    if parameter.default is not inspect.Parameter.empty:
        text += f" = {parameter.default!r}"
    return text


PAGES = {"config.md": config_reference, "api.md": api_reference}


def write_pages(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, make in PAGES.items():
        path = folder / name
        path.write_text(make())
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_pages(sys.argv[1] if len(sys.argv) > 1 else "docs"):
        print(f"wrote {path}")
