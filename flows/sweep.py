"""A Ray Tune sweep over one experiment as a Prefect flow: the sweep (flows/ray_driver.py), the best model's
export (tasks/sweep/export.py) and the report, as tasks; and its nested cross-validation (tasks/sweep/nested.py),
a sweep per outer fold on one Ray."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from ray import tune

from kerasflow.flows.parameters import Experiment, Search
from kerasflow.flows.pipeline import load_data
from kerasflow.flows.ray_cluster import connect
from kerasflow.flows.ray_driver import check_cluster, history_folder, make_tuner, storage_folder, sweep_settings
from kerasflow.flows.report import write_report
from kerasflow.tasks.config.schema import ExperimentSpec
from kerasflow.tasks.config.search import SearchSpec
from kerasflow.tasks.data.split import Split
from kerasflow.tasks.data.table import Table
from kerasflow.tasks.outputs.atomic import write_json
from kerasflow.tasks.outputs.metrics import NESTED_FILE, TRIALS_FILE
from kerasflow.tasks.outputs.mlflow_runs import log_sweep
from kerasflow.tasks.outputs.tensorboard import log_configs, run_folder
from kerasflow.tasks.sweep import dvc_experiments, export, nested
from kerasflow.tasks.training import evaluate


@task(name="sweep", cache_policy=NO_CACHE)
def run_sweep(name: str, spec: ExperimentSpec, sweep: SearchSpec, table: Table, labels: evaluate.Encoded,
              out_dir: Path, resume: bool, tensorboard: Path | None = None) -> tune.ResultGrid:
    """Run (or resume) the Ray Tune sweep, its configs' folds logged to TensorBoard in the folder `tensorboard` if
    given; trial failures are retried by Ray, not Prefect."""
    connect()
    storage = storage_folder(out_dir)
    check_cluster(name, sweep, storage, tensorboard)
    return make_tuner(name, spec, sweep, table, labels, storage, resume, tensorboard).fit()


@task(name="export-best", cache_policy=NO_CACHE)
def export_best(name: str, spec: ExperimentSpec, sweep: SearchSpec, grid: tune.ResultGrid, table: Table,
                labels: evaluate.Encoded, out_dir: Path, started: float | None = None,
                resumed: bool = False) -> dict[str, Any]:
    """Write trials.csv, best.json with sweep.json, and the best model; with `started` (a `time.perf_counter()`
    value), sweep.json records the command's wall time since then, and whether it `resumed` the sweep."""
    seconds = None if started is None else round(time.perf_counter() - started, 2)
    return export.export_best(name, spec, sweep, grid, table, labels, out_dir, seconds, resumed)


@task(name="dvc-experiments", cache_policy=NO_CACHE)
def save_dvc_experiments(name: str, spec: ExperimentSpec, sweep: SearchSpec, grid: tune.ResultGrid, out_dir: Path,
                         params_file: Path) -> list[str]:
    """Save each finished config as a DVC experiment of the project in the working folder."""
    rows = export.trial_rows(grid, spec, sweep)
    history = history_folder(storage_folder(out_dir))
    return dvc_experiments.save_experiments(Path.cwd(), params_file, out_dir, name, spec.metric, rows, history)


@task(name="mlflow-runs", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def log_to_mlflow(name: str, spec: ExperimentSpec, out_dir: Path, uri: str) -> str:
    """Log the written sweep as a parent MLflow run with a nested run per config; returns the parent's id."""
    return log_sweep(uri, name, spec, out_dir)


@flow(name="kerasflow-sweep")
def sweep_flow(name: str, spec: Experiment, sweep: Search, results_dir: Path = Path("results"),
               resume: bool = False, dvc_exp_params: Path | None = None,
               mlflow_uri: str | None = None, tensorboard: Path | None = None) -> dict[str, Any]:
    """Sweep one experiment's search space, keep the best model, and publish the experiment's summary. With
    `dvc_exp_params` (the params file the sweep read), each scored config is also saved as a DVC experiment; their
    names are the result's ``dvc_experiments``. With `mlflow_uri`, the sweep is MLflow runs there; with
    `tensorboard` (a folder), each config's folds log their epochs in a sweep folder of its own there, and each
    finished config is an HParams session there (tasks/outputs/tensorboard.py; a resumed sweep logs in a new
    folder: the folds of the trials it trains again, and every finished config's session)."""
    started = time.perf_counter()
    out_dir = Path(results_dir) / name / "tune"
    table, labels = load_data(name, spec)
    events = None if tensorboard is None else run_folder(Path(tensorboard), name, "tune")
    grid = run_sweep(name, spec, sweep, table, labels, out_dir, resume, events)
    best = export_best(name, spec, sweep, grid, table, labels, out_dir, started, resume)
    if events is not None:
        log_configs(events, out_dir / TRIALS_FILE, spec.metric)
    write_report(Path(results_dir), {name: spec})
    if mlflow_uri is not None and not best["diverged"]:
        log_to_mlflow(name, spec, out_dir, mlflow_uri)
    if dvc_exp_params is not None:
        best["dvc_experiments"] = save_dvc_experiments(name, spec, sweep, grid, out_dir, dvc_exp_params)
    return best


@task(name="outer-fold", cache_policy=NO_CACHE)
def score_outer_fold(name: str, index: int, spec: ExperimentSpec, sweep: SearchSpec, grid: tune.ResultGrid,
                     table: Table, labels: evaluate.Encoded, split: Split, inner: tuple[Table, evaluate.Encoded],
                     fold_dir: Path) -> dict[str, Any]:
    """Write outer fold `index`'s trials.csv (its sweep's configs on the outer training rows `inner`, best first,
    paired with its best) and score the best config once on the outer held-out rows."""
    rows = export.with_ties(export.trial_rows(grid, spec, sweep), export.fold_ratio(spec, sweep, *inner),
                            spec.metric)
    export.write_trials(fold_dir / TRIALS_FILE, rows)
    return nested.outer_fold(name, index, spec, rows, table, labels, split)


@flow(name="kerasflow-nested-sweep")
def nested_sweep_flow(name: str, spec: Experiment, sweep: Search, outer_folds: int,
                      results_dir: Path = Path("results"), tensorboard: Path | None = None) -> dict[str, Any]:
    """Nested cross-validation of the sweep: in each outer fold the whole sweep on the outer training rows, its
    best config retrained there and scored on the held-out rows. Writes `tune/nested.json`
    (:func:`kerasflow.tasks.sweep.nested.summarize`), each outer fold's sweep under `tune/nested/outer_<i>/`,
    and the report; the sweep's own outputs (best model, trials.csv) stay as they are. With `tensorboard` (a folder),
    each outer fold's sweep logs there as :func:`sweep_flow` logs one, under ``nested-<run>/outer_<i>/``."""
    started = time.perf_counter()
    tune_dir = Path(results_dir) / name / "tune"
    table, labels = load_data(name, spec)
    splits = nested.outer_splits(spec, labels, outer_folds)
    events = None if tensorboard is None else run_folder(Path(tensorboard), name, "nested")
    folds = []
    for index, split in enumerate(splits):
        fold_dir = tune_dir / "nested" / f"outer_{index}"
        fold_events = None if events is None else events / f"outer_{index}"
        inner = nested.rows_of(table, labels, split.train_index)
        grid = run_sweep(name, spec, sweep, *inner, fold_dir, False, fold_events)
        folds.append(score_outer_fold(name, index, spec, sweep, grid, table, labels, split, inner, fold_dir))
        if fold_events is not None:
            log_configs(fold_events, fold_dir / TRIALS_FILE, spec.metric)
    summary = nested.summarize(name, spec, sweep, folds, splits, round(time.perf_counter() - started, 2),
                               sweep_settings(spec, sweep))
    write_json(tune_dir / NESTED_FILE, summary)
    write_report(Path(results_dir), {name: spec})
    return summary
