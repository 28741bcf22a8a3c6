"""Ray Tune sweeps over one experiment, wrapped in a Prefect flow: the sweep, the best model's export and the
report as tasks. What runs Ray Tune is in `flows/ray_driver.py`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from ray import tune

from kerasflow.flows.pipeline import load_data, write_report
from kerasflow.flows.ray_driver import check_cluster, connect, make_tuner
from kerasflow.tasks.config.errors import SweepError
from kerasflow.tasks.config.schema import ExperimentSpec
from kerasflow.tasks.config.search import SearchSpec
from kerasflow.tasks.data.split import make_splits
from kerasflow.tasks.data.table import Table
from kerasflow.tasks.outputs.atomic import write_json
from kerasflow.tasks.outputs.results import write_model
from kerasflow.tasks.sweep.checkpoint import restore_state
from kerasflow.tasks.sweep.export import trial_rows, write_trials
from kerasflow.tasks.sweep.groups import scoring_spec
from kerasflow.tasks.training import evaluate
from kerasflow.tasks.training.models import build_model, make_optimizer


@task(name="sweep", cache_policy=NO_CACHE)
def run_sweep(name: str, spec: ExperimentSpec, sweep: SearchSpec, table: Table, labels: evaluate.Encoded,
              out_dir: Path, resume: bool) -> tune.ResultGrid:
    """Run (or resume) the Ray Tune sweep; trial failures are retried by Ray, not Prefect."""
    connect()
    storage = (out_dir / "ray").resolve()
    check_cluster(name, sweep, storage)
    return make_tuner(name, spec, sweep, table, labels, storage, resume).fit()


@task(name="export-best", cache_policy=NO_CACHE)
def export_best(name: str, spec: ExperimentSpec, sweep: SearchSpec, grid: tune.ResultGrid, table: Table,
                labels: evaluate.Encoded, out_dir: Path, started: float | None = None) -> dict[str, Any]:
    """Write trials.csv, best.json and the best model (with its preprocessing) under `out_dir`.

    With `started` (a `time.perf_counter()` value), best.json's `seconds` is the sweep's wall time since then.
    """
    mode = "max" if spec.higher_is_better else "min"
    rows = trial_rows(grid, spec.higher_is_better)
    if not rows or rows[0]["score"] is None:
        raise SweepError(f"sweeps.{name}: no trial finished; first error: {grid.errors[:1]}")
    best = next(result for result in grid if (result.metrics or {}).get("trial_id") == rows[0]["trial_id"])
    best_params = {key.removeprefix("param:"): value for key, value in rows[0].items() if key.startswith("param:")}
    best_spec = spec.with_overrides(best_params)
    # The trial's best checkpoint by score, and the metrics it was reported with.
    ranked = sorted(best.best_checkpoints or [], key=lambda pair: pair[1]["score"], reverse=spec.higher_is_better)
    checkpoint, at_checkpoint = ranked[0] if ranked else (None, {})
    score, score_std = rows[0]["score"], rows[0]["score_std"]
    if sweep.scoring == "holdout" and checkpoint is not None:
        # The hold-out model itself, from its best checkpoint: it reproduces that checkpoint's score on the split.
        rows_table, rows_labels = evaluate.supervised(best_spec, table, labels)
        (split,) = make_splits(scoring_spec(best_spec, sweep).evaluate, rows_labels.codes)
        fold, preprocessor = evaluate.fit_split(best_spec, rows_table, rows_labels, split)
        model = build_model(best_spec.model, fold.X_train.shape[1], best_spec.train.seed, fold.target_scale)
        model.compile(optimizer=make_optimizer(best_spec.train), loss=best_spec.loss)
        with checkpoint.as_directory() as directory:
            restore_state(model, Path(directory))
        final = evaluate.FinalModel(model=model, preprocessor=preprocessor, codec=labels.codec,
                                    target_scale=fold.target_scale)
        score, score_std = at_checkpoint["score"], at_checkpoint["score_std"]
    else:
        # k-fold scoring has k models per trial: keep one refitted on all rows, as GridSearchCV(refit=True) does.
        final = evaluate.refit(best_spec, table, labels)
    write_model(out_dir / "best_model", best_spec, final)
    summary = {"experiment": name, "metric": spec.metric, "mode": mode, "params": best_params,
               "score": score, "score_std": score_std, "scoring": sweep.scoring,
               "checkpoint": _portable(checkpoint.path) if checkpoint is not None else None,
               "checkpoint_epoch": at_checkpoint.get("epoch"),
               "n_configs": len(rows), "n_trials": len(grid),
               "n_errors": sum(r["status"] == "error" for r in rows),
               "seconds": None if started is None else round(time.perf_counter() - started, 2)}
    write_trials(out_dir / "trials.csv", rows)
    write_json(out_dir / "best.json", summary)
    return summary


def _portable(path: str) -> str:
    """A checkpoint path as committed files should hold it: relative to the project when inside it."""
    local = Path(path)
    return str(local.relative_to(Path.cwd())) if local.is_relative_to(Path.cwd()) else path


@flow(name="kerasflow-sweep")
def sweep_flow(name: str, spec: ExperimentSpec, sweep: SearchSpec, results_dir: Path = Path("results"),
               resume: bool = False) -> dict[str, Any]:
    """Sweep one experiment's search space, keep the best model, and publish the experiment's summary."""
    started = time.perf_counter()
    out_dir = Path(results_dir) / name / "tune"
    table, labels = load_data(name, spec)
    grid = run_sweep(name, spec, sweep, table, labels, out_dir, resume)
    best = export_best(name, spec, sweep, grid, table, labels, out_dir, started)
    write_report(Path(results_dir), {name: spec})
    return best
