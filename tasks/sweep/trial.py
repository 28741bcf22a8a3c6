"""The plain half of a sweep: what one trial trains and reports, its checkpoints, and the results tables.

Nothing here imports Ray: `flows/ray_driver.py` hands these functions a `report` callable (Ray Tune's) and the
tests hand them a list's `append`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from kerasflow.tasks.config.schema import ExperimentSpec
from kerasflow.tasks.config.search import SearchSpec
from kerasflow.tasks.data.table import Table
from kerasflow.tasks.sweep.checkpoint import RestoreState, checkpoint_epoch, save_state
from kerasflow.tasks.sweep.groups import scoring_spec
from kerasflow.tasks.training.evaluate import (
    CVResult,
    Encoded,
    cross_validate_configs,
    prepare_folds,
    uses_stacking,
)

Report = Callable[[dict[str, Any], Path | None], None]
"""`report(metrics, checkpoint_dir)`: Ray Tune's `tune.report` in a trial; a list's append in tests.

A trial reports `score`/`score_std` (its best config's mean and spread over the folds: what Ray Tune ranks
trials and checkpoints by), `scores`/`score_stds` (every config's, in the order of :func:`trial_configs`) and
`epoch`."""


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


