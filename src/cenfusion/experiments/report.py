"""Tables of a comparison: mean ± std over seeds per method, Markdown and JSON.

Segmentation rows give every branch's mIoU and the ensemble's mIoU, pixel and mean accuracy
(for a unimodal network its one branch is its prediction, so it fills its modality's column
and the ensemble columns). Translation rows give every branch's L1 and the ensemble's L1,
FID and KID x100 when an Inception was available. A method with diverged or failed seeds says
so in its row; it is never dropped.
"""

from __future__ import annotations

import statistics
from typing import Any

from cenfusion.tasks import ComparisonMetrics, get_task

NOT_OK = ("diverged", "failed", "pending")


def _output_names(cell: dict[str, Any], modalities: list[str]) -> dict[str, str]:
    """Column name -> output name of this cell (a unimodal cell's branch is also its ensemble)."""
    outputs = list(cell["scores"])
    branches = [name for name in outputs if name != "ensemble"]
    mapping = {name: name for name in branches if name in modalities}
    if "ensemble" in outputs:
        mapping["ensemble"] = "ensemble"
    return mapping


def _mean_std(values: list[float]) -> dict[str, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "n": len(values)}


def summarise(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per method: statuses, mean/std of every (column, metric), params, time."""
    modalities = report["modalities"]
    metrics = get_task(report["task"]).comparison.metrics
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
                        values.append(cell["scores"][output].get(metric))
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
            }
        )
    return rows


def _cell(stats: dict[str, float] | None, scale: float, digits: int) -> str:
    if stats is None:
        return "—"
    text = f"{stats['mean'] * scale:.{digits}f}"
    if stats["n"] > 1:
        text += f" ± {stats['std'] * scale:.{digits}f}"
    return text


def _count(n: int) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    if n >= 1e3:
        return f"{n / 1e3:.1f}K"
    return str(n)


def _status(row: dict[str, Any]) -> str:
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
    machine = report["machine"]
    lines += [
        f"{report['seeds']} seed(s) per method; mean ± std over the seeds that finished. "
        f"Machine: {machine['processor']}, {machine['threads']} threads, torch "
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
    header += ["params", "fusion params", "train s", "runs"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        scores = row["scores"]

        def get(column: str, metric: str, scores: dict = scores) -> dict[str, float] | None:
            return scores.get(column, {}).get(metric)

        columns = [(m, headline) for m in modalities] + [("ensemble", headline)]
        columns += [("ensemble", column) for column in comparison.ensemble]
        values = [_cell(get(output, c.key), c.scale, c.digits) for output, c in columns]
        values += [
            _count(row["total_params"]),
            _count(row["fusion_params"]),
            _cell(row["train_seconds"], 1, 0),
            _status(row),
        ]
        lines.append("| " + " | ".join([f"`{row['method']}`", *values]) + " |")
    lines += ["", *_where_cen_stands(rows, comparison), *_methods_and_failures(rows)]
    return "\n".join(lines) + "\n"


def _where_cen_stands(rows: list[dict[str, Any]], comparison: ComparisonMetrics) -> list[str]:
    """CEN's ensemble against every other method's final prediction, in plain words."""
    headline = comparison.headline
    metric, better, unit, scale = headline.key, comparison.sign, comparison.unit, headline.scale
    cen = next((r for r in rows if r["method"] == "cen"), None)
    reference = None if cen is None else cen["scores"].get("ensemble", {}).get(metric)
    if reference is None:
        return []
    lines = ["## Where CEN stands", ""]
    lines.append(
        f"CEN's ensemble {headline.label} against each method's final "
        "prediction; a difference inside the seeds' spread (√(std₁² + std₂²)) is no evidence "
        "either way."
        + (
            " With one seed there is no spread: every difference is a single draw."
            if reference["n"] < 2
            else ""
        )
    )
    lines.append("")
    ahead = behind = tied = 0
    for row in rows:
        other = row["scores"].get("ensemble", {}).get(metric)
        if row is cen or other is None:
            continue
        difference = (reference["mean"] - other["mean"]) * better * scale
        spread = (reference["std"] ** 2 + other["std"] ** 2) ** 0.5 * scale
        if abs(difference) <= spread:
            verdict, tied = "within the spread", tied + 1
        elif difference > 0:
            verdict, ahead = "CEN ahead", ahead + 1
        else:
            verdict, behind = "CEN behind", behind + 1
        digits = headline.digits
        lines.append(
            f"- `{row['method']}`: {difference:+.{digits}f}{unit} "
            f"(spread {spread:.{digits}f}): {verdict}"
        )
    lines += [
        "",
        f"In sum: CEN ahead of {ahead}, behind {behind}, within the spread of {tied} method(s).",
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
