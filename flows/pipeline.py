"""Prefect flows: load → preprocess per fold → cross-validate → refit → write, then report.

Tasks are thin wrappers over ``tasks/``; they take arrays and live models, so none is cached by Prefect
(``NO_CACHE``): DVC decides what to rerun, from the stage's deps and params. Every pipeline and report run
publishes the summary as Prefect artifacts (Markdown and table).
"""

# No `from __future__ import annotations`: Prefect validates flow parameters against these annotations, and in a
# served run's process (`kerasflow schedule`) the postponed strings were not resolved (`ExperimentSpec`).
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from kerasflow.flows.parameters import Experiment
from kerasflow.flows.report import write_report
from kerasflow.tasks.config.schema import ExperimentSpec
from kerasflow.tasks.data.preprocess import LabelCodec
from kerasflow.tasks.data.table import Table, row_files
from kerasflow.tasks.data.tokens import load_rows
from kerasflow.tasks.outputs import metrics, results
from kerasflow.tasks.outputs.live import HistoryFolder, LiveHistory, fold_folders, fold_rows, history_names
from kerasflow.tasks.outputs.mlflow_runs import log_experiment
from kerasflow.tasks.outputs.tensorboard import FoldEvents, run_folder
from kerasflow.tasks.runtime import faults
from kerasflow.tasks.runtime.keras_threads import keras_thread_safe, keras_turn
from kerasflow.tasks.runtime.progress import EpochProgress, ProgressLine
from kerasflow.tasks.training import evaluate
from kerasflow.tasks.training.start import Start, load_start, model_writers


@task(name="load-data", cache_policy=NO_CACHE)
def load_data(name: str, spec: ExperimentSpec, start: Start | None = None) -> tuple[Table, evaluate.Encoded]:
    """Read the experiment's CSV and encode its target (a continued experiment's with its saved model's classes)."""
    table = load_rows(spec)
    return table, evaluate.encode_labels(spec, table, name, start)


@task(name="load-start", cache_policy=NO_CACHE)
def read_start(name: str, spec: ExperimentSpec) -> Start | None:
    """The saved model a continued experiment starts from (`train.init_from`), checked against the spec."""
    with keras_turn():
        return load_start(spec, name)


@task(name="preprocess-folds", cache_policy=NO_CACHE)
def preprocess_folds(spec: ExperimentSpec, table: Table, labels: evaluate.Encoded, start: Start | None) -> list:
    """Split and fit the preprocessing inside each fold (a continued experiment reuses its saved one)."""
    return evaluate.prepare_folds(spec, table, labels, start)


@task(name="cross-validate", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def cross_validate(name: str, spec: ExperimentSpec, folds: list, results_dir: Path, on_ray: bool,
                   tensorboard: Path | None = None) -> evaluate.CVResult:
    """Train and score every fold (stacked into one program when the model allows), logging each fold's epochs
    into `results_dir/name/history` as they end, and with `tensorboard` (this run's folder,
    :func:`kerasflow.tasks.outputs.tensorboard.run_folder`) as TensorBoard scalars there; with `on_ray`
    (:func:`on_cluster`), folds that cannot stack train as Ray tasks (flows/ray_folds.py), their histories written
    whole at the end."""
    faults.inject("cross-validate")
    names = history_names(spec.metric, spec.train.scheduled)
    if on_ray:
        from kerasflow.flows.ray_folds import train_folds

        line = ProgressLine(f"{name}: {len(folds)} folds as Ray tasks", len(folds), "folds")
        started = time.perf_counter()
        trained = train_folds(spec, folds, on_done=lambda index: line.advance())
        if tensorboard is not None:
            events = FoldEvents(tensorboard, fold_folders(len(folds)), names)
            try:
                for row in fold_rows([result.history for result, _ in trained], names):
                    events.add(*row)
            finally:
                events.close()
        return evaluate.each_fold_result(spec, folds, [result for result, _ in trained],
                                         time.perf_counter() - started, [place for _, place in trained])
    models = 1 if evaluate.uses_stacking(spec, len(folds)) else len(folds)
    line = ProgressLine(f"{name}: {len(folds)} folds", models * spec.train.epochs, "epochs")
    history = HistoryFolder(results_dir / name / "history", fold_folders(len(folds)), names,
                            tensorboard=tensorboard)
    try:
        with keras_turn():  # the refit may train in another thread
            return evaluate.cross_validate(spec, folds, callbacks=[EpochProgress(line), LiveHistory(history)])
    finally:
        history.close()


@task(name="refit", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def refit(name: str, spec: ExperimentSpec, table: Table, labels: evaluate.Encoded,
          start: Start | None, on_ray: bool) -> evaluate.FinalModel:
    """Retrain on all rows for the model to keep: as a Ray task with `on_ray`, as the folds were."""
    if on_ray:
        from kerasflow.flows.ray_folds import refit_on_ray

        line = ProgressLine(f"{name}: refit on all rows as a Ray task", 1, "tasks")
        final = refit_on_ray(spec, table, labels, start)
        line.advance()
        return final
    line = ProgressLine(f"{name}: refit on all rows", spec.train.epochs, "epochs")
    with keras_turn():  # the folds may train in another thread
        return evaluate.refit(spec, table, labels, callbacks=[EpochProgress(line)], start=start)


def on_cluster(spec: ExperimentSpec) -> bool:
    """Whether the experiment's folds and refit train as Ray tasks: `evaluate.parallel` allows it
    (:func:`kerasflow.tasks.training.evaluate.folds_on_ray`) and the cluster is worth it
    (:func:`kerasflow.flows.ray_folds.spreads`)."""
    if not evaluate.folds_on_ray(spec):
        return False
    from kerasflow.flows.ray_folds import spreads

    return spreads(spec)


@task(name="write-results", cache_policy=NO_CACHE)
def write_results(name: str, spec: ExperimentSpec, cv: evaluate.CVResult, final: evaluate.FinalModel | None,
                  codec: LabelCodec | None, results_dir: Path, timing: dict[str, float],
                  started: float, start: Start | None = None) -> dict[str, Any]:
    """Write per-epoch history, held-out predictions, the model, the data's fingerprint and metrics under
    `results_dir/name`. With no model to save (no refit, or it diverged), an earlier run's is removed.

    `timing` holds the seconds of the steps so far; this step's and the total since `started` (a
    `time.perf_counter()` value) are added to it in `run.json`, with the saved model a continued experiment
    started from (`start`).
    """
    out_dir = results_dir / name
    with keras_turn(), _timed(timing, "write"):  # other experiments' flows may be in Keras (pipeline_flow)
        results.write_history(out_dir, cv)
        results.write_predictions(out_dir, cv, codec, spec.dataset.target_names, row_files(spec.dataset))
        if final is not None and final.diverged_at is None:  # a diverged refit's weights are not a model
            results.write_model(out_dir / "model", spec, final)
        else:  # an earlier run's model is not this run's: predict and MLflow must not take it for one
            shutil.rmtree(out_dir / "model", ignore_errors=True)
        results.write_dataset(out_dir, spec)
    timing["total"] = time.perf_counter() - started
    # Metrics last: their presence says the experiment's outputs are complete.
    ray_tasks = [*(cv.placements or []), *([final.placement] if final is not None and final.placement else [])]
    return results.write_metrics(out_dir, spec, cv, timing, results.environment(ray_tasks),
                                 final=final,
                                 init_from=start.record() if start is not None else None)


@task(name="mlflow-run", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def log_to_mlflow(name: str, spec: ExperimentSpec, results_dir: Path, uri: str) -> str:
    """Log the experiment's written results as an MLflow run; returns the run's id."""
    return log_experiment(uri, name, spec, results_dir / name)


@contextmanager
def _timed(timing: dict[str, float], step: str) -> Iterator[None]:
    """Record the wall time of the block as `timing[step]`, in seconds."""
    start = time.perf_counter()
    yield
    timing[step] = time.perf_counter() - start


@flow(name="kerasflow-experiment")
def experiment_flow(name: str, spec: Experiment, results_dir: Path = Path("results"),
                    mlflow_uri: str | None = None, tensorboard: Path | None = None) -> dict[str, Any]:
    """One experiment end to end; returns its record (`metrics.json` and `run.json`: tasks/outputs/metrics.py).
    With `mlflow_uri`, the written results are also an MLflow run there; with `tensorboard` (a folder), its folds'
    epochs are TensorBoard scalars in a run folder of their own there (tasks/outputs/tensorboard.py). Whether it
    trains on a Ray cluster (:func:`on_cluster`) is asked once, so its folds and its refit go the same way. On a Ray
    cluster or a backend that allows Keras in two threads (JAX, PyTorch) the refit trains while the folds do, and
    `run.json`'s seconds of the two overlap; on TensorFlow it trains after them."""
    started, timing = time.perf_counter(), {}
    events = None if tensorboard is None else run_folder(Path(tensorboard), name)
    on_ray = on_cluster(spec)
    with _timed(timing, "load"):
        start = read_start(name, spec) if spec.train.init_from is not None else None
        table, labels = load_data(name, spec, start)
    with _timed(timing, "preprocess"):
        folds = preprocess_folds(spec, table, labels, start)
    # The data passed its checks: from here on this run replaces the experiment's results (the history as the folds
    # train), so the previous run's scores go first, and a run stopped half way shows none beside its own files.
    metrics.withdraw_experiment(Path(results_dir) / name)
    # The refit needs nothing cross-validation computes: where it may (tasks/runtime/keras_threads.py), it trains
    # beside the folds, in a thread of Prefect's task runner, on the cores (or the cluster's nodes) they leave idle.
    # Every model is seeded on its own (tasks/training/models.py), so the two give what each gives alone.
    beside = spec.evaluate.refit and (on_ray or keras_thread_safe())
    refitting = refit.submit(name, spec, table, labels, start, on_ray) if beside else None
    try:
        with _timed(timing, "cross_validate"):
            cv = cross_validate(name, spec, folds, Path(results_dir), on_ray, events)
    finally:
        if refitting is not None:
            refitting.wait()  # a failed cross-validation leaves no refit running after the flow
    if refitting is not None:
        final = refitting.result()
    else:
        final = refit(name, spec, table, labels, start, on_ray) if spec.evaluate.refit else None
    if final is not None:
        timing["refit"] = final.seconds
    record = write_results(name, spec, cv, final, labels.codec, Path(results_dir), timing, started, start)
    if mlflow_uri is not None:
        log_to_mlflow(name, spec, Path(results_dir), mlflow_uri)
    return record


@task(name="experiment-on-cluster", cache_policy=NO_CACHE)
def experiment_on_cluster(name: str, spec: ExperimentSpec, results_dir: Path, mlflow_uri: str | None,
                          tensorboard: Path | None) -> dict[str, Any]:
    """:func:`experiment_flow` of an experiment that trains as Ray tasks (:func:`on_cluster`), in a thread of
    Prefect's task runner beside the others': this process only loads, waits and writes."""
    return experiment_flow(name, spec, results_dir, mlflow_uri, tensorboard)


def side_by_side(experiments: dict[str, ExperimentSpec], results_dir: Path) -> list[str]:
    """The experiments of a command that run side by side: when there are several, those that train as Ray tasks
    (:func:`on_cluster`), but for one that continues from the model another of them writes (`train.init_from:
    results/<name>/model`) and that other: those two train in turn, in the command's order, so the model is read
    where the command's order says, not while it is being written."""
    if len(experiments) < 2:
        return []
    writers = model_writers(experiments, results_dir)
    in_turn = {*writers, *writers.values()}
    return [name for name, spec in experiments.items() if name not in in_turn and on_cluster(spec)]


@flow(name="kerasflow-pipeline")
def pipeline_flow(experiments: dict[str, Experiment], results_dir: Path = Path("results"),
                  report_path: Path | None = None, mlflow_uri: str | None = None,
                  tensorboard: Path | None = None) -> dict[str, dict[str, Any]]:
    """Run the given experiments, then publish their summary; with `report_path`, also write it there and the HTML
    report beside it; with `mlflow_uri`, each experiment is an MLflow run there; with `tensorboard`, each logs its
    folds' epochs there (:func:`experiment_flow`).

    Experiments that train as Ray tasks (:func:`on_cluster`) run side by side, when there are several, so the
    cluster trains all their folds at once (:func:`side_by_side`); the others train here, one after another."""
    spread = side_by_side(experiments, Path(results_dir))
    if spread:  # here, before the threads that would each join or start it
        from kerasflow.flows.ray_cluster import connect

        connect()
    running = {name: experiment_on_cluster.submit(name, experiments[name], results_dir, mlflow_uri, tensorboard)
               for name in spread}
    summaries = {name: running[name].result() if name in running
                 else experiment_flow(name, spec, results_dir, mlflow_uri, tensorboard)
                 for name, spec in experiments.items()}
    report_path = Path(report_path) if report_path is not None else None
    write_report(Path(results_dir), experiments, report_path,
                 report_path.with_name("report.html") if report_path is not None else None)
    return summaries
