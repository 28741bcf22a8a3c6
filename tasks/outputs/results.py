"""What an experiment leaves under ``results/<experiment>/``, each file replaced atomically.

- ``metrics.json``: the scores, keyed by the metric's name (DVC metrics), and ``run.json``: the wall time of each
  step and the versions and device that computed them (:mod:`kerasflow.tasks.outputs.metrics`);
- ``history/``: a dvclive folder of per-epoch loss and metric, train and validation, every fold, written while
  the folds train (:mod:`kerasflow.tasks.outputs.live`);
- ``predictions.csv``: every fold's held-out rows (``fold``, ``row`` in the data file, ``true``, ``predicted``;
  a multi-step forecast's a line a ``step``, several targets' a line a ``target``);
- ``model/model.keras`` + ``model/preprocessing.json``: the model refitted on all rows, with its preprocessing;
- ``dataset.json``: the data file and the md5 of its bytes, which the experiment's sweep depends on (dvc.yaml).
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import platform
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import keras

from kerasflow.tasks.config.layers import EmbeddingLayer, PretrainedLayer
from kerasflow.tasks.config.schema import ExperimentSpec
from kerasflow.tasks.data.preprocess import LabelCodec, Preprocessor
from kerasflow.tasks.data.split import fold_settings
from kerasflow.tasks.data.table import file_md5, folder_format
from kerasflow.tasks.data.window import named_columns
from kerasflow.tasks.outputs import live, metrics
from kerasflow.tasks.outputs.atomic import atomic_path, write_json
from kerasflow.tasks.outputs.saved_model import (
    MODEL_FILE,
    PREPROCESSING_FILE,
    load_keras_model,
    read_saved,
)
from kerasflow.tasks.training.evaluate import CVResult, FinalModel, Placement
from kerasflow.tasks.training.hinge import parted_at_zero
from kerasflow.tasks.training.models import build_model, set_model_weights


def write_metrics(out_dir: Path, spec: ExperimentSpec, result: CVResult, timing: dict[str, float],
                  environment: dict[str, str], final: FinalModel | None = None,
                  init_from: dict[str, str] | None = None) -> dict[str, Any]:
    """Write `run.json` and `metrics.json`: the scores, the settings that decided the folds (`fold_settings`:
    runs pair fold by fold by these, not by params.yaml as it is now), each step's wall time in seconds, and what
    computed them (see :func:`environment`), of the refit (`final`) the epoch at which it diverged if it did and
    the epoch whose weights it kept if it kept its best, and the saved model a continued experiment started from
    (:meth:`kerasflow.tasks.training.start.Start.record`); return the record."""
    diverged = None if final is None else final.diverged_at
    # Where early stopping or checkpoint: best may end the refit early or rewind it: the epochs it ran and kept.
    stops = final is not None and (spec.train.early_stopping is not None or spec.train.checkpoint == "best")
    record = {**result.summary(), "fold_settings": fold_settings(spec),
              "timing": {step: round(seconds, 2) for step, seconds in timing.items()}, "environment": environment,
              **({"refit_diverged_at_epoch": diverged} if diverged is not None else {}),
              **({"refit_epochs": {"trained": final.epochs, "kept": final.kept_epoch or final.epochs}} if stops
                 else {}),
              **({"init_from": init_from} if init_from is not None else {})}
    metrics.write_experiment(out_dir, record)
    return record


def write_dataset(out_dir: Path, spec: ExperimentSpec) -> None:
    """Write `dataset.json`: the experiment's data file and the md5 of its bytes, which change exactly when the
    file's do, and the md5 of each weights file the model starts from (a pretrained base's, an embedding's word
    vectors), which no DVC stage depends on: `weights`, by path, only when there is one.

    dvc.yaml's tune stage depends on this rather than on the file: DVC cannot look up the experiment's
    `dataset.file` from a sweep's key (it has no nested interpolation), and depending on the whole `data` folder
    would rerun every sweep whenever any CSV is added or changed.
    """
    record = {"file": Path(spec.dataset.file).as_posix(), "md5": file_md5(spec.dataset.file)}
    weights = [layer.weights for layer in spec.model.layers
               if isinstance(layer, (EmbeddingLayer, PretrainedLayer)) and layer.weights is not None]
    if weights:
        record["weights"] = {Path(path).as_posix(): file_md5(path) for path in weights}
    write_json(out_dir / metrics.DATASET_FILE, record)


def write_history(out_dir: Path, result: CVResult) -> Path:
    """Write every fold's per-epoch history, whole, as the dvclive folder ``history/`` (:mod:`live`), replacing
    what :class:`~kerasflow.tasks.outputs.live.LiveHistory` wrote while the folds trained.

    Nothing but the values goes in (no timestamp), so the same numbers give the same bytes and DVC sees no change.
    """
    history_dir = out_dir / "history"
    with atomic_path(history_dir) as tmp:
        scheduled = any("learning_rate" in fold.history for fold in result.folds)
        folder = live.HistoryFolder(tmp, live.fold_folders(len(result.folds)),
                                    live.history_names(result.metric, scheduled))
        for row in live.fold_rows([fold.history for fold in result.folds], folder.names):
            folder.add(*row)
        folder.flush()
    return history_dir


def write_predictions(out_dir: Path, result: CVResult, codec: LabelCodec | None, targets: Sequence[str],
                      files: Sequence[str] | None = None) -> Path:
    """Every fold's held-out rows: `fold`, `row` (in the data file), `true` and `predicted` (class labels, or
    values with six significant digits). A forecast of k steps (`preprocess.steps_out`) has k lines a window, one a
    step: `step` (from 1) and the `row` of that step's target. Several `targets` (the target columns or labels, as
    `dataset.target` names them) have a line each a row (and step), `target` naming its column. Rows read from a
    folder's files (`files`, each row's, by row) have `file` after `row`. A diverged fold
    (`FoldResult.diverged_at`) predicts nothing: its `predicted` cells are empty, not its outputs' NaN read as a
    class."""

    def shown(values: Any, diverged: bool = False) -> list[str]:
        if diverged:
            return [""] * len(values)
        if codec is not None:
            return [str(codec.classes_[code]) for code in values]
        return [f"{value:.6g}" for value in values]

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if result.folds[0].y_true.ndim == 1:  # one value a row
        writer.writerow(["fold", "row", *(["file"] if files is not None else []), "true", "predicted"])
        for index, fold in enumerate(result.folds):
            predicted = shown(fold.y_pred, fold.diverged_at is not None)
            writer.writerows((index, int(row), *([files[row]] if files is not None else []), true, pred)
                             for row, true, pred in zip(fold.rows, shown(fold.y_true), predicted))
    else:  # step-major: each step's value of every target
        named = len(targets) > 1
        steps = result.folds[0].y_true.shape[1] // len(targets)
        writer.writerow(["fold", "row", *(["step"] if steps > 1 else []), *(["target"] if named else []), "true",
                         "predicted"])
        for index, fold in enumerate(result.folds):
            diverged = fold.diverged_at is not None  # read once: it scans the fold's history
            for row, true, pred in zip(fold.rows, fold.y_true, fold.y_pred):
                true, pred = shown(true), shown(pred, diverged)
                for step in range(steps):
                    for t, target in enumerate(targets):
                        i = step * len(targets) + t
                        writer.writerow((index, int(row) + step, *([step + 1] if steps > 1 else []),
                                         *([target] if named else []), true[i], pred[i]))
    path = out_dir / "predictions.csv"
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())
    return path


def environment(ray_tasks: Sequence[Placement] = ()) -> dict[str, str]:
    """What computes the numbers: Python, Keras, its backend (name and version), the orchestration's versions,
    and the devices Keras' backend sees (`device`: `GPU` when there is any). Where the folds or the refit trained
    as Ray tasks (`ray_tasks`, where each trained), the devices are theirs, and `ray_tasks` says how many ran on
    how many nodes."""
    backend = keras.backend.backend()
    devices = sorted({device for place in ray_tasks for device in place.devices}) or keras.distribution.list_devices()
    found = {"python": platform.python_version(), "keras": keras.__version__, "backend": backend,
             "backend_version": getattr(importlib.import_module(backend), "__version__", "")}
    for package in ("prefect", "ray", "dvc", "dvclive"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    found["device"] = "GPU" if any(d.lower().startswith("gpu") for d in devices) else "CPU"
    found["devices"] = ", ".join(devices)
    if ray_tasks:
        found["ray_tasks"] = f"{len(ray_tasks)} on {len({place.node for place in ray_tasks})} node(s)"
    return found


def write_model(model_dir: Path, spec: ExperimentSpec, final: FinalModel) -> Path:
    """Save the inference model (:func:`inference_model`) and its preprocessing beside it, in `model_dir`."""
    with atomic_path(model_dir) as tmp:
        tmp.mkdir()
        inference_model(spec, final).save(tmp / MODEL_FILE)
        targets = spec.dataset.target_names
        # One target as written (a next_token model's None as "None"), several as a list.
        target = targets if len(targets) > 1 else str(spec.dataset.target)
        state: dict[str, Any] = {"task": spec.dataset.task, "target": target,
                                 "header": spec.dataset.header, "features": final.preprocessor.to_dict(),
                                 "labels": final.codec.to_dict() if final.codec is not None else None}
        preprocess = spec.preprocess
        if preprocess.lookback is not None:  # `kerasflow predict` then also takes a file's consecutive rows
            state["window"] = {"lookback": preprocess.lookback, "horizon": preprocess.horizon,
                               "sampling_rate": preprocess.sampling_rate, "steps_out": preprocess.steps_out,
                               "columns": named_columns(final.preprocessor.columns_, targets,
                                                        preprocess.horizon)}
        folder = folder_format(spec.dataset)
        if folder is not None:  # `kerasflow predict` then reads new image or text files
            state["folder"] = folder.to_dict()
        if parted_at_zero(spec):  # `kerasflow predict` then parts the classes at 0, as they were scored
            state["parted_at_zero"] = True
        (tmp / PREPROCESSING_FILE).write_text(json.dumps(state, indent=2) + "\n")
    return model_dir


def inference_model(spec: ExperimentSpec, final: FinalModel) -> keras.Model:
    """A fresh, uncompiled twin of the refitted model with its weights, no optimizer state: saved, or sent from a
    Ray task, it needs none of kerasflow's training-time objects (its compiled metrics) to load. A model that is
    not compiled is such a twin already (a refit on a Ray task sends one): it is returned as it is."""
    if not final.model.compiled:
        return final.model
    inference = build_model(spec.model, final.model.input_shape[-1], spec.train.seed, final.target_scale)
    set_model_weights(inference, final.model.get_weights())
    return inference


def load_model(model_dir: str | Path) -> tuple[keras.Model, Preprocessor, LabelCodec | None]:
    """A saved model folder's Keras model, preprocessing and label codec."""
    saved = read_saved(model_dir)
    return load_keras_model(saved.path), saved.preprocessor, saved.codec
