"""Continued training (`train.init_from`): a saved model folder as the start of a new training.

The books' chapter on updating a saved model with new data loads the model and fits it again. Here the experiment's
`model.layers` are built as usual and start from the folder's weights; the folder's fitted preprocessing, label
classes and target scale are reused as they are (not refitted), so the new rows are encoded exactly as the rows the
weights learnt from. Everything that would make that wrong is refused before any training, naming the folder and the
key or file on the other side: layer shapes, the task, the preprocessing settings, the columns and the classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from kerasflow.tasks.config.errors import DataError, ParamsError
from kerasflow.tasks.config.schema import ExperimentSpec, experiment_key
from kerasflow.tasks.data.folders import FolderFormat
from kerasflow.tasks.data.preprocess import LabelCodec, Preprocessor
from kerasflow.tasks.data.table import Table, file_md5, folder_format
from kerasflow.tasks.data.window import window_table
from kerasflow.tasks.outputs.saved_model import (
    MODEL_FILE,
    PREPROCESSING_FILE,
    SavedModel,
    load_keras_model,
    read_saved,
)
from kerasflow.tasks.training.models import TargetScale, build_model

COMPARED_SETTINGS = ("scale", "categorical", "impute", "text")
"""The preprocess settings a saved preprocessing was fitted with, which the continuing experiment must repeat."""


@dataclass(frozen=True)
class Start:
    """What a continued experiment takes from its `train.init_from` folder."""

    saved: SavedModel
    weights: list[np.ndarray]
    """The saved model's weights, in `model.get_weights()` order."""
    target_scale: TargetScale | None
    n_inputs: int

    @property
    def preprocessor(self) -> Preprocessor:
        return self.saved.preprocessor

    @property
    def codec(self) -> LabelCodec | None:
        return self.saved.codec

    def record(self) -> dict[str, Any]:
        """The folder and the md5 of its two files, as `run.json` records what the experiment started from."""
        path = self.saved.path
        return {"path": path.as_posix(), "model_md5": file_md5(path / MODEL_FILE),
                "preprocessing_md5": file_md5(path / PREPROCESSING_FILE)}


def model_writers(experiments: dict[str, ExperimentSpec], results_dir: Path) -> dict[str, str]:
    """Which experiment of a command writes the model each continued one starts from: `{continued: writer}` for
    those whose `train.init_from` is the model folder of one of `experiments` (`results_dir/<name>/model`)."""
    folders = {(results_dir / name / "model").resolve(): name for name in experiments}
    return {name: folders[start] for name, spec in experiments.items()
            if spec.train.init_from is not None and (start := Path(spec.train.init_from).resolve()) in folders}


def load_start(spec: ExperimentSpec, name: str = "experiment") -> Start | None:
    """The saved model `spec.train.init_from` names, checked against the spec; None without `init_from`."""
    if spec.train.init_from is None:
        return None
    key = experiment_key(spec, name, "train.init_from")
    try:
        saved = read_saved(spec.train.init_from)
    except DataError as problem:
        raise DataError(f"{key}: {problem}") from None
    if saved.task == "next_token" or spec.dataset.task == "next_token":
        raise ParamsError(f"{key}: continued training of a next_token model is not supported; train it as an "
                          "experiment")
    _check_settings(spec, name, saved)
    try:
        model = load_keras_model(saved.path)
    except DataError as problem:
        raise DataError(f"{key}: {problem}") from None
    scale = next((layer for layer in model.layers if layer.name == "target_scale"), None)
    target_scale = None if scale is None else (_scale_value(scale.scale), _scale_value(scale.offset))
    start = Start(saved=saved, weights=model.get_weights(), target_scale=target_scale,
                  n_inputs=int(model.input_shape[-1]))
    _check_shapes(spec, name, start, model)
    return start


def check_fits(start: Start, spec: ExperimentSpec, name: str, table: Table) -> None:
    """Refuse a data file whose columns (a series' look-back windows' columns) or target classes the saved
    preprocessing and label classes do not hold, naming the file and the folder."""
    where = f"{start.saved.path} ({experiment_key(spec, name, 'train.init_from')})"
    rows = table if spec.preprocess.lookback is None else window_table(table, spec.preprocess)
    received = [str(c) for c in rows.X.columns]
    expected = start.saved.features
    if received != expected:
        missing = [c for c in expected if c not in received]
        extra = [c for c in received if c not in expected]
        raise DataError(f"{table.source}: its feature columns differ from those the preprocessing of {where} was "
                        f"fitted on: missing {missing}, extra {extra}"
                        + ("" if missing or extra else " (same names, other order)"))
    if start.codec is not None:
        known = set(start.codec.classes_)
        unseen = sorted({str(v) for v in table.y if v not in known})
        if unseen:
            raise DataError(f"{table.source}: target classes {unseen} are not among those the model in {where} "
                            f"predicts: {start.codec.classes_}")


def _check_settings(spec: ExperimentSpec, name: str, saved: SavedModel) -> None:
    origin = f"{saved.path} ({experiment_key(spec, name, 'train.init_from')})"
    if saved.task != spec.dataset.task:
        raise ParamsError(f"{experiment_key(spec, name, 'dataset.task')}: {spec.dataset.task!r}, but the model in "
                          f"{origin} was trained for {saved.task!r}")
    targets = spec.dataset.target_names
    # Several outputs are their columns in order: other columns, or these in another order, would train each output
    # on another column's values (one target's column may be renamed in the new file).
    if (len(targets) > 1 or len(saved.targets) > 1) and tuple(targets) != saved.targets:
        raise ParamsError(f"{experiment_key(spec, name, 'dataset.target')}: {targets}, but the model in {origin} "
                          f"predicts {list(saved.targets)}, an output each in that order: name the same columns in "
                          f"the same order")
    steps = (saved.window or {}).get("steps_out", 1)
    if steps != spec.preprocess.steps_out:  # the outputs, and their target scale, are that many a target
        raise ParamsError(f"{experiment_key(spec, name, 'preprocess.steps_out')}: {spec.preprocess.steps_out}, but "
                          f"the model in {origin} forecasts {steps} step(s) of each target: make them equal")
    folder = folder_format(spec.dataset)
    if folder != saved.folder and Path(spec.dataset.file).exists():  # else the file's absence is the error
        raise ParamsError(f"{experiment_key(spec, name, 'dataset')}: {_rows_read(folder)}, but the model in {origin} "
                          f"was trained on {_rows_read(saved.folder)}: read the rows as it did")
    fitted = saved.preprocessor
    for setting in COMPARED_SETTINGS:
        ours, theirs = getattr(spec.preprocess, setting), getattr(fitted, setting)
        if ours != theirs:
            raise ParamsError(f"{experiment_key(spec, name, f'preprocess.{setting}')}: {_shown(ours)}, but the "
                              f"preprocessing of {origin}, reused as it was fitted, has {_shown(theirs)}: make "
                              f"them equal")


def _check_shapes(spec: ExperimentSpec, name: str, start: Start, saved_model: keras.Model) -> None:
    """The experiment's layers must hold weights of the saved ones' shapes, layer by layer."""
    built = build_model(spec.model, start.n_inputs, spec.train.seed, start.target_scale)
    ours = [(layer, [tuple(w.shape) for w in layer.weights]) for layer in built.layers if layer.weights]
    theirs = [[tuple(w.shape) for w in layer.weights] for layer in saved_model.layers if layer.weights]
    where = f"{experiment_key(spec, name, 'model.layers')} and the model in {start.saved.path}"
    if len(ours) != len(theirs):
        raise ParamsError(f"{where} differ: {len(ours)} layers with weights here, {len(theirs)} there")
    for (layer, shapes), saved_shapes in zip(ours, theirs):
        if shapes != saved_shapes:
            index = built.layers.index(layer)
            raise ParamsError(f"{where} differ at layers[{index}] ({type(layer).__name__}): weights of shapes "
                              f"{shapes} here, {saved_shapes} there")


def _rows_read(folder: FolderFormat | None) -> str:
    """How rows are read, in words: `rows of a CSV`, `text files`, `16 x 16 rgb images`."""
    if folder is None:
        return "rows of a CSV"
    if folder.kind == "texts":
        return "text files"
    return f"{folder.image_size[0]} x {folder.image_size[1]} {folder.color_mode} images"


def _shown(value: object) -> str:
    return repr(value.model_dump(mode="json") if hasattr(value, "model_dump") else value)


def _scale_value(value: object) -> float | tuple[float, ...]:
    """A saved `target_scale` layer's scale or offset as :func:`~kerasflow.tasks.training.models.fit_target_scale`
    gives it: a number, or one an output (of several target columns)."""
    values = np.asarray(value, dtype=np.float64)
    return float(values) if values.ndim == 0 else tuple(float(v) for v in values)
