"""An experiment's results and a sweep's configs as MLflow runs, for teams that track in MLflow.

Optional: MLflow is the `mlflow` extra (``pip install -e .[mlflow]``), used when ``tracking: {mlflow: <URI>}`` is in
params.yaml or ``MLFLOW_TRACKING_URI`` is set (the environment wins, as it does for MLflow's own clients). The
runs are made from what the run wrote under ``results/`` (metrics.json, run.json, the history folder, the model),
after it is complete, so MLflow shows exactly what DVC versions:

- an experiment: one run in the MLflow experiment of the same name, with the spec's params (dotted keys), the
  mean and std of the metric and each fold's score (``<metric>_fold``, step = fold), each fold's epochs
  (``fold_00/val_loss``..., step = epoch), and the refit model's folder as the artifact ``model``;
- a sweep: a parent run (``<experiment>-sweep``: the best config's params and score, trials.csv, the best model)
  with one nested run per config (its params, score, and its folds' epochs).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kerasflow.tasks.config.errors import ParamsError, ServiceError
from kerasflow.tasks.config.overrides import dotted_leaves
from kerasflow.tasks.config.schema import ExperimentSpec
from kerasflow.tasks.outputs.live import FOLDS_PLOT
from kerasflow.tasks.outputs.metrics import TRIALS_FILE, read_experiment, read_sweep_best, row_params
from kerasflow.tasks.runtime.services import unanswered

if TYPE_CHECKING:
    from mlflow import MlflowClient

ENV = "MLFLOW_TRACKING_URI"

METRIC_NAME_OUTSIDE = re.compile(r"[^\w./ :-]")
"""A character MLflow refuses in a metric's name (it takes letters, digits, `_ - . / :` and spaces)."""


def tracking_uri(configured: str | None, source: str = "params.yaml") -> str | None:
    """The MLflow tracking URI runs are logged to: ``MLFLOW_TRACKING_URI``, else `configured` (params.yaml's
    ``tracking.mlflow``), else None (no MLflow). Checked now, before any training: MLflow must be installed and
    an HTTP server must answer, or the command stops with one line saying which."""
    uri = os.environ.get(ENV) or configured
    if not uri:
        return None
    where = ENV if os.environ.get(ENV) else f"{source}:tracking.mlflow"
    try:
        import mlflow  # noqa: F401  (the optional extra)
    except ImportError:
        raise ParamsError(f"{where}: logging to MLflow needs the mlflow extra: pip install -e '.[mlflow]'") from None
    if uri.startswith(("http://", "https://")) and (
            reason := unanswered(f"{uri.rstrip('/')}/health", 5, ok_only=True)) is not None:
        raise ServiceError(f"{where}: no MLflow server answers at {uri} ({reason})")
    return uri


def _client(uri: str) -> MlflowClient:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # nothing leaves the machine unasked
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # not a line per run of a sweep
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def flat_params(tree: dict[str, Any]) -> dict[str, str]:
    """A nested mapping as MLflow params: dotted keys, lists as JSON (a model's layers are one param).

    Examples
    --------
    >>> flat_params({"train": {"epochs": 5, "optimizer": "adam"}, "model": {"layers": [{"type": "dense"}]}})
    {'train.epochs': '5', 'train.optimizer': 'adam', 'model.layers': '[{"type": "dense"}]'}
    """
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in dotted_leaves(tree).items()}


def _experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment is not None else client.create_experiment(name)


def _log(client: MlflowClient, run_id: str, params: dict[str, str], metrics: Iterable[tuple[str, float, int]]) -> None:
    """Params and (key, value, step) metrics, in batches of MLflow's limits; None, NaN and infinite values (a
    diverged fold's) are skipped."""
    from mlflow.entities import Metric, Param
    from mlflow.utils.validation import MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH

    items = list(params.items())
    for start in range(0, len(items), MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run_id, params=[Param(k, v) for k, v in items[start:start + MAX_PARAMS_TAGS_PER_BATCH]])
    now = int(time.time() * 1000)
    logged = [Metric(key, float(value), now, step) for key, value, step in metrics
              if value is not None and math.isfinite(value)]
    for start in range(0, len(logged), MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=logged[start:start + MAX_METRICS_PER_BATCH])


def _history(folder: Path) -> list[tuple[str, float, int]]:
    """Each fold's epochs from a history folder's table (:mod:`kerasflow.tasks.outputs.live`), as metrics."""
    table = folder / FOLDS_PLOT
    rows = json.loads(table.read_text()) if table.is_file() else []
    return [(f"fold_{row['fold']:02d}/{key}", value, row["epoch"])
            for row in rows for key, value in row.items() if key not in ("fold", "epoch")]


def log_experiment(uri: str, name: str, spec: ExperimentSpec, out_dir: Path) -> str:
    """Log experiment `name`'s results in `out_dir` as an MLflow run; return its id."""
    record = read_experiment(out_dir)
    if record is None:
        raise FileNotFoundError(f"{out_dir}: no complete results to log to MLflow")
    client = _client(uri)
    metric = record["metric"]
    run = client.create_run(_experiment_id(client, name), run_name=name, tags={"kerasflow.kind": "experiment"})
    run_id = run.info.run_id
    scores = [(metric, record["mean"], 0), (f"{metric}_std", record["std"], 0)]
    scores += [(f"{metric}_fold", score, fold) for fold, score in enumerate(record["folds"])]
    if "baseline" in record:
        scores.append((f"baseline_{metric}", record["baseline"]["mean"], 0))
    # Each target's as metrics.json nests it, in the characters MLflow allows in a metric's name.
    scores += [(f"targets.{METRIC_NAME_OUTSIDE.sub('_', target)}.{metric}", values["mean"], 0)
               for target, values in record.get("targets", {}).items()]
    params = flat_params(spec.model_dump(mode="json", exclude_none=True))
    _log(client, run_id, params, scores + _history(out_dir / "history"))
    if (out_dir / "model").is_dir():
        client.log_artifacts(run_id, str(out_dir / "model"), "model")
    client.set_terminated(run_id)
    return run_id


MLFLOW_STATUS = {"ok": "FINISHED", "stopped": "KILLED"}
"""A config's MLflow run status by its trials.csv status; "error" and "diverged" are "FAILED"."""


def log_sweep(uri: str, name: str, spec: ExperimentSpec, out_dir: Path) -> str:
    """Log the sweep of experiment `name` (results in `out_dir`, its `tune/` folder) as a parent MLflow run with
    one nested run per config; return the parent's id."""
    best = read_sweep_best(out_dir)
    if best is None:
        raise FileNotFoundError(f"{out_dir}: no complete sweep to log to MLflow")
    client = _client(uri)
    experiment_id = _experiment_id(client, name)
    parent = client.create_run(experiment_id, run_name=f"{name}-sweep", tags={"kerasflow.kind": "sweep"}).info.run_id
    metric = best["metric"]
    best_spec = spec.with_overrides(best["params"]) if best["params"] else spec
    _log(client, parent, flat_params(best_spec.model_dump(mode="json", exclude_none=True)),
         [(metric, best["score"], 0), (f"{metric}_std", best["score_std"], 0)])
    with open(out_dir / TRIALS_FILE, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        child = client.create_run(experiment_id, run_name=row["config_id"], tags={
            "mlflow.parentRunId": parent, "kerasflow.kind": "config", "kerasflow.status": row["status"]}).info.run_id
        config = row_params(row)
        score = [(metric, float(row["score"]), 0), (f"{metric}_std", float(row["score_std"]), 0)] \
            if row["score"] else []
        _log(client, child, config, score + _history(out_dir / "history" / row["config_id"]))
        client.set_terminated(child, status=MLFLOW_STATUS.get(row["status"], "FAILED"))
    client.log_artifact(parent, str(out_dir / TRIALS_FILE))
    if (out_dir / "best_model").is_dir():
        client.log_artifacts(parent, str(out_dir / "best_model"), "model")
    client.set_terminated(parent)
    return parent
