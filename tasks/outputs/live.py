"""Every fold's per-epoch history, on disk while it trains, in dvclive's layout.

A run's ``results/<experiment>/history/`` (and each config's of a sweep, ``results/<experiment>/tune/history/
<config id>/``) is a dvclive folder:

- ``plots/metrics/<fold>/<name>.tsv``: dvclive's step files (``step\\t<name>``, one row per epoch, from 1);
- ``plots/custom/folds.json``: every fold's rows in one table, which DVC draws with one line per fold;
- ``metrics.json``: the summary: the last epoch logged, and each logged name's mean over the folds' values at their
  last epoch.

:class:`LiveHistory` appends to these while the folds train, so ``dvc plots show``, ``dvc exp show`` and DVC's
VS Code extension follow a run as it goes; when the run ends, :func:`kerasflow.tasks.outputs.results.write_history`
replaces the folder with the same content, whole.

The files are written here rather than through ``dvclive.Live.log_metric``, which opens and appends to a file per
value: for the 30 folds of ``iris_mlp`` that adds some 60% to the run's time, for ``cancer_mlp``'s 10 some 17%
(BENCHMARKS.md, "live history"). Here the rows of all epochs since the last write go to each file in one append,
about once a second, when training ends and, in a sweep's trial, before each checkpoint and at each epoch where ASHA
may stop it.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import keras
import numpy as np

from kerasflow.tasks.outputs.tensorboard import FoldEvents

FOLDS_PLOT = Path("plots/custom/folds.json")
"""All folds' rows in one table: what dvc.yaml declares as each experiment's plot."""
STACKED_LOSS = re.compile(r"f\d+_loss")
"""A stacked model's slot's training loss in an epoch's logs (`f3_loss`)."""
SUMMARY = Path("metrics.json")
STEP_FILES = Path("plots/metrics")


def fold_folders(n_folds: int) -> list[str]:
    """Each fold's folder in a history: ``fold_00``, ``fold_01``..."""
    return [f"fold_{index:02d}" for index in range(n_folds)]


def history_names(metric: str, learning_rate: bool = False) -> list[str]:
    """What a history logs each epoch: the training loss, the validation loss (the held-out rows', or a validation
    split's where early stopping or reduce_on_plateau follows it), and the same for the metric; with
    `learning_rate` (a rate that changes as it trains), the epoch's rate too."""
    return ["loss", "val_loss", metric, f"val_{metric}", *(["learning_rate"] if learning_rate else [])]


def fold_rows(histories: Sequence[dict[str, list[float]]], names: Sequence[str]
              ) -> Iterator[tuple[int, int, list[float | None]]]:
    """Each fold's epochs of trained `histories` (Keras' `History.history`, one a fold) as rows to add to a
    history: (fold, epoch from 1, the values of `names`, None where a name has none).

    Examples
    --------
    >>> list(fold_rows([{"loss": [0.5, 0.25]}, {"loss": [0.75]}], ["loss", "val_loss"]))
    [(0, 1, [0.5, None]), (0, 2, [0.25, None]), (1, 1, [0.75, None])]
    """
    for fold, history in enumerate(histories):
        epochs = max(map(len, history.values()), default=0)
        columns = [history.get(name, [None] * epochs) for name in names]
        for epoch, values in enumerate(zip(*columns), start=1):
            yield fold, epoch, list(values)


def _replace(path: Path, text: str) -> None:
    """Replace `path` in one rename: a reader sees the previous content or the new, never half of it.

    Not :func:`kerasflow.tasks.outputs.atomic.atomic_path`: that one makes a temporary folder per write and is the
    fault-injection point of a result's write (``write:metrics.json``), which this summary, rewritten each second
    while training, must not be taken for."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


class HistoryFolder:
    """A dvclive history folder being written: rows are added per fold and epoch, and :meth:`flush` puts the ones
    added since the last flush on disk.

    `folds` names each fold's folder (``fold_00``...), by fold index; `names` are the logged names (``loss``,
    ``val_loss``, the metric and ``val_`` + metric). A training resumed from a checkpoint taken after epoch
    `resume_epoch` keeps the folder's rows up to that epoch and drops the later ones, which the process that died
    logged after its checkpoint and the resumed training logs again; 0 starts the folder anew.

    With `tensorboard`, every row added is also logged as TensorBoard scalars in that folder
    (:class:`kerasflow.tasks.outputs.tensorboard.FoldEvents`; a resumed folder's kept rows too), on disk at each
    flush; :meth:`close` closes its files.
    """

    def __init__(self, directory: Path, folds: Sequence[str], names: Sequence[str], resume_epoch: int = 0,
                 tensorboard: Path | None = None) -> None:
        self.directory, self.folds, self.names = Path(directory), list(folds), list(names)
        self.events = FoldEvents(tensorboard, self.folds, self.names) if tensorboard is not None else None
        plot = self.directory / FOLDS_PLOT
        kept = [row for row in json.loads(plot.read_text()) if row["epoch"] <= resume_epoch] \
            if resume_epoch and plot.is_file() else []
        shutil.rmtree(self.directory, ignore_errors=True)
        plot.parent.mkdir(parents=True, exist_ok=True)
        # The table is rewritten whole at each flush: each row is made into JSON text once, by this format.
        self.row_format = "{{" + ", ".join(f"{json.dumps(key)}: {{}}" for key in ["fold", "epoch", *self.names]) + "}}"
        self.table: list[str] = []
        self.last: dict[int, list[float | None]] = {}  # each fold's values at its last epoch
        self.epoch = 0
        self.pending: dict[tuple[int, str], list[str]] = defaultdict(list)
        for row in kept:
            self.add(row["fold"], row["epoch"], [row.get(name) for name in self.names])
        if kept:
            self.flush()

    def add(self, fold: int, epoch: int, values: Sequence[float | None]) -> None:
        """Fold `fold`'s values at `epoch` (from 1), in `names`' order, kept to six significant digits (float32
        holds about seven); a missing or non-finite value gets no step and is null in the table (a diverged
        fold's). This runs for every fold and epoch: each value is made text once, for both files."""
        shown = []
        for name, value in zip(self.names, values):
            if value is None or not math.isfinite(value):
                shown.append("null")
            else:
                text = f"{value:.6g}"
                self.pending[fold, name].append(f"{epoch}\t{text}\n")
                shown.append(text)
        self.table.append(self.row_format.format(fold, epoch, *shown))
        self.last[fold] = list(values)
        self.epoch = max(self.epoch, epoch)
        if self.events is not None:
            self.events.add(fold, epoch, values)

    def summary(self) -> dict[str, float | int | None]:
        """The folder's `metrics.json`: the last epoch logged, and per name the mean over the folds of their values
        at their last epoch (a diverged fold's, null there, left out; None when no fold has one)."""
        means = {}
        for index, name in enumerate(self.names):
            values = [last[index] for last in self.last.values()
                      if last[index] is not None and math.isfinite(last[index])]
            means[name] = float(f"{np.mean(values):.6g}") if values else None
        return {"epoch": self.epoch, **means}

    def flush(self) -> None:
        """Append the pending rows to their step files; rewrite the all-folds table and the summary."""
        for (fold, name), lines in self.pending.items():
            path = self.directory / STEP_FILES / self.folds[fold] / f"{name}.tsv"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                lines = [f"step\t{name}\n", *lines]
            with open(path, "a", encoding="utf-8") as handle:
                handle.writelines(lines)
        self.pending.clear()
        _replace(self.directory / FOLDS_PLOT, f"[{', '.join(self.table)}]\n")
        _replace(self.directory / SUMMARY, json.dumps(self.summary(), indent=4, allow_nan=False) + "\n")
        if self.events is not None:
            self.events.flush()

    def close(self) -> None:
        """Close the TensorBoard files, their values on disk (the history's own files need no closing)."""
        if self.events is not None:
            self.events.close()


class LiveHistory(keras.callbacks.Callback):
    """Logs each fold's loss and metric at every epoch's end into its :class:`HistoryFolder`, on disk when training
    ends and in between every `every` seconds, or less often when writing takes long: a write comes at least 100
    times its own duration after the last, so the writes cost at most about 1% of the training's time
    (`every=None`: after each epoch). An epoch's end only keeps its logs; the rows are made and written then.

    `folders` hold the folds of one config each (a run's one, or a sweep trial's stacked group's), in training
    order: model j (slot j of a stacked model, else the j-th model trained) is fold ``j % n`` of config ``j // n``,
    `n` folds to a folder. With `models`, folder i logs the folds of model `models[i]` instead (the model trained
    for several configs, see :class:`kerasflow.tasks.sweep.groups.SharedEpochs`), and with `until`, its epochs up
    to `until[i]` only. A stacked model's logs hold every slot's values (``f<j>_<name>``, ``val_f<j>_<name>``);
    models trained one after another log plain names, and each new model Keras hands the callback is the next.

    With `write_at`, it also writes at each epoch (from 1) for which that says so: placed before the callback that
    checkpoints a sweep's trial at those epochs, the rows up to a checkpoint are on disk before the checkpoint is,
    so a trial resumed from it finds them (:class:`HistoryFolder`'s `resume_epoch`).
    """

    def __init__(self, folders: HistoryFolder | Sequence[HistoryFolder], every: float | None = 1.0,
                 models: Sequence[int] | None = None, until: Sequence[int] | None = None,
                 write_at: Callable[[int], bool] | None = None) -> None:
        super().__init__()
        self.folders = [folders] if isinstance(folders, HistoryFolder) else list(folders)
        self.models = list(models) if models is not None else list(range(len(self.folders)))
        self.until = list(until) if until is not None else [None] * len(self.folders)
        self.n_folds, self.every, self.write_at = len(self.folders[0].folds), every, write_at
        self.next_flush = time.monotonic() + (every or 0.0)
        self.kept: list[tuple[int, int, dict]] = []  # (model, epoch, logs) since the last write
        # A stacked model's log entry of each slot's values: `loss` -> `f3_loss`, `val_loss` -> `val_f3_loss`.
        # The learning rate is one for all slots: logged under its own name.
        self.slot_keys = [[name if name == "learning_rate" else f"val_f{slot}_{name[4:]}" if name.startswith("val_")
                           else f"f{slot}_{name}" for name in self.folders[0].names]
                          for slot in range((max(self.models) + 1) * self.n_folds)]
        self._model_seen: keras.Model | None = None
        self._model_index = -1

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.model is not self._model_seen:  # a new model: the next one trained on its own (or the stack)
            self._model_seen, self._model_index = self.model, self._model_index + 1
        self.kept.append((self._model_index, epoch + 1, dict(logs or {})))
        if self.every is None or time.monotonic() >= self.next_flush or \
                (self.write_at is not None and self.write_at(epoch + 1)):
            self.on_train_end()

    def on_train_end(self, logs: dict | None = None) -> None:
        start = time.monotonic()
        for model_index, epoch, kept in self.kept:
            if any(STACKED_LOSS.fullmatch(key) for key in kept):  # a stacked model's: each slot's values
                for slot, keys in enumerate(self.slot_keys):
                    if keys[0] in kept:  # a slot that stopped early has no values past its last epoch
                        self._add(slot, epoch, [kept.get(key) for key in keys])
            else:
                self._add(model_index, epoch, [kept.get(name) for name in self.folders[0].names])
        self.kept.clear()
        for folder in self.folders:
            folder.flush()
        end = time.monotonic()
        self.next_flush = end + max(self.every or 0.0, 100 * (end - start))

    def _add(self, model_index: int, epoch: int, values: list[float | None]) -> None:
        config, fold = divmod(model_index, self.n_folds)
        for folder, model, until in zip(self.folders, self.models, self.until):
            if model == config and (until is None or epoch <= until):
                folder.add(fold, epoch, values)
