"""A finished sweep's outputs: trials.csv (best first), best.json and the best model."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from ray import tune

from kerasflow.tasks.outputs.atomic import atomic_path
from kerasflow.tasks.sweep.groups import trial_configs


def write_trials(path: Path, rows: list[dict[str, Any]]) -> None:
    """The sweep's `cv_results_`: one row per trial, best first."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())


def trial_rows(grid: tune.ResultGrid, higher_is_better: bool) -> list[dict[str, Any]]:
    """One row per config, best first: params, score mean/std, epochs, seconds, node, status, and the Ray Tune
    trial that trained it (the configs of a stacked group share their trial, its seconds and node)."""
    rows = []
    for result in grid:
        metrics = result.metrics or {}
        configs = trial_configs(result.config or {})
        unscored = [None] * len(configs)  # a trial that failed before its first report
        scores, stds = metrics.get("scores") or unscored, metrics.get("score_stds") or unscored
        for config, score, score_std in zip(configs, scores, stds):
            rows.append({**{f"param:{k}": v for k, v in config.items()},
                         "score": score, "score_std": score_std,
                         "epochs": metrics.get("epoch"), "seconds": metrics.get("trial_seconds"),
                         "node": metrics.get("node"), "started_at": metrics.get("started_at"),
                         "trial_id": metrics.get("trial_id"), "configs_in_trial": len(configs),
                         "status": "error" if result.error else "ok"})
    # Best first; among equal scores, the steadier across folds.
    sign = -1 if higher_is_better else 1
    ok = sorted((r for r in rows if r["score"] is not None), key=lambda r: (sign * r["score"], r["score_std"]))
    return ok + [r for r in rows if r["score"] is None]
