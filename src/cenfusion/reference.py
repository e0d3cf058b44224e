"""Reference pages generated from the code, so that they cannot drift from it.

``config_reference()`` turns the config dataclasses of :mod:`cenfusion.config` (field names,
types, defaults and the comments written beside them) into the Markdown of
``docs/config.md``; ``api_reference()`` turns the signatures and docstrings of the public
factories into ``docs/api.md``. ``python -m cenfusion.reference docs`` rewrites both; a test
fails when a committed page differs from what the code generates.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import sys
import tokenize
import typing
from pathlib import Path
from typing import Any

from cenfusion import config as config_module

SECTIONS = (
    ("", config_module.Config, "top level"),
    ("model", config_module.ModelConfig, "the network"),
    ("data", config_module.DataConfig, "the data set and its augmentation"),
    ("optim", config_module.OptimConfig, "the optimiser"),
    ("optim.stages[]", config_module.StageConfig, "one stage of the segmentation schedule"),
    ("train", config_module.TrainConfig, "the training loop"),
    ("eval", config_module.EvalConfig, "evaluation"),
)


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
    return text.replace("typing.", "").replace("cenfusion.config.", "")


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


def config_reference() -> str:
    """The Markdown of ``docs/config.md``."""
    out = io.StringIO()
    out.write("# Configuration reference\n\n")
    out.write(
        "Generated from `src/cenfusion/config.py` by `python -m cenfusion.reference docs` "
        "(a test checks that this page is current). A key has one name everywhere: "
        "`train.batch_size: 4` in YAML, `train.batch_size=4` on the command line, "
        "`config.train.batch_size` in Python. Unknown keys and wrong types are refused with "
        "the dotted key.\n"
    )
    for prefix, cls, title in SECTIONS:
        hints = typing.get_type_hints(cls)
        comments = field_comments(cls)
        out.write(f"\n## `{prefix or 'top level'}`: {title}\n\n")
        out.write("| key | type | default | meaning |\n|---|---|---|---|\n")
        for field in dataclasses.fields(cls):
            key = f"{prefix}.{field.name}" if prefix else field.name
            meaning = comments.get(field.name, "").replace("|", "\\|")
            kind = _type_name(hints[field.name]).replace("|", "\\|")
            out.write(f"| `{key}` | `{kind}` | {_default(field)} | {meaning} |\n")
    return out.getvalue()


def api_reference() -> str:
    """The Markdown of ``docs/api.md``: the public factories, signatures and docstrings."""
    import cenfusion

    entries = [
        ("cenfusion.create_model", cenfusion.create_model),
        ("cenfusion.create_backbone", cenfusion.create_backbone),
        ("cenfusion.create_plain_backbone", cenfusion.create_plain_backbone),
        ("cenfusion.convert", cenfusion.convert),
    ]
    out = io.StringIO()
    out.write("# Python API: the factories\n\n")
    out.write(
        "Generated from the docstrings by `python -m cenfusion.reference docs` (a test checks "
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
