"""A finished sweep's outputs: trials.csv (best first), best.json with sweep.json, and the best model."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kerasflow.tasks.config.errors import SweepError
from kerasflow.tasks.config.schema import ExperimentSpec
from kerasflow.tasks.config.search import SearchSpec
from kerasflow.tasks.data.split import make_splits
from kerasflow.tasks.data.table import Table
from kerasflow.tasks.outputs.atomic import atomic_path
from kerasflow.tasks.outputs.metrics import write_sweep_best
from kerasflow.tasks.outputs.results import write_model
from kerasflow.tasks.sweep.checkpoint import restore_state
from kerasflow.tasks.sweep.groups import config_id, scoring_spec, trial_configs
from kerasflow.tasks.training import evaluate
from kerasflow.tasks.training.models import build_model, make_optimizer

if TYPE_CHECKING:  # the results are read through their attributes: this module runs without Ray
    from ray import tune


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
    """One row per config, best first: its id (its history folder's name), params, score mean/std, epochs, seconds,
    node, status, and the Ray Tune trial that trained it (the configs of a stacked group share their trial, its
    seconds and node). A config that diverged has status "diverged" and no score: it comes last, with the errors."""
    rows = []
    for result in grid:
        metrics = result.metrics or {}
        configs = trial_configs(result.config or {})
        unscored = [None] * len(configs)  # a trial that failed before its first report
        scores, stds = metrics.get("scores") or unscored, metrics.get("score_stds") or unscored
        for config, score, score_std in zip(configs, scores, stds):
            diverged = score is not None and not math.isfinite(score)  # a fold's loss became NaN or infinite
            if diverged:
                score, score_std = None, None
            rows.append({"config_id": config_id(config), **{f"param:{k}": v for k, v in config.items()},
                         "score": score, "score_std": score_std,
                         "epochs": metrics.get("epoch"), "seconds": metrics.get("trial_seconds"),
                         "node": metrics.get("node"), "started_at": metrics.get("started_at"),
                         "trial_id": metrics.get("trial_id"), "configs_in_trial": len(configs),
                         "status": "error" if result.error else "diverged" if diverged else "ok"})
    # Best first; among equal scores, the steadier across folds.
    sign = -1 if higher_is_better else 1
    ok = sorted((r for r in rows if r["score"] is not None), key=lambda r: (sign * r["score"], r["score_std"]))
    return ok + [r for r in rows if r["score"] is None]


def export_best(name: str, spec: ExperimentSpec, sweep: SearchSpec, grid: tune.ResultGrid, table: Table,
                labels: evaluate.Encoded, out_dir: Path, seconds: float | None = None) -> dict[str, Any]:
    """Write trials.csv, best.json with sweep.json (:mod:`kerasflow.tasks.outputs.metrics`) and the best model
    (with its preprocessing) under `out_dir`; return the best's record.

    k-fold scoring trains k models per config: the best config is refitted on all rows, as GridSearchCV's
    `refit=True` does. Hold-out scoring trains one: the best trial's best checkpoint is the model kept.
    `seconds` is the sweep's wall time, recorded in sweep.json.
    """
    mode = "max" if spec.higher_is_better else "min"
    rows = trial_rows(grid, spec.higher_is_better)
    n_diverged = sum(r["status"] == "diverged" for r in rows)
    counts = {"n_configs": len(rows), "n_trials": len(grid), "n_errors": sum(r["status"] == "error" for r in rows),
              "n_diverged": n_diverged, "seconds": seconds}
    if rows and n_diverged == len(rows):
        # Every config's training diverged: a result, stated (no best score, and sweep.json says so); no model is
        # written, as for a diverged refit.
        summary = {"experiment": name, "metric": spec.metric, "mode": mode, "params": None, "score": None,
                   "score_std": None, "scoring": sweep.scoring, "checkpoint": None, "checkpoint_epoch": None,
                   "diverged": True, **counts}
        write_trials(out_dir / "trials.csv", rows)
        write_sweep_best(out_dir, summary)
        return summary
    if not rows or rows[0]["score"] is None:
        raise SweepError(f"sweeps.{name}: no config finished with a finite score ({len(rows)} configs, "
                         f"{n_diverged} diverged); first error: {grid.errors[:1]}")
    best = next(result for result in grid if (result.metrics or {}).get("trial_id") == rows[0]["trial_id"])
    best_params = {key.removeprefix("param:"): value for key, value in rows[0].items() if key.startswith("param:")}
    best_spec = spec.with_overrides(best_params)
    # The trial's best checkpoint by score, and the metrics it was reported with.
    ranked = sorted(best.best_checkpoints or [], key=lambda pair: pair[1]["score"], reverse=spec.higher_is_better)
    checkpoint, at_checkpoint = ranked[0] if ranked else (None, {})
    score, score_std = rows[0]["score"], rows[0]["score_std"]
    if sweep.scoring == "holdout" and checkpoint is not None:
        with checkpoint.as_directory() as directory:
            final = holdout_model(best_spec, sweep, table, labels, Path(directory))
        score, score_std = at_checkpoint["score"], at_checkpoint["score_std"]
    else:
        final = evaluate.refit(best_spec, table, labels)
    write_model(out_dir / "best_model", best_spec, final)
    summary = {"experiment": name, "metric": spec.metric, "mode": mode, "params": best_params,
               "score": score, "score_std": score_std, "scoring": sweep.scoring,
               "checkpoint": _portable(checkpoint.path) if checkpoint is not None else None,
               "checkpoint_epoch": at_checkpoint.get("epoch"), "diverged": False, **counts}
    write_trials(out_dir / "trials.csv", rows)
    write_sweep_best(out_dir, summary)
    return summary


def holdout_model(spec: ExperimentSpec, sweep: SearchSpec, table: Table, labels: evaluate.Encoded,
                  checkpoint_dir: Path) -> evaluate.FinalModel:
    """The hold-out-scored model a trial saved in `checkpoint_dir`, with the preprocessing of its split: the same
    split and the same fitted preprocessing as the trial's, so it reproduces the checkpoint's score."""
    rows_table, rows_labels = evaluate.supervised(spec, table, labels)
    (split,) = make_splits(scoring_spec(spec, sweep).evaluate, rows_labels.codes)
    fold, preprocessor = evaluate.fit_split(spec, rows_table, rows_labels, split)
    model = build_model(spec.model, fold.X_train.shape[1], spec.train.seed, fold.target_scale)
    model.compile(optimizer=make_optimizer(spec.train), loss=spec.loss)
    restore_state(model, checkpoint_dir)
    return evaluate.FinalModel(model=model, preprocessor=preprocessor, codec=labels.codec,
                               target_scale=fold.target_scale)


def _portable(path: str) -> str:
    """A checkpoint path as committed files should hold it: relative to the project when inside it."""
    local = Path(path)
    return str(local.relative_to(Path.cwd())) if local.is_relative_to(Path.cwd()) else path
