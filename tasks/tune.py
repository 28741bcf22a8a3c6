"""The plain half of a sweep: what one trial trains and reports, its checkpoints, and the results tables.

Nothing here imports Ray: `flows/trial.py` hands these functions a `report` callable (Ray Tune's) and the
tests hand them a list's `append`.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tasks.atomic import atomic_path
from tasks.data import Table
from tasks.evaluate import CVResult, Encoded, cross_validate_configs, prepare_folds, uses_stacking
from tasks.spec import ExperimentSpec, SearchSpec
from tasks.stacked import stack_key

STATE_FILE = "state.json"
WEIGHTS_FILE = "model.weights.h5"
OPTIMIZER_FILE = "optimizer.npz"

GROUP = "configs"
"""The key of a trial's config that holds a stacked group's configs (see :func:`stacked_groups`)."""

Report = Callable[[dict[str, Any], Path | None], None]
"""`report(metrics, checkpoint_dir)`: Ray Tune's `tune.report` in a trial; a list's append in tests.

A trial reports `score`/`score_std` (its best config's mean and spread over the folds: what Ray Tune ranks
trials and checkpoints by), `scores`/`score_stds` (every config's, in the order of :func:`trial_configs`) and
`epoch`."""


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


def stacked_groups(spec: ExperimentSpec, sweep: SearchSpec) -> list[list[dict[str, Any]]] | None:
    """The grid's configs in groups that each train as one stacked program, or None where they cannot.

    Configs group when they differ only in their Dense layers' initializers (:func:`tasks.stacked.stack_key`):
    the books' optimizer x initializer x batch-size grid of 12 is 4 programs of 3 configs. Only a whole grid
    (every value `grid`, the `grid` algorithm) with no early stopping and k-fold scoring groups: a scheduler
    stops trials, and hold-out scoring exports the best trial's own checkpoint, both one config at a time.
    """
    kinds = {kind for dist in sweep.space.values() for kind in dist}
    if not sweep.stack_configs or sweep.algorithm != "grid" or kinds != {"grid"} or sweep.scheduler != "fifo" \
            or sweep.scoring != "kfold":
        return None
    keys = list(sweep.space)
    configs = [dict(zip(keys, values)) for values in itertools.product(*(sweep.space[k]["grid"] for k in keys))]
    groups: dict[str, list[dict[str, Any]]] = {}
    for config in configs:
        trial = scoring_spec(spec.with_overrides(config), sweep)
        # A config that cannot stack (or whose folds do not) keeps a program of its own.
        key = stack_key(trial) if uses_stacking(trial, n_models=2) else json.dumps(config, sort_keys=True)
        groups.setdefault(key, []).append(config)
    return list(groups.values())


def trial_configs(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The configs one Ray Tune trial trains: a stacked group's, or the trial's own."""
    return config[GROUP] if GROUP in config else [config]


def slot_scores(logs: dict[str, float], metric: str) -> list[float]:
    """Every model's validation score in one epoch's Keras logs, in slot order: `val_f0_<metric>`,
    `val_f1_<metric>`... of a stacked model, or the one `val_<metric>`."""
    pattern = re.compile(rf"^val_(?:f(\d+)_)?{re.escape(metric)}$")
    found = [(int(match[1] or 0), float(value)) for key, value in logs.items() if (match := pattern.match(key))]
    return [value for _, value in sorted(found)]


def config_summaries(slot_values: list[float], n_configs: int, higher_is_better: bool) -> dict[str, Any]:
    """The report of one epoch from every slot's score: config c's folds are its slice of `n_configs` equal ones."""
    per_config = np.asarray(slot_values, dtype=float).reshape(n_configs, -1)
    means, stds = per_config.mean(axis=1), per_config.std(axis=1)
    best = int(np.argmax(means) if higher_is_better else np.argmin(means))
    return {"score": float(means[best]), "score_std": float(stds[best]),
            "scores": [float(m) for m in means], "score_stds": [float(s) for s in stds]}


class EpochReporter(keras.callbacks.Callback):
    """Reports every config's mean validation score over its folds each epoch, with a checkpoint when one is due."""

    def __init__(self, spec: ExperimentSpec, n_configs: int, report: Report, checkpoint_every: int | None,
                 checkpoint_root: Path) -> None:
        super().__init__()
        self.metric, self.higher_is_better, self.epochs = spec.metric, spec.higher_is_better, spec.train.epochs
        self.n_configs, self.report = n_configs, report
        self.checkpoint_every, self.checkpoint_root = checkpoint_every, checkpoint_root

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        summary = config_summaries(slot_scores(logs or {}, self.metric), self.n_configs, self.higher_is_better)
        done = epoch + 1
        due = done == self.epochs or (self.checkpoint_every is not None and done % self.checkpoint_every == 0)
        checkpoint = save_state(self.model, self.checkpoint_root / f"epoch_{done:05d}", done) if due else None
        self.report({**summary, "epoch": done}, checkpoint)


class RestoreState(keras.callbacks.Callback):
    """Loads a checkpoint's weights and optimizer state before training goes on from its epoch."""

    def __init__(self, checkpoint_dir: Path) -> None:
        super().__init__()
        self.checkpoint_dir, self.restored = checkpoint_dir, False

    def on_train_begin(self, logs: dict | None = None) -> None:
        # A long training is fed to Keras in several `fit` calls (`tasks/epochs.py`): restore before the first only.
        if not self.restored:
            restore_state(self.model, self.checkpoint_dir)
            self.restored = True


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


def run_trial(specs: list[ExperimentSpec], sweep: SearchSpec, table: Table, labels: Encoded, report: Report,
              work_dir: Path, resume_from: Path | None = None) -> list[CVResult]:
    """Train and score one trial's configs (one, or a stacked group), reporting every epoch when all the models
    train as one program.

    Folds that train one after another (models that cannot stack) report once, at the end: their epochs
    interleave, so there is no single per-epoch score for a scheduler to act on.
    """
    specs = [scoring_spec(spec, sweep) for spec in specs]
    spec = specs[0]
    folds = prepare_folds(spec, table, labels)  # the configs of a group share their preprocessing and folds
    per_epoch = uses_stacking(spec, len(specs) * len(folds)) or len(specs) * len(folds) == 1
    callbacks: list[keras.callbacks.Callback] = []
    initial_epoch = 0
    if per_epoch:
        if resume_from is not None:
            callbacks.append(RestoreState(resume_from))
            initial_epoch = checkpoint_epoch(resume_from)
        callbacks.append(EpochReporter(spec, len(specs), report, sweep.checkpoint_every, work_dir))
    results = cross_validate_configs(specs, folds, callbacks, initial_epoch)
    if not per_epoch:
        slots = [score for result in results for score in result.scores]
        report({**config_summaries(slots, len(specs), spec.higher_is_better), "epoch": spec.train.epochs}, None)
    return results


def write_trials(path: Path, rows: list[dict[str, Any]]) -> None:
    """The sweep's `cv_results_`: one row per trial, best first."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())
