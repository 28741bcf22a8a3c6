"""Cross-validation and the final refit, as plain functions of a spec and a table."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from tasks.data import DataError, Table
from tasks.models import output_units
from tasks.preprocess import LabelCodec, Preprocessor
from tasks.spec import ExperimentSpec
from tasks.split import Split, make_splits
from tasks.stacked import fit_stacked
from tasks.train import FoldData, FoldResult, encode_target, fit_fold, fit_model


@dataclass(frozen=True)
class Encoded:
    """A table's target as class codes (or floats), with the codec that made them."""

    codes: np.ndarray
    codec: LabelCodec | None

    @property
    def n_classes(self) -> int:
        return len(self.codec.classes_) if self.codec is not None else 0


@dataclass
class CVResult:
    """Scores of every fold, in the shape `metrics.json` stores them."""

    metric: str
    higher_is_better: bool
    folds: list[FoldResult]
    stacked: bool
    seconds: float

    @property
    def scores(self) -> list[float]:
        return [fold.score for fold in self.folds]

    def summary(self) -> dict[str, Any]:
        scores = np.asarray(self.scores)
        return {"metric": self.metric, "mean": float(scores.mean()), "std": float(scores.std()),
                "folds": [float(s) for s in scores], "n_folds": len(scores),
                "higher_is_better": self.higher_is_better, "stacked": self.stacked,
                "seconds": round(self.seconds, 2)}


def encode_labels(spec: ExperimentSpec, table: Table, name: str = "experiment") -> Encoded:
    """Encode the target and check that the model's last layer fits it."""
    units = output_units(spec.model)
    if spec.dataset.task == "regression":
        expected, encoded = 1, Encoded(table.y.to_numpy(dtype=np.float64), None)
    else:
        codec = LabelCodec().fit(table.y)
        encoded = Encoded(codec.transform(table.y), codec)
        expected = 1 if spec.dataset.task == "binary" else encoded.n_classes
    if units != expected:
        last = len(spec.model.layers) - 1
        raise DataError(f"experiments.{name}.model.layers: the last Dense layer must have {expected} unit(s) for "
                        f"task {spec.dataset.task!r} on {table.source} "
                        f"({encoded.n_classes or 'a numeric'} target{'s' if encoded.n_classes else ''}). "
                        f"Received: {units} (layers[{last}])")
    return encoded


def fit_split(spec: ExperimentSpec, table: Table, labels: Encoded, split: Split) -> tuple[FoldData, Preprocessor]:
    """Fit the preprocessing on the split's training rows only, and transform both sides with it."""
    preprocessor = Preprocessor.from_spec(spec.preprocess).fit(table.X.iloc[split.train_index])
    fold = FoldData(
        X_train=preprocessor.transform(table.X.iloc[split.train_index]),
        y_train=encode_target(spec, labels.codes[split.train_index], labels.n_classes),
        X_test=preprocessor.transform(table.X.iloc[split.test_index]),
        y_test=encode_target(spec, labels.codes[split.test_index], labels.n_classes),
    )
    return fold, preprocessor


def prepare_folds(spec: ExperimentSpec, table: Table, labels: Encoded) -> list[FoldData]:
    """Every split of the evaluation, each with preprocessing fitted inside the fold."""
    return [fit_split(spec, table, labels, split)[0] for split in make_splits(spec.evaluate, labels.codes)]


def cross_validate(spec: ExperimentSpec, folds: list[FoldData], callbacks: Sequence[keras.callbacks.Callback] = (),
                   initial_epoch: int = 0) -> CVResult:
    """Train and score one model per fold: all at once when the model stacks, else one after another.

    `callbacks` see every model's epochs: the stacked model's (`val_f0_<metric>`...) or each fold model's in turn.
    """
    start = time.perf_counter()
    stacked = uses_stacking(spec, len(folds))
    results = (fit_stacked(spec, folds, callbacks, initial_epoch) if stacked else
               [fit_fold(spec, fold, i, callbacks, initial_epoch) for i, fold in enumerate(folds)])
    return CVResult(metric=spec.metric, higher_is_better=spec.higher_is_better, folds=results, stacked=stacked,
                    seconds=time.perf_counter() - start)


def uses_stacking(spec: ExperimentSpec, n_folds: int) -> bool:
    """Whether the folds train as one stacked program (see `tasks/stacked.py`)."""
    return spec.evaluate.stack_folds and spec.model.stackable and n_folds > 1


@dataclass
class FinalModel:
    """The model retrained on every row, with the preprocessing fitted on those rows."""

    model: keras.Model
    preprocessor: Preprocessor
    codec: LabelCodec | None


def refit(spec: ExperimentSpec, table: Table, labels: Encoded) -> FinalModel:
    """Retrain on all rows: the model to keep once cross-validation has said how good it is."""
    preprocessor = Preprocessor.from_spec(spec.preprocess).fit(table.X)
    X = preprocessor.transform(table.X)
    model, _ = fit_model(spec, X, encode_target(spec, labels.codes, labels.n_classes))
    return FinalModel(model=model, preprocessor=preprocessor, codec=labels.codec)
