"""The run's logs: ``metrics.jsonl`` (every record as is), ``metrics.csv`` (one row per epoch,
one column per scalar) and, optionally, TensorBoard event files.

A record is the trainer's per-epoch dict (losses, learning rates, alpha, exchanged fractions,
validation scores, ...). Nested values are flattened to ``/``-joined scalar names
(``val/ensemble/mean_iou``, ``alpha/rgb``); lists of per-class values stay in the JSON only.
On resume the logs are rewritten from the checkpoint's history, so no epoch appears twice.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cenfusion.engine.checkpoint import write_text_atomic

TENSORBOARD_EXTRA = "pip install 'cenfusion[tensorboard]'"


def flatten(record: dict[str, Any], names: Sequence[str] = ()) -> dict[str, float]:
    """Scalars of a record under ``/``-joined names; ``alpha`` lists get modality names."""
    flat: dict[str, float] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, (bool, int, float)):
            flat[prefix] = float(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                visit(f"{prefix}/{key}" if prefix else str(key), item)
        elif isinstance(value, list) and prefix == "alpha":
            for index, item in enumerate(value):
                name = names[index] if index < len(names) else str(index)
                visit(f"alpha/{name}", item)

    visit("", record)
    return flat


class RunLog:
    """Writes every record to the JSONL and CSV logs (and TensorBoard when asked)."""

    def __init__(
        self,
        output_dir: str | Path,
        modalities: Sequence[str],
        tensorboard: bool = False,
        enabled: bool = True,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.modalities = tuple(modalities)
        self.enabled = enabled
        self.writer = None
        if tensorboard and enabled:
            self.writer = _summary_writer(self.output_dir / "tensorboard")

    def rewrite(self, history: list[dict[str, Any]]) -> None:
        """A resumed run: the logs become exactly the checkpoint's history."""
        if not self.enabled:
            return
        lines = "".join(json.dumps(record) + "\n" for record in history)
        write_text_atomic(self.output_dir / "metrics.jsonl", lines)
        self._write_csv(history)

    def write(self, record: dict[str, Any], history: list[dict[str, Any]]) -> None:
        """Log one epoch's ``record``; ``history`` (which ends with it) rebuilds the CSV, whose
        columns may grow (validation scores appear only in validated epochs)."""
        if not self.enabled:
            return
        with (self.output_dir / "metrics.jsonl").open("a") as log:
            log.write(json.dumps(record) + "\n")
        self._write_csv(history)
        if self.writer is not None:
            step = int(record.get("epoch", len(history)))
            for name, value in flatten(record, self.modalities).items():
                if name != "epoch":
                    self.writer.add_scalar(name, value, step)
            self.writer.flush()

    def _write_csv(self, history: list[dict[str, Any]]) -> None:
        rows = [flatten(record, self.modalities) for record in history]
        columns = list(dict.fromkeys(name for row in rows for name in row))
        text = io.StringIO()
        table = csv.DictWriter(text, fieldnames=columns, restval="", lineterminator="\n")
        table.writeheader()
        table.writerows(rows)
        write_text_atomic(self.output_dir / "metrics.csv", text.getvalue())

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _summary_writer(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise RuntimeError(
            f"train.tensorboard: true needs the tensorboard package ({TENSORBOARD_EXTRA}); "
            f"metrics.jsonl and metrics.csv are written without it ({error})"
        ) from None
    return SummaryWriter(log_dir=str(folder))
