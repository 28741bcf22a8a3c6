"""Applying a saved model folder to new rows: the training-time preprocessing, then the labels decoded back.

The folder is the one :func:`kerasflow.tasks.outputs.results.write_model` leaves (``results/<experiment>/model``),
read by :mod:`kerasflow.tasks.outputs.saved_model`; a new CSV is read with the training file's layout (new images or
texts as the training folder's were read), so a user needs no ``params.yaml``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kerasflow.tasks.config.errors import DataError
from kerasflow.tasks.config.schema import PreprocessSpec
from kerasflow.tasks.data import checks
from kerasflow.tasks.data.folders import FolderFormat, prediction_files, read_files
from kerasflow.tasks.data.preprocess import category_text
from kerasflow.tasks.data.table import read_csv
from kerasflow.tasks.data.window import lagged_column, window_rows
from kerasflow.tasks.outputs.atomic import check_output, command_output
from kerasflow.tasks.outputs.saved_model import SavedModel, load_keras_model, read_saved
from kerasflow.tasks.training.hinge import class_scale

PREDICTION = "prediction"
FILE = "file"
"""The column naming each predicted image or text file, relative to the input folder."""
ROW = "row"
"""A series model's column naming each forecast's window by its last row (0-based, of the data rows)."""
PROBA_PREFIX = "proba_"


def _predict_rows(saved: SavedModel, X: np.ndarray) -> np.ndarray:
    """Load the Keras model in safe mode and predict; the only step that needs Keras, so it imports it."""
    from kerasflow.tasks.training.train import predict

    return predict(load_keras_model(saved.path), X)


def feature_frame(saved: SavedModel, frame: pd.DataFrame, source: str | Path = "input") -> pd.DataFrame:
    """The rows' feature columns, named and ordered as in training; target columns, if present, are dropped.

    A file with a header is matched by column name; a header-less one by position, as training read it.
    """
    frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
    features = saved.features
    if saved.header:
        targets = f"the target {saved.targets[0]!r}" if len(saved.targets) == 1 else \
            f"the targets {list(saved.targets)}"
        expected = f"expected the feature columns {features} ({targets} may also be present)"
        received = [c for c in frame.columns if c not in saved.targets]
        missing = [c for c in features if c not in received]
        extra = [c for c in received if c not in features]
        problems = ([f"missing column(s) {missing}"] if missing else []) + \
                   ([f"unexpected column(s) {extra}"] if extra else [])
        if problems:
            # Every expected name absent: most likely a header-less file, whose first row became the header.
            hint = "; does the file have a header row?" if len(missing) == len(features) else ""
            raise DataError(f"{source}: {'; '.join(problems)}; {expected}{hint}")
        return frame[features]

    n_columns = len(features) + len(saved.targets)
    # A negative index counts from the end, as in training.
    target_index = sorted(int(target) % n_columns for target in saved.targets)
    at = f"the target at 0-based index {target_index[0]}" if len(target_index) == 1 else \
        f"the targets at 0-based indices {target_index}"
    expected = (f"expected {len(features)} feature columns, or {n_columns} with {at} (a header-less file: columns "
                f"are matched by position)")
    received = len(frame.columns)
    if received == n_columns:
        features_only = frame.drop(columns=frame.columns[target_index])
    elif received == len(features):
        features_only = frame
    elif received > n_columns:
        extra = list(range(n_columns, received))
        raise DataError(f"{source}: unexpected column(s) at 0-based index {extra}; found {received} columns, "
                        f"{expected}")
    elif received > len(features):  # some of several target columns, or some too many features
        raise DataError(f"{source}: found {received} columns, {expected}")
    else:
        missing = list(range(received, len(features)))
        raise DataError(f"{source}: missing column(s) at 0-based index {missing}; found {received} columns, "
                        f"{expected}")
    return features_only.set_axis(features, axis=1)


def series_windows(saved: SavedModel, frame: pd.DataFrame, source: str | Path,
                   path: Path | None = None) -> pd.DataFrame:
    """A series model's input given as the file's consecutive rows (the targets' columns and the columns its
    windows read, a header row naming them): one window per run of rows it spans (`lookback` rows `sampling_rate`
    apart), indexed by its last row, whose prediction is the targets `horizon` rows after that row (and the
    `steps_out` - 1 rows after it). `path`: the CSV `frame` was read from, whose lines errors name."""
    window = saved.window
    columns = window["columns"]
    # Model folders saved before sampling_rate or steps_out existed have none: 1. A gap the model learned to fill
    # (preprocess.impute) is left to its saved preprocessing, as in training.
    spec = PreprocessSpec(lookback=window["lookback"], horizon=window["horizon"], lookback_columns=columns,
                          sampling_rate=window.get("sampling_rate", 1), steps_out=window.get("steps_out", 1),
                          impute=saved.preprocessor.impute)
    needed = [*saved.targets, *columns]
    frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
    if not saved.header:  # the columns at their 0-based indices, a target at the one dataset.target gave (-1)
        frame = frame.rename(columns={str(int(target) % frame.shape[1]): target for target in saved.targets})
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        rows = "with a header naming the columns" if saved.header else "holding the columns at 0-based indices"
        raise DataError(f"{source}: a series model takes its window columns {saved.features}, or the file's "
                        f"consecutive rows {rows} {needed}; missing {missing}")
    if len(frame) < spec.window_span:
        raise DataError(f"{source}: a window is {spec.window_span} consecutive rows; the file has {len(frame)}")
    if not saved.preprocessor.fill_:  # named at the file's own column and line, not at the windows' they reach
        gap = next((column for column in needed if frame[column].isna().any()), None)
        if gap is not None:
            lines = checks.file_lines(np.flatnonzero(frame[gap].isna().to_numpy()), saved.header, path)
            raise DataError(f"{source}: column {gap!r} has missing values (file lines {lines}) and the model has no "
                            f"value to fill them with (it was trained without preprocess.impute)")
    for column, known in _own_categories(saved).items():  # named at the file's column and line, not a lag's
        if column in frame.columns:
            _check_categories(frame[column], column, known, source, saved.header, path)
    return window_rows(frame, spec, saved.targets, source).set_axis(frame.index[spec.window_span - 1:], axis=0)


def check_predicts(saved: SavedModel) -> None:
    """Refuse a model that predicts no rows: a next_token model writes text from a prompt instead."""
    if saved.task == "next_token":
        raise DataError(f"{saved.path}: a next_token model writes text from a prompt: kerasflow generate --model "
                        f"{saved.path} --prompt TEXT --length N")


def predict_table(model: str | Path | SavedModel, frame: pd.DataFrame,
                  source: str | Path = "input") -> pd.DataFrame:
    """Predictions for `frame`'s rows, in its row order and with its index, in the target's own terms.

    Classification gives `prediction` (the original class labels) and one `proba_<class>` column per class; a
    multilabel task `prediction_<label>` (1 where the label applies, 0 where not) and `proba_<label>` for each;
    regression gives `prediction` in the target's units (a forecast of k steps: `prediction_1` ...
    `prediction_k`, step j being `horizon + j - 1` rows after the window's last; several targets:
    `prediction_<target>` each, or `prediction_<target>_<j>` of k steps). `source` names the rows in error
    messages. A series model also takes the file's consecutive rows (:func:`series_windows`): one prediction per
    window.
    """
    saved = model if isinstance(model, SavedModel) else read_saved(model)
    check_predicts(saved)
    if len(frame) == 0:
        raise DataError(f"{source}: no rows to predict")
    path = source if isinstance(source, Path) and saved.folder is None else None  # a CSV's rows, in order
    # A series model's window columns, by name, or by position in a header-less file of as many; else the rows.
    windows = set(saved.features) <= {str(c) for c in frame.columns} or (
        not saved.header and frame.shape[1] == len(saved.features))
    if saved.window is not None and not windows:
        frame = series_windows(saved, frame, source, path)
        path = None  # rows are windows now, not the file's
    X = feature_frame(saved, frame, source)
    _check_values(saved, X, source, path)
    output = _predict_rows(saved, saved.preprocessor.transform(X))
    if saved.task == "multilabel":  # whether each label applies (above 0.5, as scored), and its probability
        result = pd.DataFrame({f"{PREDICTION}_{label}": (output[:, j] > 0.5).astype(int)
                               for j, label in enumerate(saved.targets)}, index=frame.index)
        for j, label in enumerate(saved.targets):
            result[f"{PROBA_PREFIX}{label}"] = output[:, j]
        return result
    if saved.codec is None:
        values = output.reshape(len(output), -1)
        if values.shape[1] == 1:
            return pd.DataFrame({PREDICTION: values[:, 0]}, index=frame.index)
        targets, steps = saved.targets, range(1, values.shape[1] // len(saved.targets) + 1)
        if len(targets) == 1:
            names = [str(step) for step in steps]
        elif len(steps) == 1:
            names = list(targets)
        else:  # step-major, as the outputs
            names = [f"{target}_{step}" for step in steps for target in targets]
        return pd.DataFrame(values, columns=[f"{PREDICTION}_{name}" for name in names], index=frame.index)
    classes = saved.codec.classes_
    if saved.task == "binary":
        # One sigmoid unit: the probability of the second class, thresholded as `scoring.score` does; a hinge
        # model's output (tanh's -1 to 1) on the same 0-to-1 scale (tasks/training/hinge.py).
        positive = np.clip(class_scale(output.reshape(-1), saved.parted_at_zero), 0.0, 1.0)
        proba, codes = np.column_stack([1.0 - positive, positive]), (positive > 0.5).astype(int)
    else:
        proba, codes = output, output.argmax(axis=-1)
    result = pd.DataFrame({PREDICTION: pd.Series(classes).iloc[codes].to_numpy()}, index=frame.index)
    for j, label in enumerate(classes):
        result[f"{PROBA_PREFIX}{label}"] = proba[:, j]
    return result


def predict_csv(model_dir: str | Path, input_path: str | Path, output_path: str | Path) -> Path:
    """Predict every row of the CSV `input_path` (or, for a model trained on a folder of images or texts, every
    such file in the folder `input_path`, or that one file) and write the predictions to `output_path`, all or
    nothing.

    Everything is checked and predicted before `output_path` is touched, and it is replaced in one rename, so a
    failed run leaves no partial file and an earlier output intact.
    """
    output_path, input_path = Path(output_path), Path(input_path)
    check_output(output_path)
    target = output_path.resolve()
    if target == input_path.resolve():
        raise DataError(f"{output_path}: is the input file; write the predictions to another file")
    if target.is_relative_to(Path(model_dir).resolve()):
        raise DataError(f"{output_path}: is inside the model folder {model_dir}; write the predictions outside it")
    saved = read_saved(model_dir)
    check_predicts(saved)
    if saved.folder is None:
        if input_path.is_dir():
            raise DataError(f"{input_path}: is a folder; the model was trained on a CSV: expected a CSV file")
        # A category column as the file writes it: pandas would read rows holding only `01` as the number 1.
        text = {*saved.preprocessor.categories_, *_own_categories(saved)}  # a series' own columns too
        predictions = predict_table(saved, read_csv(input_path, saved.header, text_columns=text), source=input_path)
        if saved.window is not None:  # a forecast per window of consecutive rows, named by its last row
            predictions.insert(0, ROW, predictions.index)
    else:
        files = _new_files(saved.folder, input_path)
        predictions = predict_table(saved, read_files(files, saved.folder), source=input_path)
        names = [file.relative_to(input_path).as_posix() for file in files] if input_path.is_dir() else \
            [input_path.name]
        predictions.insert(0, FILE, names)
    with command_output(output_path) as tmp:
        predictions.to_csv(tmp, index=False)
    return output_path


def _new_files(fmt: FolderFormat, input_path: Path) -> list[Path]:
    """The files a model trained on a folder predicts: those of the folder `input_path`
    (:func:`~kerasflow.tasks.data.folders.prediction_files`), sorted by path, or that one file."""
    if input_path.is_file() and input_path.suffix.lower() in fmt.suffixes:
        return [input_path]
    if not input_path.is_dir():
        found = f"not {fmt.one_file}" if input_path.exists() else "file not found"
        raise DataError(f"{input_path}: {found}; the model was trained on a folder of {fmt.description}: give such "
                        f"a folder, or one such file")
    files = prediction_files(input_path, fmt)
    if not files:
        raise DataError(f"{input_path}: no {fmt.description} in its class subfolders or directly in it")
    return files


def _check_values(saved: SavedModel, X: pd.DataFrame, source: str | Path, path: Path | None) -> None:
    """Refuse values the model cannot take, rather than let them through as NaN predictions, a NumPy error, or a
    category the model never saw (encoded as none of its own: a prediction for a row it cannot tell apart). `path`:
    the CSV whose rows `X` holds, in order, whose lines errors name."""
    pre = saved.preprocessor
    if pre.text is not None:
        return  # any text can be read: unseen words become the out-of-vocabulary id, an empty cell empty
    suspect = X.isna().any().to_numpy() | ~X.dtypes.map(pd.api.types.is_numeric_dtype).to_numpy(dtype=bool)
    for column in X.columns[suspect]:  # the columns the checks below can refuse, in order
        values = X[column]
        if column not in pre.categories_ and not pd.api.types.is_numeric_dtype(values):
            # Text where training had numbers (True/False with a blank cell is no text: the blank is missing).
            text = np.flatnonzero((pd.to_numeric(values, errors="coerce").isna() & values.notna()).to_numpy())
            if text.size:
                hint = "" if saved.header else ("; is the first row a header? the model was trained on a file "
                                                 "without one")
                line = checks.file_lines(text, saved.header, path)[0]
                raise DataError(f"{source}: column {column!r} must be numeric, as in training; found "
                                f"{values.iloc[text[0]]!r} (file line {line}){hint}")
        if column not in pre.fill_ and values.isna().any():
            lines = checks.file_lines(np.flatnonzero(values.isna().to_numpy()), saved.header, path)
            raise DataError(f"{source}: column {column!r} has missing values (file lines {lines}) and the model "
                            f"has no value to fill them with (it saw none in training)")
    for column, known in pre.categories_.items():
        _check_categories(X[column], column, known, source, saved.header, path)


def _check_categories(values: pd.Series, column: str, known: list[str], source: str | Path, header: bool,
                      path: Path | None) -> None:
    """Refuse a category the model never saw in training, at its file line (of `path`, the CSV the rows are)."""
    unseen = np.flatnonzero((values.notna() & ~category_text(values).isin(known)).to_numpy())
    if unseen.size:
        raise DataError(f"{source}: column {column!r} holds {values.iloc[unseen[0]]!r} (file line "
                        f"{checks.file_lines(unseen, header, path)[0]}), a value the model never saw in training; "
                        f"it knows {known}")


def _own_categories(saved: SavedModel) -> dict[str, list[str]]:
    """A series model's categories by the file's own column its lag columns (`wind_lag_2`) read: every category
    any of its lags knows."""
    own: dict[str, list[str]] = {}
    for name, known in saved.preprocessor.categories_.items():
        column = lagged_column(name)
        own[column] = sorted({*own.get(column, []), *known})
    return own
