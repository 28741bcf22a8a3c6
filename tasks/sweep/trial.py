"""The plain half of a sweep: what one trial trains and reports, its checkpoints, and the results tables.

Nothing here imports Ray: `flows/ray_driver.py` hands these functions a `report` callable (Ray Tune's) and the
tests hand them a list's `append`.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from kerasflow.tasks.config.schema import ExperimentSpec
from kerasflow.tasks.config.search import SearchSpec
from kerasflow.tasks.data.table import Table
from kerasflow.tasks.outputs.live import HistoryFolder, LiveHistory, fold_folders, history_names
from kerasflow.tasks.sweep.checkpoint import RestoreState, checkpoint_epoch, save_state, saved_state
from kerasflow.tasks.sweep.groups import SharedEpochs, config_id, scoring_spec
from kerasflow.tasks.training.evaluate import (
    Encoded,
    cross_validate_configs,
    prepare_folds,
    uses_stacking,
)

Report = Callable[[dict[str, Any], Path | None], None]
"""`report(metrics, checkpoint_dir)`: Ray Tune's `tune.report` in a trial; a list's append in tests.

A trial reports `score`/`score_std` (its best config's mean and spread over the folds: what Ray Tune ranks
trials and checkpoints by), `scores`/`score_stds` (every config's, in the order of :func:`trial_configs`),
`fold_scores` (every config's list of fold scores, in the same order: what pairs configs fold by fold), `epoch`
(the trial's) and `epochs` (every config's: fewer than the trial's for a config that ended sooner)."""


def slot_scores(logs: dict[str, float], metric: str, prefix: str = "val_") -> list[float]:
    """Every model's validation score in one epoch's Keras logs, in slot order: `val_f0_<metric>`,
    `val_f1_<metric>`... of a stacked model, or the one `val_<metric>`; with `prefix` "", the training ones.

    Examples
    --------
    >>> slot_scores({"loss": 3.0, "f0_loss": 1.0, "f1_loss": 2.0, "val_f1_mse": 5.0, "val_f0_mse": 4.0}, "loss", "")
    [1.0, 2.0]
    >>> slot_scores({"loss": 3.0, "val_f1_mse": 5.0, "val_f0_mse": 4.0}, "mse")
    [4.0, 5.0]
    """
    pattern = re.compile(rf"^{prefix}(?:f(\d+)_)?{re.escape(metric)}$")
    matches = [(match[1], float(value)) for key, value in logs.items() if (match := pattern.match(key))]
    # A stacked model also logs Keras' own `loss`, the sum over its slots: the slots' own entries are the scores.
    slotted = [(int(slot), value) for slot, value in matches if slot is not None]
    return [value for _, value in sorted(slotted)] if slotted else [value for _, value in matches]


def config_summaries(slot_values: list[float], n_configs: int, higher_is_better: bool,
                     slot_diverged: list[bool] | None = None) -> dict[str, Any]:
    """The report of one epoch from every slot's score: config c's folds are its slice of `n_configs` equal ones.

    A config any of whose folds diverged (`slot_diverged`: its training loss became NaN or infinite) has a NaN
    mean, as has one with a NaN score: it is never its trial's best, and its trial reports NaN only when every
    config diverged.

    Examples
    --------
    >>> summary = config_summaries([0.9, 0.8, 0.7, 0.9], 2, True, slot_diverged=[False, True, False, False])
    >>> summary["scores"], summary["fold_scores"]
    ([nan, 0.8], [[nan, nan], [0.7, 0.9]])
    """
    per_config = np.asarray(slot_values, dtype=float).reshape(n_configs, -1)
    if slot_diverged is not None:
        diverged = np.asarray(slot_diverged, dtype=bool).reshape(n_configs, -1).any(axis=1, keepdims=True)
        per_config = np.where(diverged, np.nan, per_config)
    means, stds = per_config.mean(axis=1), per_config.std(axis=1)
    finite = np.flatnonzero(np.isfinite(means))
    ranked = finite[np.argsort(-means[finite] if higher_is_better else means[finite], kind="stable")]
    best = int(ranked[0]) if ranked.size else 0
    return {"score": float(means[best]), "score_std": float(stds[best]),
            "scores": [float(m) for m in means], "score_stds": [float(s) for s in stds],
            "fold_scores": per_config.tolist()}


KEPT = "kept_scores"
"""The key of a trial's checkpoint state that holds each ended config's kept scores (:class:`EpochReporter`)."""


def checkpoint_due(done: int, epochs: int, every: int | None) -> bool:
    """Whether a trial of `epochs` epochs checkpoints after epoch `done`: its last, and every `every`-th."""
    return done == epochs or (every is not None and done % every == 0)


class EpochReporter(keras.callbacks.Callback):
    """Reports every config's mean validation score over its folds each epoch, with a checkpoint when one is due.

    A config shorter than the trial's training (:class:`SharedEpochs`) keeps, from its last epoch on, the scores it
    had there: its model's scores after `epochs[c]` epochs, as that config trained alone would end. Checkpoints
    carry them, so a trial resumed from `resume_from` past a config's end reports that config's own scores."""

    def __init__(self, spec: ExperimentSpec, configs: SharedEpochs, report: Report, checkpoint_every: int | None,
                 checkpoint_root: Path, resume_from: Path | None = None) -> None:
        super().__init__()
        self.metric, self.higher_is_better, self.epochs = spec.metric, spec.higher_is_better, spec.train.epochs
        self.configs, self.report = configs, report
        self.checkpoint_every, self.checkpoint_root = checkpoint_every, checkpoint_root
        # config -> its fold scores and divergence, as last kept
        kept = saved_state(resume_from).get(KEPT, {}) if resume_from is not None else {}
        self.kept: dict[int, tuple[list[float], list[bool]]] = {int(c): (scores, diverged)
                                                                for c, (scores, diverged) in kept.items()}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        done, configs = epoch + 1, self.configs
        scores = np.reshape(slot_scores(logs, self.metric), (len(configs.models), -1))
        diverged = np.reshape([not math.isfinite(loss) for loss in slot_scores(logs, "loss", "")], scores.shape)
        for c, (model, epochs) in enumerate(zip(configs.model_of, configs.epochs)):
            if done <= epochs:
                self.kept[c] = (scores[model].tolist(), diverged[model].tolist())
        order = range(len(configs.epochs))
        summary = config_summaries([v for c in order for v in self.kept[c][0]], len(configs.epochs),
                                   self.higher_is_better, slot_diverged=[d for c in order for d in self.kept[c][1]])
        due = checkpoint_due(done, self.epochs, self.checkpoint_every)
        checkpoint = save_state(self.model, self.checkpoint_root / f"epoch_{done:05d}", done,
                                {KEPT: self.kept}) if due else None
        self.report({**summary, "epoch": done, "epochs": [min(done, epochs) for epochs in configs.epochs]},
                    checkpoint)


OWNERS = ".trials"
"""The folder of a sweep's history root that names, per config, the trial that logs its history."""


def history_dirs(history_root: Path, configs: list[dict[str, Any]], trial_id: str) -> list[Path]:
    """The folders under `history_root` where trial `trial_id` logs its configs' histories, one per config: each
    config's folder is the trial's that claimed it first, as ``.trials/<config id>`` names it. Optuna may propose
    a config it has tried, and the repeat may train beside the first: then it logs nothing (it trains alike, with
    the same seeds), so two trials never write one folder; none is returned. A trial resumed or retried keeps its
    claim."""
    owners = history_root / OWNERS
    owners.mkdir(parents=True, exist_ok=True)
    ids = [config_id(config) for config in configs]
    mine = True
    for name in ids:
        try:
            with open(owners / name, "x", encoding="utf-8") as handle:
                handle.write(trial_id)
        except FileExistsError:
            mine = mine and (owners / name).read_text(encoding="utf-8") == trial_id
    return [history_root / name for name in ids] if mine else []


def run_trial(specs: list[ExperimentSpec], sweep: SearchSpec, table: Table, labels: Encoded, report: Report,
              work_dir: Path, resume_from: Path | None = None, history_dirs: Sequence[Path] = (),
              tensorboard_dirs: Sequence[Path] = (), check: Callable[[], None] | None = None) -> None:
    """Train and score one trial's configs (one, or a stacked group), reporting every epoch when all the models
    train as one program; with `history_dirs` (one per config), each config's folds log their epochs there as they
    end (:mod:`kerasflow.tasks.outputs.live`), and with `tensorboard_dirs` (one per config too) as TensorBoard
    scalars there. Configs that differ only in `train.epochs` are one model trained for the longest
    (:class:`SharedEpochs`), each scored, and its history ended, at its own epoch count. `check` is called at every
    epoch's end before the epoch is logged or reported: raising there stops the training (a warm trainer's, whose
    trial has ended).

    Folds that train one after another (models that cannot stack) report once, at the end: their epochs
    interleave, so there is no single per-epoch score for a scheduler to act on.
    """
    configs = SharedEpochs.of([scoring_spec(spec, sweep) for spec in specs])
    models, spec = configs.models, configs.models[0]
    folds = prepare_folds(spec, table, labels)  # the configs of a group share their preprocessing and folds
    # Stacked slots that stop early leave the program one by one: no per-epoch score for every config either. Nor
    # where the epochs' val_ scores are of a validation split (early stopping or a plateau following them): the
    # trial's score is its held-out rows', known once the training is over.
    per_epoch = not spec.train.validates and (
        (uses_stacking(spec, len(models) * len(folds)) and spec.train.early_stopping is None)
        or len(models) * len(folds) == 1)
    callbacks: list[keras.callbacks.Callback] = []
    initial_epoch = 0
    if per_epoch and resume_from is not None:
        callbacks.append(RestoreState(resume_from))
        initial_epoch = checkpoint_epoch(resume_from)
    if check is not None:
        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: check()))
    with contextlib.ExitStack() as opened:  # the histories' TensorBoard files closed however the training ends
        if history_dirs:
            # Before the reporter, and written at every checkpoint and every epoch where the scheduler may stop the
            # trial: a checkpoint's epochs are on disk before the checkpoint is, and a stopped trial's history is
            # whole.
            names = history_names(spec.metric, spec.train.scheduled)
            every, epochs, stops = sweep.checkpoint_every, spec.train.epochs, sweep.stop_epochs(spec.train.epochs)
            write_at = (lambda done: checkpoint_due(done, epochs, every) or done in stops) if per_epoch else None
            histories = []
            for directory, events in zip(history_dirs, tensorboard_dirs or [None] * len(history_dirs)):
                histories.append(HistoryFolder(directory, fold_folders(len(folds)), names, resume_epoch=initial_epoch,
                                               tensorboard=events))
                opened.callback(histories[-1].close)
            callbacks.append(LiveHistory(histories, models=configs.model_of, until=configs.epochs,
                                         write_at=write_at))
        if per_epoch:
            callbacks.append(EpochReporter(spec, configs, report, sweep.checkpoint_every, work_dir, resume_from))
        results = cross_validate_configs(models, folds, callbacks, initial_epoch)
    if not per_epoch:  # then no config ends sooner than the others: each is its model's whole training
        trained = [results[model].folds for model in configs.model_of]
        every = [fold for folds in trained for fold in folds]
        summaries = config_summaries([fold.score for fold in every], len(trained), spec.higher_is_better,
                                     slot_diverged=[fold.diverged_at is not None for fold in every])
        # The epochs each config trained: its folds' longest, where early stopping may have ended them sooner.
        epochs = [min(epochs, max(results[model].epochs_run or [epochs]))
                  for model, epochs in zip(configs.model_of, configs.epochs)]
        report({**summaries, "epoch": spec.train.epochs, "epochs": epochs}, None)
