"""Feature and target encoding, fitted on a fold's training rows only and saved as plain JSON.

JSON rather than a pickled scikit-learn object: `kerasflow predict` loads it from a folder a user hands us,
and loading a pickle would run whatever code the file contains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kerasflow.tasks.config.errors import DataError
from kerasflow.tasks.config.schema import PreprocessSpec, TextSpec
from kerasflow.tasks.data.checks import SHOWN_LINES, file_lines
from kerasflow.tasks.data.table import named
from kerasflow.tasks.data.text import Tokenizer


class Preprocessor:
    """Impute, encode categoricals and scale numeric features, scikit-learn style (`fit` / `transform`).

    Parameters
    ----------
    scale : {"none", "standard", "minmax"}
    categorical : {"none", "onehot", "ordinal"}
        How non-numeric columns are encoded; "none" refuses them. A category the fitted rows lack (in a fold's
        held-out rows, or a refit's validation rows, only) is all zeros one-hot, -1 ordinal (before scaling);
        `kerasflow predict` refuses it.
    impute : {"none", "mean", "median", "most_frequent"}
        How missing values are filled; "none" refuses them.
    text : TextSpec, optional
        The rows are one text column, turned into `maxlen` token ids or a bag of words by a
        :class:`kerasflow.tasks.data.text.Tokenizer` whose vocabulary comes from the rows `fit` sees (the other
        settings must then be "none"). Any other column is refused rather than silently left out of the model;
        a missing text is an empty one (all padding, or an empty bag).
    spec : PreprocessSpec, optional
        The params section these settings came from: errors then name its keys and the experiment's data file.

    Examples
    --------
    >>> import pandas as pd
    >>> X = pd.DataFrame({"a": [0.0, 2.0, 4.0], "colour": ["red", "blue", "red"]})
    >>> pre = Preprocessor(scale="minmax", categorical="onehot").fit(X)
    >>> pre.transform(X).tolist()
    [[0.0, 0.0, 1.0], [0.5, 1.0, 0.0], [1.0, 0.0, 1.0]]
    """

    def __init__(self, scale: str = "none", categorical: str = "none", impute: str = "none",
                 text: TextSpec | None = None, *, spec: PreprocessSpec | None = None) -> None:
        self.scale = scale
        self.categorical = categorical
        self.impute = impute
        self.text = text
        self.spec = spec

    @classmethod
    def from_spec(cls, spec: PreprocessSpec) -> "Preprocessor":
        return cls(scale=spec.scale, categorical=spec.categorical, impute=spec.impute, text=spec.text, spec=spec)

    def _where(self, key: str) -> tuple[str, str]:
        """The message's prefix (the data file, when known) and the params key behind `key`, for errors."""
        if self.spec is None:
            return "", ""
        return (f"{self.spec.data_file}: " if self.spec.data_file else ""), named(self.spec, key)

    def fit(self, X: pd.DataFrame) -> "Preprocessor":
        if self.text is not None:
            return self._fit_text(X)
        self.columns_ = [str(c) for c in X.columns]
        self.categorical_columns_ = [c for c, dtype in zip(self.columns_, X.dtypes)
                                     if not pd.api.types.is_numeric_dtype(dtype)]
        if self.categorical_columns_ and self.categorical == "none":
            column = self.categorical_columns_[0]
            values = X[column].dropna()
            words = values[pd.to_numeric(values, errors="coerce").isna()]
            examples = words if len(words) else values
            shown = f"e.g. {examples.iloc[0]!r} in {column!r}" if len(examples) else f"{column!r} empty in these rows"
            prefix, key = self._where("categorical")
            texts = len(examples) > 0 and " " in str(examples.iloc[0])  # words: a text to tokenize, not categories
            raise DataError(f"{prefix}non-numeric feature columns {self.categorical_columns_} ({shown}) need an "
                            f"encoding, and preprocess.categorical is 'none'{key}. Allowed: "
                            f"'onehot' or 'ordinal'; or remove the column(s) from the file"
                            + (f"; or, to read {column!r} as text, preprocess.text: {{column: {column}}}" if texts
                               else ""))
        self._check_complete(X, _with_missing(X))
        # Every column gets a fill value when imputing: a held-out or new row may miss one the training rows had.
        filled = self.columns_ if self.impute != "none" else []
        empty = [c for c in filled if X[c].isna().all()]
        if empty:  # no value to take a mean, median or mode of: NaN (or no mode) would be trained on
            prefix, key = self._where("impute")
            raise DataError(f"{prefix}feature column(s) {empty} have no value in the rows the preprocessing is fitted "
                            f"on (a fold's training rows, or all rows), so preprocess.impute {self.impute!r}{key} "
                            f"has nothing to fill them from; remove the column(s) from the file, or complete them")
        self.fill_ = {c: _fill_value(X[c], self.impute, c in self.categorical_columns_) for c in filled}
        self.categories_ = {c: sorted(category_text(X[c].dropna()).unique().tolist())
                            for c in self.categorical_columns_}
        encoded = self._encode(X)
        if self.scale == "standard":
            self.center_ = encoded.mean(axis=0)
            self.scale_ = _nonzero(encoded.std(axis=0))
        elif self.scale == "minmax":
            self.center_ = encoded.min(axis=0)
            self.scale_ = _nonzero(encoded.max(axis=0) - self.center_)
        else:
            self.center_ = np.zeros(encoded.shape[1])
            self.scale_ = np.ones(encoded.shape[1])
        return self

    def _fit_text(self, X: pd.DataFrame) -> "Preprocessor":
        column = str(self.text.column)
        received = [str(c) for c in X.columns]
        prefix, key = self._where("text.column")
        if column not in received:
            raise DataError(f"{prefix}preprocess.text.column {self.text.column!r} not found{key} among the columns "
                            f"besides the target. Columns found: {', '.join(received) or 'none'}")
        others = [c for c in received if c != column]
        if others:
            raise DataError(f"{prefix}preprocess.text{key} makes the text column {column!r} the only input, but the "
                            f"file also has the column(s) {others}: remove them, or the model would silently "
                            f"ignore them")
        self.columns_ = [column]
        self.categorical_columns_, self.fill_, self.categories_ = [], {}, {}
        self.tokenizer_ = Tokenizer.from_spec(self.text).fit(_texts(X[column]))
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        """The encoded, scaled features as a float32 matrix; with `text`, the token ids as an int32 matrix or the
        bags of words as a float32 one."""
        received = [str(c) for c in X.columns]
        if received != self.columns_:
            missing = [c for c in self.columns_ if c not in received]
            extra = [c for c in received if c not in self.columns_]
            raise DataError(f"columns differ from those the model was trained on: missing {missing}, "
                            f"extra {extra}" + ("" if missing or extra else " (same names, other order)"))
        if self.text is not None:
            return self.tokenizer_.transform(_texts(X[self.columns_[0]]))
        # A value missing only from rows `fit` did not see would otherwise become a NaN prediction, silently.
        self._check_complete(X, [c for c in _with_missing(X) if c not in self.fill_])
        return ((self._encode(X) - self.center_) / self.scale_).astype(np.float32)

    def _check_complete(self, X: pd.DataFrame, missing: list[str]) -> None:
        """Refuse missing values in `missing` columns unless an imputation fills them."""
        if not missing or self.impute != "none":
            return
        labels = X.index[np.flatnonzero(X[missing].isna().any(axis=1).to_numpy())[:SHOWN_LINES]]
        prefix, key = self._where("impute")
        raise DataError(f"{prefix}feature column(s) {missing} have missing values ({self._rows(labels)}) and "
                        f"{impute_advice(key)}")

    def _rows(self, labels: pd.Index) -> str:
        """Where rows `labels` of the data are: the data file's lines where the rows are its rows, by position."""
        if not pd.api.types.is_integer_dtype(labels):
            return f"rows {list(labels)}"
        if self.spec is not None and self.spec.data_file and Path(self.spec.data_file).is_file():
            return f"file lines {file_lines(labels.to_numpy(), self.spec.data_header, Path(self.spec.data_file))}"
        return f"data rows {[int(i) + 1 for i in labels]}, counted from 1 below any header"

    def _encode(self, X: pd.DataFrame) -> np.ndarray:
        if not self.categories_ and not self.fill_:  # all numeric and complete: one copy (an image's pixels)
            # Row-major, as the columns stacked below: the scaler's means then round the same way.
            return np.ascontiguousarray(X.to_numpy(dtype=np.float64))
        parts = []
        for column in self.columns_:
            values = X[column]
            if column in self.fill_:
                values = values.fillna(self.fill_[column])
            if column not in self.categories_:
                parts.append(values.to_numpy(dtype=np.float64)[:, None])
                continue
            codes = pd.Categorical(category_text(values), categories=self.categories_[column]).codes
            if self.categorical == "onehot":
                # An unseen category becomes all zeros, as scikit-learn's handle_unknown="ignore" does.
                parts.append((codes[:, None] == np.arange(len(self.categories_[column]))).astype(np.float64))
            else:  # a category the fitted rows lack is -1, as scikit-learn's unknown_value=-1
                parts.append(codes.astype(np.float64)[:, None])
        return np.hstack(parts) if parts else np.empty((len(X), 0))

    def to_dict(self) -> dict[str, Any]:
        state = {"scale": self.scale, "categorical": self.categorical, "impute": self.impute,
                 "columns": self.columns_, "categorical_columns": self.categorical_columns_,
                 "fill": self.fill_, "categories": self.categories_}
        if self.text is not None:
            return {**state, "text": self.text.model_dump(mode="json"), "vocabulary": self.tokenizer_.vocabulary_,
                    "idf": self.tokenizer_.idf_}
        return {**state, "center": self.center_.tolist(), "scale_by": self.scale_.tolist()}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "Preprocessor":
        # Model folders saved before text models existed have no "text" key.
        text = TextSpec.model_validate(state["text"]) if state.get("text") is not None else None
        pre = cls(state["scale"], state["categorical"], state["impute"], text)
        pre.columns_ = list(state["columns"])
        pre.categorical_columns_ = list(state["categorical_columns"])
        pre.fill_ = dict(state["fill"])
        pre.categories_ = {k: list(v) for k, v in state["categories"].items()}
        if text is not None:
            # Model folders saved before bags of words existed have no "idf" key.
            pre.tokenizer_ = Tokenizer.from_spec(text).set_vocabulary(state["vocabulary"], state.get("idf"))
        else:
            pre.center_ = np.asarray(state["center"], dtype=np.float64)
            pre.scale_ = np.asarray(state["scale_by"], dtype=np.float64)
        return pre


class LabelCodec:
    """Class labels <-> integer codes 0..n-1 (scikit-learn's LabelEncoder, JSON-serialisable)."""

    def fit(self, y: pd.Series) -> "LabelCodec":
        self.classes_ = sorted(pd.unique(y).tolist(), key=lambda v: (str(type(v)), v))
        return self

    def transform(self, y: pd.Series) -> np.ndarray:
        index = {label: code for code, label in enumerate(self.classes_)}
        unknown = sorted({str(v) for v in y if v not in index})
        if unknown:
            raise DataError(f"target labels {unknown} were not seen in training; known: {self.classes_}")
        return np.fromiter((index[v] for v in y), dtype=np.int64, count=len(y))

    def to_dict(self) -> dict[str, Any]:
        return {"classes": [_plain(c) for c in self.classes_]}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "LabelCodec":
        codec = cls()
        codec.classes_ = list(state["classes"])
        return codec


def impute_advice(key: str) -> str:
    """The end of a refusal of missing feature values: no imputation is set, what would fill them, or complete the
    file; `key` names `preprocess.impute` in the params file (:func:`~kerasflow.tasks.data.table.named`)."""
    return f"preprocess.impute is 'none'{key}. Allowed: 'mean', 'median' or 'most_frequent'; or complete the file"


def category_text(values: pd.Series) -> pd.Series:
    """A category column's cells as the text the file holds, a missing one missing: a whole number read as a
    float (digits, and a blank cell that made pandas read them as floats) is written as the file wrote it, `1`,
    not `1.0`.

    Examples
    --------
    >>> category_text(pd.Series([1.0, None, 2.5])).tolist(), category_text(pd.Series(["A", 1.0])).tolist()
    (['1', nan, '2.5'], ['A', '1'])
    """
    texts = values.map(lambda value: str(int(value)) if isinstance(value, float) and value.is_integer()
                       else str(value))
    return texts.where(values.notna())


def _with_missing(X: pd.DataFrame) -> list[str]:
    """The columns of `X` with a missing value, in order."""
    return [str(c) for c in X.columns[X.isna().any().to_numpy()]]


def _texts(column: pd.Series) -> list[str]:
    """A text column's cells as strings: an empty cell (read as NaN) is an empty text."""
    return column.fillna("").astype(str).tolist()


def _fill_value(column: pd.Series, impute: str, categorical: bool) -> Any:
    if impute == "most_frequent" or categorical:
        return _plain(column.mode(dropna=True).iloc[0])
    return float(column.mean() if impute == "mean" else column.median())


def _nonzero(values: np.ndarray) -> np.ndarray:
    """A constant column scales by 1, not by 0 (as scikit-learn's scalers do)."""
    return np.where(values == 0, 1.0, values)


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars, so they round-trip through JSON."""
    return value.item() if isinstance(value, np.generic) else value
