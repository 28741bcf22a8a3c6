"""A finished sweep's outputs: trials.csv (best first), best.json with sweep.json, and the best model."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kerasflow.tasks.config.errors import SweepError
from kerasflow.tasks.config.schema import ExperimentSpec
from kerasflow.tasks.config.search import SearchSpec
from kerasflow.tasks.data.preprocess import Preprocessor
from kerasflow.tasks.data.split import SAME_FOLDS
from kerasflow.tasks.data.table import Table
from kerasflow.tasks.outputs.atomic import atomic_path
from kerasflow.tasks.outputs.metrics import (
    PARAM_PREFIX,
    TRIALS_FILE,
    finish_sweep,
    row_params,
    sweep_started_at,
    write_sweep_best,
)
from kerasflow.tasks.outputs.results import write_model
from kerasflow.tasks.sweep.checkpoint import restore_state
from kerasflow.tasks.sweep.groups import config_id, scoring_spec, trial_configs
from kerasflow.tasks.training import evaluate
from kerasflow.tasks.training.models import build_model, make_loss, make_optimizer
from kerasflow.tasks.training.scoring import first_non_finite
from kerasflow.tasks.training.statistics import corrected_t, score_range, split_ratio
from kerasflow.tasks.training.train import FoldData, train_fold

if TYPE_CHECKING:  # the results are read through their attributes: this module runs without Ray
    from ray import tune


TIE_LEVEL = 0.05
"""A config whose difference from the best has a p-value at least this is "statistically tied" with it."""


def write_trials(path: Path, rows: list[dict[str, Any]]) -> None:
    """The sweep's `cv_results_`: one row per trial, best first; a list (a config's fold scores) or a mapping (a
    loss with arguments) as JSON."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: json.dumps(value) if isinstance(value, list | dict) else value for key, value in row.items()}
                     for row in rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())


def stopped_early(spec: ExperimentSpec, sweep: SearchSpec, config: dict[str, Any], trained: int | None) -> bool:
    """Whether Ray Tune's scheduler (ASHA) stopped `config` of the sweep after `trained` epochs, before its own
    `train.epochs`. Ray records no difference between a trial its scheduler stopped and one that ended, so a config
    that may end early by itself (early stopping, the experiment's or its own) is never taken for stopped."""
    if sweep.scheduler != "asha" or trained is None:
        return False
    own = spec.with_overrides(config).train
    return own.early_stopping is None and trained < own.epochs


def trial_rows(grid: tune.ResultGrid, spec: ExperimentSpec, sweep: SearchSpec) -> list[dict[str, Any]]:
    """One row per config, best first: its id (its history folder's name), params, score mean/std and fold scores,
    the epochs it trained (so far, in an unfinished trial), seconds, node, status, and the Ray Tune trial that
    trained it (the configs of a stacked group share their trial, its seconds and node). The configs that finished
    come first; a config whose trial failed (status "error") or that the scheduler stopped (:func:`stopped_early`:
    "stopped") keeps the score of its last report, ranked after them, as it never trained all its epochs; one that
    diverged has status "diverged" and no score: it comes last, with the errors that never reported."""
    rows = []
    made: dict[int, tuple[str, int]] = {}  # each row's trial and place in it: ties' order, the same on a resume
    for result in grid:
        metrics = result.metrics or {}
        configs = trial_configs(result.config or {})
        unscored = [None] * len(configs)  # a trial that failed before its first report
        scores, stds = metrics.get("scores") or unscored, metrics.get("score_stds") or unscored
        trained = metrics.get("epochs") or [metrics.get("epoch")] * len(configs)
        for place, (config, score, score_std, folds, config_epochs) in enumerate(zip(
                configs, scores, stds, metrics.get("fold_scores") or unscored, trained)):
            diverged = score is not None and not math.isfinite(score)  # a fold's loss became NaN or infinite
            if diverged:
                score, score_std, folds = None, None, None
            status = ("error" if result.error else "diverged" if diverged
                      else "stopped" if stopped_early(spec, sweep, config, config_epochs) else "ok")
            rows.append({"config_id": config_id(config), **{f"{PARAM_PREFIX}{k}": v for k, v in config.items()},
                         "score": score, "score_std": score_std, "fold_scores": folds,
                         "epochs": config_epochs, "seconds": metrics.get("trial_seconds"),
                         "node": metrics.get("node"), "started_at": metrics.get("started_at"),
                         "trial_id": metrics.get("trial_id"), "configs_in_trial": len(configs),
                         "status": status})
            made[id(rows[-1])] = (metrics.get("trial_id") or "", place)
    # Best first; among equal scores, the steadier across folds, then the first in the search's order (Ray Tune
    # numbers its trials as it makes them, a grid's in the grid's order; the results come back in any order).
    sign = -1 if spec.higher_is_better else 1
    scored = sorted((r for r in rows if r["score"] is not None),
                    key=lambda r: (sign * r["score"], r["score_std"], made[id(r)]))
    ranked = ([r for r in scored if r["status"] == "ok"] + [r for r in scored if r["status"] != "ok"]
              + [r for r in rows if r["score"] is None])
    # Optuna may propose a config it has tried: trained again alike (same seeds), it is one config, listed once,
    # at its best-ranked trial.
    seen: set[str] = set()
    unique = []
    for row in ranked:
        if row["config_id"] not in seen:
            seen.add(row["config_id"])
            unique.append(row)
    return unique


def finished(row: dict[str, Any]) -> bool:
    """Whether a trials row is a config that trained all its epochs and has a score: one a sweep may pick."""
    return row["status"] == "ok" and row["score"] is not None


def with_ties(rows: list[dict[str, Any]], ratio: float | None, metric: str) -> list[dict[str, Any]]:
    """`rows` (best first) with each finished config's 95% interval of its `metric` (`score_low`, `score_high`)
    and the p-value of its difference from the best, paired fold by fold (`p_vs_best`): the corrected resampled
    t-test of :mod:`kerasflow.tasks.training.statistics`, `ratio` being the folds' held-out rows per training row.
    A config with p ≥ :data:`TIE_LEVEL` is `tied_with_best`: the folds cannot tell it from the best, the best
    included.

    `ratio` None (one hold-out split, or configs scored on different folds) leaves the four columns empty, as
    does a config without two finite fold scores, or one that did not train all its epochs (status "error" or
    "stopped": its scores are from an earlier epoch than the others').

    Examples
    --------
    Three folds of 3-fold CV (held-out rows half the training rows): the second config is 0.1 below the best on
    every fold, the third 0.05 below on average but by 0, 0.1 and 0.05; the fourth's trial failed.

    >>> rows = [{"score": 0.9, "fold_scores": [0.9, 0.8, 1.0], "status": "ok"},
    ...         {"score": 0.8, "fold_scores": [0.8, 0.7, 0.9], "status": "ok"},
    ...         {"score": 0.85, "fold_scores": [0.9, 0.7, 0.95], "status": "ok"},
    ...         {"score": 0.85, "fold_scores": [0.9, 0.7, 0.95], "status": "error"}]
    >>> marked = with_ties(rows, 0.5, "accuracy")
    >>> [(row["p_vs_best"] and round(row["p_vs_best"], 3), row["tied_with_best"]) for row in marked]
    [(None, True), (0.0, False), (0.388, True), (None, None)]
    >>> round(marked[0]["score_low"], 3), marked[0]["score_high"]
    (0.507, 1.0)
    """
    finished = [row for row in rows if row["status"] == "ok"]
    best = finished[0]["fold_scores"] if finished else None
    pairs = ratio is not None and best is not None and len(best) > 1 and all(map(math.isfinite, best))
    marked = []
    for row in rows:
        folds = row.get("fold_scores")
        if (not pairs or row["status"] != "ok" or folds is None or len(folds) != len(best)
                or not all(map(math.isfinite, folds))):
            marked.append({**row, "score_low": None, "score_high": None, "p_vs_best": None, "tied_with_best": None})
            continue
        interval = corrected_t(folds, ratio, within=score_range(metric))
        p = None if row is finished[0] else corrected_t([b - f for b, f in zip(best, folds)], ratio).p
        marked.append({**row, "score_low": interval.low, "score_high": interval.high, "p_vs_best": p,
                       "tied_with_best": p is None or p >= TIE_LEVEL})
    return marked


def fold_ratio(spec: ExperimentSpec, sweep: SearchSpec, table: Table, labels: evaluate.Encoded) -> float | None:
    """Held-out rows per training row of the folds every config was scored on; None where configs are not paired
    fold by fold: hold-out scoring (one score each), or a space that changes which rows the folds hold
    (:data:`kerasflow.tasks.data.split.SAME_FOLDS`)."""
    if sweep.scoring != "kfold" or any(key in SAME_FOLDS for key in sweep.space):
        return None
    _, rows_labels = evaluate.supervised(spec, table, labels)
    return split_ratio(evaluate.experiment_splits(scoring_spec(spec, sweep), rows_labels, table.source))


def export_best(name: str, spec: ExperimentSpec, sweep: SearchSpec, grid: tune.ResultGrid, table: Table,
                labels: evaluate.Encoded, out_dir: Path, seconds: float | None = None,
                resumed: bool = False) -> dict[str, Any]:
    """Write trials.csv, best.json with sweep.json (:mod:`kerasflow.tasks.outputs.metrics`) and the best model
    (with its preprocessing) under `out_dir`; return the best's record.

    k-fold scoring trains k models per config: the best config is refitted on all rows, as GridSearchCV's
    `refit=True` does. Hold-out scoring trains one: the best trial's best checkpoint is the model kept; where the
    trial saved none (early stopping ended it before one was due), the config is trained again as its trial was
    (:func:`holdout_retrained`), and its score is that model's.
    `seconds` is the wall time of the command that ran the sweep, recorded in sweep.json; of a command that
    `resumed` it, the resume's alone (a killed command's time is nowhere recorded), and sweep.json says it was
    resumed (`"resumed": true`; trials.csv's seconds are each trial's, whichever command trained it). A refit whose
    loss became NaN or infinite saves no model: sweep.json records the epoch (`refit_diverged_at`), as run.json does
    an experiment's.
    """
    mode = "max" if spec.higher_is_better else "min"
    rows = with_ties(trial_rows(grid, spec, sweep), fold_ratio(spec, sweep, table, labels), spec.metric)
    statuses = Counter(row["status"] for row in rows)
    n_diverged, n_stopped = statuses["diverged"], statuses["stopped"]
    counts = {"n_configs": len(rows), "n_trials": len(grid), "n_errors": statuses["error"], "n_diverged": n_diverged,
              "n_stopped": n_stopped, "seconds": seconds, **({"resumed": True} if resumed else {}),
              "started_at": sweep_started_at(out_dir)}
    if rows and n_diverged == len(rows):
        # Every config's training diverged: a result, stated (no best score, and sweep.json says so); no model is
        # written, as for a diverged refit.
        summary = {"experiment": name, "metric": spec.metric, "mode": mode, "params": None, "score": None,
                   "score_std": None, "score_low": None, "score_high": None, "tied": [],
                   "scoring": sweep.scoring, "checkpoint": None, "checkpoint_epoch": None,
                   "diverged": True, **counts}
        write_trials(out_dir / TRIALS_FILE, rows)
        write_sweep_best(out_dir, summary)
        shutil.rmtree(out_dir / "best_model", ignore_errors=True)  # an earlier sweep's: not this one's best
        finish_sweep(out_dir)
        return summary
    if not rows or not finished(rows[0]):
        first_error = next((result.error for result in grid if result.error), None)
        raise SweepError(f"sweeps.{name}: no config finished with a finite score ({len(rows)} configs, "
                         f"{n_diverged} diverged, {n_stopped} stopped by ASHA)"
                         + (f"; first error: {first_error}" if first_error else ""))
    best = next(result for result in grid if (result.metrics or {}).get("trial_id") == rows[0]["trial_id"])
    params = row_params(rows[0])
    best_spec = spec.with_overrides(params)
    # The trial's best checkpoint by score, and the metrics it was reported with.
    ranked = sorted(best.best_checkpoints or [], key=lambda pair: pair[1]["score"], reverse=spec.higher_is_better)
    checkpoint, at_checkpoint = ranked[0] if ranked else (None, {})
    score, score_std, low, high = (rows[0][key] for key in ("score", "score_std", "score_low", "score_high"))
    if sweep.scoring == "holdout" and checkpoint is not None:
        with checkpoint.as_directory() as directory:
            final = holdout_model(best_spec, sweep, table, labels, Path(directory))
        score, score_std = at_checkpoint["score"], at_checkpoint["score_std"]
    elif sweep.scoring == "holdout":
        final, score = holdout_retrained(best_spec, sweep, table, labels)
        score_std = 0.0  # one split's one score, as the trial reported it
    else:
        final = evaluate.refit(best_spec, table, labels)
    if final.diverged_at is None:
        write_model(out_dir / "best_model", best_spec, final)
    else:  # a diverged refit's weights are not a model; an earlier sweep's is not this one's best
        shutil.rmtree(out_dir / "best_model", ignore_errors=True)
    summary = {"experiment": name, "metric": spec.metric, "mode": mode, "params": params,
               "score": score, "score_std": score_std, "score_low": low, "score_high": high,
               "tied": [row["config_id"] for row in rows if row["tied_with_best"]], "scoring": sweep.scoring,
               "checkpoint": _portable(checkpoint.path) if checkpoint is not None else None,
               "checkpoint_epoch": at_checkpoint.get("epoch"), "diverged": False,
               **({"refit_diverged_at": final.diverged_at} if final.diverged_at is not None else {}), **counts}
    write_trials(out_dir / TRIALS_FILE, rows)
    write_sweep_best(out_dir, summary)
    finish_sweep(out_dir)
    return summary


def _holdout_fold(spec: ExperimentSpec, sweep: SearchSpec, table: Table,
                  labels: evaluate.Encoded) -> tuple[FoldData, Preprocessor]:
    """A hold-out trial's split, with the preprocessing fitted on its training rows, as the trial had them."""
    rows_table, rows_labels = evaluate.supervised(spec, table, labels)
    (split,) = evaluate.experiment_splits(scoring_spec(spec, sweep), rows_labels, table.source)
    return evaluate.fit_split(spec, rows_table, rows_labels, split)


def holdout_model(spec: ExperimentSpec, sweep: SearchSpec, table: Table, labels: evaluate.Encoded,
                  checkpoint_dir: Path) -> evaluate.FinalModel:
    """The hold-out-scored model a trial saved in `checkpoint_dir`, with the preprocessing of its split: the same
    split and the same fitted preprocessing as the trial's, so it reproduces the checkpoint's score."""
    fold, preprocessor = _holdout_fold(spec, sweep, table, labels)
    model = build_model(spec.model, fold.X_train.shape[1], spec.train.seed, fold.target_scale)
    model.compile(optimizer=make_optimizer(spec.train), loss=make_loss(spec, fold.target_scale))
    restore_state(model, checkpoint_dir)
    return evaluate.FinalModel(model=model, preprocessor=preprocessor, codec=labels.codec,
                               target_scale=fold.target_scale)


def holdout_retrained(spec: ExperimentSpec, sweep: SearchSpec, table: Table,
                      labels: evaluate.Encoded) -> tuple[evaluate.FinalModel, float]:
    """A hold-out-scored config trained again on its trial's split, preprocessing and seed, and its score on the
    held-out rows. On the machine that ran the trial, training is deterministic: this is the trial's model (with
    early stopping's `restore_best_weights`, its best epoch's weights, so its score may differ from the last
    epoch's that ranked the trial in trials.csv)."""
    fold, preprocessor = _holdout_fold(spec, sweep, table, labels)
    model, result = train_fold(spec, fold, 0)
    final = evaluate.FinalModel(model=model, preprocessor=preprocessor, codec=labels.codec,
                                target_scale=fold.target_scale, diverged_at=first_non_finite(result.history["loss"]))
    return final, result.score


def _portable(path: str) -> str:
    """A checkpoint path as committed files should hold it: relative to the project when inside it."""
    local = Path(path)
    return str(local.relative_to(Path.cwd())) if local.is_relative_to(Path.cwd()) else path
