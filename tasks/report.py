"""The cross-experiment summary: one Markdown table built from every ``metrics.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def collect_metrics(results_dir: str | Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """Each named experiment's `metrics.json`; an experiment not run yet is reported as missing, not skipped."""
    collected = {}
    for name in names:
        path = Path(results_dir) / name / "metrics.json"
        collected[name] = json.loads(path.read_text()) if path.is_file() else {}
    return collected


def summary_rows(metrics: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per experiment, in a shape both Markdown and Prefect's table artifact take."""
    rows = []
    for name, m in metrics.items():
        if not m:
            rows.append({"experiment": name, "metric": "", "mean": "", "std": "", "folds": 0, "baseline": "",
                         "seconds": ""})
            continue
        baseline = m.get("baseline")
        rows.append({"experiment": name, "metric": m["metric"], "mean": round(m["mean"], 4),
                     "std": round(m["std"], 4), "folds": m["n_folds"],
                     "baseline": round(baseline["mean"], 4) if baseline else "", "seconds": m["seconds"]})
    return rows


def render_markdown(metrics: dict[str, dict[str, Any]]) -> str:
    lines = ["# kerasflow results", "",
             "| experiment | metric | mean ± std | folds | naive last value | seconds |", "|---|---|---|---|---|---|"]
    for row in summary_rows(metrics):
        if not row["metric"]:
            lines.append(f"| {row['experiment']} | not run yet | | | | |")
            continue
        lines.append(f"| {row['experiment']} | {row['metric']} | {row['mean']:.4f} ± {row['std']:.4f} "
                     f"| {row['folds']} | {row['baseline']} | {row['seconds']} |")
    return "\n".join(lines) + "\n"
