"""Tables of a comparison: mean and 95 % interval over paired seeds per method, each method's
paired difference to CEN, Markdown and JSON (:mod:`cenfusion.experiments.statistics`).

Segmentation rows give every branch's mIoU and the ensemble's mIoU, pixel and mean accuracy
(for a unimodal network its one branch is its prediction, so it fills its modality's column
and the ensemble columns). Translation rows give every branch's L1 and the ensemble's L1,
FID and KID x100 when an Inception was available. A method with diverged or failed seeds says
so in its row; it is never dropped.
"""

from __future__ import annotations

from typing import Any

from cenfusion.engine.convergence import rise_at_full_rate
from cenfusion.experiments.statistics import mean_interval, paired_difference
from cenfusion.tasks import ComparisonMetrics, get_task

NOT_OK = ("diverged", "failed", "pending")


def reported_scores(cell: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The scores a table reports for a cell: the held-out test split's when the run has them,
    else the validation split's."""
    return cell.get("test_scores") or cell["scores"]


def _output_names(cell: dict[str, Any], modalities: list[str]) -> dict[str, str]:
    """Column name -> output name of this cell (a unimodal cell's branch is also its ensemble)."""
    outputs = list(reported_scores(cell))
    branches = [name for name in outputs if name != "ensemble"]
    mapping = {name: name for name in branches if name in modalities}
    if "ensemble" in outputs:
        mapping["ensemble"] = "ensemble"
    return mapping


def _mean_std(values: list[float | None]) -> dict[str, float] | None:
    """Mean, std, n and the 95 % interval's half width (None for one value) of the values
    that exist."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    interval = mean_interval(values)
    return {
        "mean": interval.mean,
        "std": interval.std,
        "n": interval.n,
        "half_width": interval.half_width,
    }


def _by_seed(cells: list[dict[str, Any]], modalities: list[str], metric: str) -> dict[int, float]:
    """``{seed: the ensemble's metric}`` of the finished cells."""
    values = {}
    for cell in cells:
        output = _output_names(cell, modalities).get("ensemble")
        if cell["status"] == "ok" and output is not None:
            value = reported_scores(cell)[output].get(metric)
            if value is not None:
                values[int(cell["seed"])] = float(value)
    return values


def improvement(change: float | None, sign: int) -> float | None:
    """A run's last-quarter change of the headline metric as an improvement: positive when it
    still got better (mIoU up, or L1 down with ``sign`` -1)."""
    return None if change is None else sign * change


def summarise(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per method: statuses, mean/std/95 % interval of every (column, metric), the
    paired difference of its ensemble's headline metric to CEN's (``paired_vs_cen``: the
    method minus CEN, seed by seed), params, time."""
    modalities = report["modalities"]
    comparison = get_task(report["task"]).comparison
    metrics = comparison.metrics
    headline = comparison.headline.key
    cen = _by_seed([c for c in report["cells"] if c["method"] == "cen"], modalities, headline)
    rows = []
    for method in report["methods"]:
        cells = [c for c in report["cells"] if c["method"] == method]
        ok = [c for c in cells if c["status"] == "ok"]
        columns: dict[str, dict[str, Any]] = {}
        for column in [*modalities, "ensemble"]:
            for metric in metrics:
                values = []
                for cell in ok:
                    output = _output_names(cell, modalities).get(column)
                    if output is not None:
                        values.append(reported_scores(cell)[output].get(metric))
                stats = _mean_std(values)
                if stats is not None:
                    columns.setdefault(column, {})[metric] = stats
        rows.append(
            {
                "method": method,
                "description": report["descriptions"].get(method, ""),
                "seeds": len(cells),
                "ok": len(ok),
                "statuses": {s: sum(c["status"] == s for c in cells) for s in NOT_OK},
                "errors": sorted({c["error"] for c in cells if c["error"]}),
                "scores": columns,
                "total_params": max((c["total_params"] for c in cells), default=0),
                "fusion_params": max((c["fusion_params"] for c in cells), default=0),
                "train_seconds": _mean_std([c["train_seconds"] for c in ok]),
                "paired_vs_cen": _paired(_by_seed(ok, modalities, headline), cen),
                "split": "test" if ok and all(c.get("test_scores") for c in ok) else "val",
                "last_quarter_gain": _mean_std(
                    [improvement(c.get("last_quarter_gain"), comparison.sign) for c in ok]
                ),
                "epochs": _mean_std([len(c["epochs"]) for c in ok if c.get("epochs")]),
                "rise_at_full_rate": _mean_std(
                    [improvement(_rise_at_full_rate(c), comparison.sign) for c in ok]
                ),
            }
        )
    return rows


def _rise_at_full_rate(cell: dict[str, Any]) -> float | None:
    """A run's validation climb per epoch when its full learning rate ended, from its curve
    and the first learning rate its epoch records hold (``lr_encoder``, ``lr_generator``)."""
    epochs = cell.get("epochs") or []
    keys = [k for k in (epochs[0] if epochs else {}) if k.startswith("lr_")]
    if not keys or not all(keys[0] in e for e in epochs):
        return None
    rates = [float(e[keys[0]]) for e in epochs]
    return rise_at_full_rate(cell.get("val_curve") or [], rates)


def _paired(values: dict[int, float], cen: dict[int, float]) -> dict[str, Any] | None:
    difference = paired_difference(values, cen)
    return None if difference is None else difference.as_dict()


def stats_text(stats: dict[str, float] | None, scale: float, digits: int) -> str:
    """``mean ± half width of the 95 % interval`` (the mean alone for one seed)."""
    if stats is None:
        return "—"
    text = f"{stats['mean'] * scale:.{digits}f}"
    if stats.get("half_width") is not None:
        text += f" ± {stats['half_width'] * scale:.{digits}f}"
    return text


def machine_label(machine: dict[str, Any]) -> str:
    """``processor (capability)`` of a run's recorded machine; empty when none was recorded."""
    if not machine:
        return ""
    capability = machine.get("cpu_capability")
    return str(machine.get("processor", "?")) + (f" ({capability})" if capability else "")


def _cells_machine(report: dict[str, Any]) -> dict[str, Any]:
    """Where the finished cells trained (the first one's machine; the report's own for cells
    written before cells recorded it). Several machines are named in ``processor``."""
    machines = [
        c["machine"] for c in report["cells"] if c.get("status") == "ok" and c.get("machine")
    ]
    if not machines:
        return report["machine"]
    names = sorted({machine_label(m) for m in machines})
    first = dict(machines[0])
    if len(names) > 1:
        first["processor"], first["cpu_capability"] = " / ".join(names), None
    return first


def _splits(rows: list[dict[str, Any]]) -> str:
    """``test``, ``validation`` or ``test (validation for some methods)``."""
    splits = {row.get("split", "val") for row in rows if row["ok"]}
    if splits == {"test"}:
        return "held-out test"
    return "validation" if splits <= {"val"} else "test (validation for some methods)"


def _count(n: int) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    if n >= 1e3:
        return f"{n / 1e3:.1f}K"
    return str(n)


def runs_text(row: dict[str, Any]) -> str:
    """``3/5 ok (2 pending)``: how many of a method's seeds finished, and what the rest did."""
    bad = [f"{n} {s}" for s, n in row["statuses"].items() if n]
    return f"{row['ok']}/{row['seeds']} ok" + (f" ({', '.join(bad)})" if bad else "")


def format_markdown(report: dict[str, Any]) -> str:
    """The comparison as Markdown: the command, the table, where CEN stands, failures."""
    rows = report["summary"]
    modalities = report["modalities"]
    comparison = get_task(report["task"]).comparison
    headline = comparison.headline
    lines = [f"# Comparison on `{report['config']}` ({report['task']})", ""]
    if report.get("command"):
        lines += ["Reproduce with:", "", "```bash", report["command"], "```", ""]
    machine = _cells_machine(report)
    lines += [
        f"{report['seeds']} seed(s) per method, paired (seed k: the same initialisation rule "
        "and data order for every method); mean ± half width of the 95 % confidence interval "
        "(Student's t) over the seeds that finished, on the "
        f"{_splits(rows)} split. `gain last ¼`: how much the validation {headline.label} still "
        "improved over the last quarter of training (positive: still improving; convergence "
        "asks for little); `epochs`: how many a run trained (more than its schedule where "
        "`train.until_converged` trained it on until converged). "
        f"Machine: {machine_label(machine)}, {machine['threads']} threads, torch "
        f"{machine['torch']}{', ' + machine['cuda'] if machine.get('cuda') else ''} "
        f"({machine['date']}).",
        "",
    ]
    header = [
        "method",
        *[f"{m} {headline.label}" for m in modalities],
        f"ensemble {headline.label}",
        *[column.label for column in comparison.ensemble],
    ]
    header += ["gain last ¼", "epochs", "params", "fusion params", "train s", "runs"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        scores = row["scores"]

        def get(column: str, metric: str, scores: dict = scores) -> dict[str, float] | None:
            return scores.get(column, {}).get(metric)

        columns = [(m, headline) for m in modalities] + [("ensemble", headline)]
        columns += [("ensemble", column) for column in comparison.ensemble]
        values = [stats_text(get(output, c.key), c.scale, c.digits) for output, c in columns]
        values += [
            stats_text(row.get("last_quarter_gain"), headline.scale, headline.digits),
            stats_text(row.get("epochs"), 1, 1),
            _count(row["total_params"]),
            _count(row["fusion_params"]),
            stats_text(row["train_seconds"], 1, 0),
            runs_text(row),
        ]
        lines.append("| " + " | ".join([f"`{row['method']}`", *values]) + " |")
    lines += ["", *_where_cen_stands(rows, comparison), *_methods_and_failures(rows)]
    return "\n".join(lines) + "\n"


def cen_minus(paired: dict[str, Any], comparison: ComparisonMetrics) -> tuple[str, str]:
    """CEN minus a method (positive: CEN better) from a row's ``paired_vs_cen`` as
    ``("+1.23 ± 0.45", verdict)``; the verdict is ``CEN ahead`` or ``CEN behind`` only where
    the 95 % interval excludes zero."""
    headline = comparison.headline
    scale, digits = headline.scale, headline.digits
    difference = -paired["mean"] * comparison.sign * scale  # the row holds method - CEN
    if paired["half_width"] is None:
        return f"{difference:+.{digits}f}", "one seed: no interval"
    half = paired["half_width"] * scale
    text = f"{difference:+.{digits}f} ± {half:.{digits}f}"
    if abs(difference) <= half:
        return text, "not resolved"
    return text, "CEN ahead" if difference > 0 else "CEN behind"


def _where_cen_stands(rows: list[dict[str, Any]], comparison: ComparisonMetrics) -> list[str]:
    """CEN's ensemble against every other method's final prediction: the paired difference
    with its 95 % interval, in plain words."""
    headline, unit = comparison.headline, comparison.unit
    if not any(r["method"] == "cen" for r in rows):
        return []
    lines = ["## Where CEN stands", ""]
    lines.append(
        f"CEN's ensemble {headline.label} minus each method's final prediction's, seed by seed "
        f"(positive: CEN better), with the 95 % interval of the mean difference over the paired "
        "seeds; an interval that contains zero does not resolve the two methods."
    )
    lines.append("")
    verdicts = []
    for row in rows:
        paired = row.get("paired_vs_cen")
        if row["method"] == "cen" or paired is None:
            continue
        difference, verdict = cen_minus(paired, comparison)
        verdicts.append(verdict)
        lines.append(
            f"- `{row['method']}`: {difference}{unit} "
            f"({paired['n']} paired seed{'s' if paired['n'] != 1 else ''}): {verdict}"
        )
    ahead, behind = verdicts.count("CEN ahead"), verdicts.count("CEN behind")
    tied = len(verdicts) - ahead - behind
    lines += [
        "",
        f"In sum: CEN ahead of {ahead}, behind {behind}, not resolved against {tied} method(s).",
        "",
    ]
    return lines


def _methods_and_failures(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["## Methods", ""]
    lines += [f"- `{r['method']}`: {r['description']}" for r in rows]
    failed = [r for r in rows if r["errors"]]
    if failed:
        lines += ["", "## Runs that did not finish", ""]
        for row in failed:
            lines += [f"- `{row['method']}`: {error}" for error in row["errors"]]
    return lines
