"""What an experiment leaves under ``results/<experiment>/``, each file replaced atomically.

- ``metrics.json``: the primary metric's name, ``mean``, ``std`` and per-fold ``folds`` (DVC metrics);
- ``history/fold_XX.csv``: per-epoch loss and metric, train and validation (DVC plots, one line per fold);
- ``model/model.keras`` + ``model/preprocessing.json``: the model refitted on all rows, with its preprocessing.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import keras

from tasks.atomic import atomic_path, write_json
from tasks.evaluate import CVResult, FinalModel
from tasks.models import build_model
from tasks.preprocess import LabelCodec, Preprocessor
from tasks.saved import MODEL_FILE, PREPROCESSING_FILE, read_saved
from tasks.spec import ExperimentSpec


def write_metrics(out_dir: Path, result: CVResult) -> Path:
    path = out_dir / "metrics.json"
    write_json(path, result.summary())
    return path


def write_history(out_dir: Path, result: CVResult) -> Path:
    """One CSV per fold, so `dvc plots` draws one line per fold."""
    history_dir = out_dir / "history"
    with atomic_path(history_dir) as tmp:
        tmp.mkdir()
        for index, fold in enumerate(result.folds):
            columns = list(fold.history)
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(["epoch", *columns])
            for epoch, values in enumerate(zip(*(fold.history[c] for c in columns)), start=1):
                writer.writerow([epoch, *(f"{v:.6g}" for v in values)])
            (tmp / f"fold_{index:02d}.csv").write_text(buffer.getvalue())
    return history_dir


def write_model(model_dir: Path, spec: ExperimentSpec, final: FinalModel) -> Path:
    """Save the inference model (no optimizer state) and its preprocessing beside it, in `model_dir`."""
    # A fresh, uncompiled twin: the saved file then needs none of kerasflow's training-time objects to load.
    inference = build_model(spec.model, final.model.input_shape[-1], spec.train.seed, final.target_scale)
    inference.set_weights(final.model.get_weights())
    with atomic_path(model_dir) as tmp:
        tmp.mkdir()
        inference.save(tmp / MODEL_FILE)
        state: dict[str, Any] = {"task": spec.dataset.task, "target": str(spec.dataset.target),
                                 "header": spec.dataset.header, "features": final.preprocessor.to_dict(),
                                 "labels": final.codec.to_dict() if final.codec is not None else None}
        (tmp / PREPROCESSING_FILE).write_text(json.dumps(state, indent=2) + "\n")
    return model_dir


def load_model(model_dir: str | Path) -> tuple[keras.Model, Preprocessor, LabelCodec | None]:
    """A saved model folder's Keras model, preprocessing and label codec."""
    saved = read_saved(model_dir)
    return load_keras_model(saved.path), saved.preprocessor, saved.codec


def load_keras_model(model_dir: str | Path) -> keras.Model:
    """The folder's Keras model, loaded with Keras' `safe_mode`: no code from the file is run."""
    return keras.saving.load_model(Path(model_dir) / MODEL_FILE, compile=False, safe_mode=True)
