"""The plain half of a sweep: what one trial trains and reports, its checkpoints, and the results tables.

Nothing here imports Ray: `flows/sweep.py` hands these functions a `report` callable (Ray Tune's) and the
tests hand them a list's `append`.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tasks.atomic import atomic_path
from tasks.data import Table
from tasks.evaluate import CVResult, Encoded, cross_validate, prepare_folds, uses_stacking
from tasks.spec import ExperimentSpec, SearchSpec

STATE_FILE = "state.json"
WEIGHTS_FILE = "model.weights.h5"
OPTIMIZER_FILE = "optimizer.npz"

Report = Callable[[dict[str, Any], Path | None], None]
"""`report(metrics, checkpoint_dir)`: Ray Tune's `tune.report` in a trial; a list's append in tests."""


def scoring_spec(spec: ExperimentSpec, sweep: SearchSpec) -> ExperimentSpec:
    """The experiment as a trial scores it: its own folds, or one hold-out split (no refit either way)."""
    if sweep.scoring == "kfold":
        evaluate = spec.evaluate.model_copy(update={"refit": False})
    else:
        evaluate = spec.evaluate.model_copy(update={
            "method": "holdout", "test_size": sweep.test_size, "n_repeats": 1, "refit": False,
            "shuffle": spec.evaluate.shuffle,
            "stratify": spec.dataset.task != "regression" and spec.evaluate.shuffle})
    return spec.model_copy(update={"evaluate": evaluate})


def fold_scores(logs: dict[str, float], metric: str) -> list[float]:
    """Every model's validation score in one epoch's Keras logs: `val_f0_<metric>`... or `val_<metric>`."""
    pattern = re.compile(rf"^val_(f\d+_)?{re.escape(metric)}$")
    return [float(value) for key, value in sorted(logs.items()) if pattern.match(key)]


class EpochReporter(keras.callbacks.Callback):
    """Reports the mean validation score of all folds each epoch, with a checkpoint when one is due."""

    def __init__(self, metric: str, epochs: int, report: Report, checkpoint_every: int | None,
                 checkpoint_root: Path) -> None:
        super().__init__()
        self.metric, self.epochs, self.report = metric, epochs, report
        self.checkpoint_every, self.checkpoint_root = checkpoint_every, checkpoint_root

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        scores = fold_scores(logs or {}, self.metric)
        done = epoch + 1
        due = done == self.epochs or (self.checkpoint_every is not None and done % self.checkpoint_every == 0)
        checkpoint = save_state(self.model, self.checkpoint_root / f"epoch_{done:05d}", done) if due else None
        self.report({"score": float(np.mean(scores)), "score_std": float(np.std(scores)), "epoch": done},
                    checkpoint)


class RestoreState(keras.callbacks.Callback):
    """Loads a checkpoint's weights and optimizer state before training goes on from its epoch."""

    def __init__(self, checkpoint_dir: Path) -> None:
        super().__init__()
        self.checkpoint_dir = checkpoint_dir

    def on_train_begin(self, logs: dict | None = None) -> None:
        restore_state(self.model, self.checkpoint_dir)


def save_state(model: keras.Model, directory: Path, epoch: int) -> Path:
    """Weights, optimizer variables and the epoch reached: enough to go on exactly where training stopped."""
    with atomic_path(directory) as tmp:
        tmp.mkdir()
        model.save_weights(tmp / WEIGHTS_FILE)
        optimizer = {f"v{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model.optimizer.variables)}
        np.savez(tmp / OPTIMIZER_FILE, **optimizer)
        (tmp / STATE_FILE).write_text(json.dumps({"epoch": epoch}))
    return directory


def restore_state(model: keras.Model, directory: Path) -> int:
    """Load what :func:`save_state` wrote into a model built and compiled the same way; return the epoch."""
    model.load_weights(directory / WEIGHTS_FILE)
    model.optimizer.build(model.trainable_variables)
    saved = np.load(directory / OPTIMIZER_FILE)
    for i, variable in enumerate(model.optimizer.variables):
        variable.assign(saved[f"v{i}"])
    return checkpoint_epoch(directory)


def checkpoint_epoch(directory: Path) -> int:
    return int(json.loads((directory / STATE_FILE).read_text())["epoch"])


def run_trial(spec: ExperimentSpec, sweep: SearchSpec, table: Table, labels: Encoded, report: Report,
              work_dir: Path, resume_from: Path | None = None) -> CVResult:
    """Train and score one configuration, reporting every epoch when the folds train as one program.

    Folds that train one after another (models that cannot stack) report once, at the end: their epochs
    interleave, so there is no single per-epoch score for a scheduler to act on.
    """
    spec = scoring_spec(spec, sweep)
    folds = prepare_folds(spec, table, labels)
    per_epoch = uses_stacking(spec, len(folds)) or len(folds) == 1
    callbacks: list[keras.callbacks.Callback] = []
    initial_epoch = 0
    if per_epoch:
        if resume_from is not None:
            callbacks.append(RestoreState(resume_from))
            initial_epoch = checkpoint_epoch(resume_from)
        callbacks.append(EpochReporter(spec.metric, spec.train.epochs, report, sweep.checkpoint_every, work_dir))
    result = cross_validate(spec, folds, callbacks, initial_epoch)
    if not per_epoch:
        report({"score": float(np.mean(result.scores)), "score_std": float(np.std(result.scores)),
                "epoch": spec.train.epochs}, None)
    return result


def write_trials(path: Path, rows: list[dict[str, Any]]) -> None:
    """The sweep's `cv_results_`: one row per trial, best first."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())
