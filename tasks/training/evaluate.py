"""Cross-validation and the final refit, as plain functions of a spec and a table."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from kerasflow.tasks.config.errors import DataError, ParamsError
from kerasflow.tasks.config.layers import DenseLayer, EmbeddingLayer, ReshapeLayer, TimeDistributedLayer
from kerasflow.tasks.config.schema import ExperimentSpec, experiment_key
from kerasflow.tasks.data.preprocess import LabelCodec, Preprocessor
from kerasflow.tasks.data.split import Split, make_splits, purged
from kerasflow.tasks.data.table import Table, folder_format
from kerasflow.tasks.data.tokens import TokenVocabulary, windows
from kerasflow.tasks.data.window import last_value_columns, named_columns, window_table, window_targets
from kerasflow.tasks.data.word_vectors import read_word_vectors
from kerasflow.tasks.training.class_weights import check_class_weight, class_weights
from kerasflow.tasks.training.models import TargetScale, fit_target_scale, output_units
from kerasflow.tasks.training.scoring import column_scores, first_non_finite, score
from kerasflow.tasks.training.stacked import fit_stacked
from kerasflow.tasks.training.start import Start, check_fits
from kerasflow.tasks.training.statistics import held_out_ratio
from kerasflow.tasks.training.train import (
    FoldData,
    FoldResult,
    encode_target,
    fit_fold,
    fit_model,
)


@dataclass(frozen=True)
class Encoded:
    """A table's target as class codes (or floats), with the codec that made them."""

    codes: np.ndarray
    codec: LabelCodec | None

    @property
    def classes(self) -> list[object] | None:
        """The class labels by code (none for a regression or a multilabel task)."""
        return self.codec.classes_ if self.codec is not None else None

    @property
    def n_classes(self) -> int:
        return len(self.classes or ())

    def class_weights(self, spec: ExperimentSpec, rows: np.ndarray | slice) -> np.ndarray | None:
        """Each class code's weight when the model trains on `rows` of these targets (`train.class_weight`)."""
        if self.codec is None:
            return None
        return class_weights(spec.train.class_weight, self.codes[rows], self.codec.classes_)


@dataclass(frozen=True)
class Placement:
    """Where a Ray task trained: its node's id and the devices Keras' backend saw there."""

    node: str
    devices: tuple[str, ...]


@dataclass
class CVResult:
    """Scores of every fold."""

    metric: str
    higher_is_better: bool
    folds: list[FoldResult]
    stacked: bool
    seconds: float
    baseline: list[float] | None = None
    """Per fold, the score of the naive last-value forecast (series only)."""
    epochs_run: list[int] | None = None
    """Per fold, the epochs it trained, where early stopping may have ended it before `train.epochs`."""
    target_baselines: dict[str, list[float]] | None = None
    """Several target columns of a series: per fold, each column's naive last-value forecast's score."""
    placements: list[Placement] | None = None
    """Folds trained as Ray tasks: where each one trained; None where they trained in this process."""

    @property
    def scores(self) -> list[float]:
        return [fold.score for fold in self.folds]

    @property
    def target_scores(self) -> dict[str, list[float]] | None:
        """Several target columns or labels (`dataset.target: [a, b]`): per fold, the metric of each one's
        predictions alone (`FoldResult.target_scores`), keyed by its column; None for one target."""
        first = self.folds[0].target_scores
        if first is None:
            return None
        return {target: [fold.target_scores[target] for fold in self.folds] for target in first}

    @property
    def test_train_ratio(self) -> float:
        """Held-out rows per training row of the folds, on average: the variance correction's n_test / n_train
        (:func:`kerasflow.tasks.training.statistics.corrected_t`)."""
        return held_out_ratio([fold.n_test for fold in self.folds], [fold.n_train for fold in self.folds])

    @property
    def diverged(self) -> dict[int, int]:
        """The folds whose training diverged (loss NaN or infinite), each with the epoch it did, from 1."""
        return {i: fold.diverged_at for i, fold in enumerate(self.folds) if fold.diverged_at is not None}

    def summary(self) -> dict[str, Any]:
        """The scores, as `metrics.json` and `run.json` hold them (:mod:`kerasflow.tasks.outputs.metrics`). A
        diverged fold has no score (null), and the experiment no mean or std: a mean over the folds that did not
        diverge would flatter it."""
        diverged = self.diverged
        baselines = self.target_baselines or {}
        targets = {} if self.target_scores is None else {"targets": {
            target: {**self._fold_scores(scores, diverged), **self._baseline_summary(baselines.get(target))}
            for target, scores in self.target_scores.items()}}
        return {"metric": self.metric, **self._fold_scores(self.scores, diverged), "n_folds": len(self.folds),
                "test_train_ratio": self.test_train_ratio, "higher_is_better": self.higher_is_better,
                "stacked": self.stacked,
                "seconds": round(self.seconds, 2), **self._baseline_summary(self.baseline), **targets,
                **({"epochs_run": self.epochs_run} if self.epochs_run is not None else {}),
                **({"diverged": list(diverged), "diverged_at_epoch": list(diverged.values())} if diverged else {})}

    @staticmethod
    def _fold_scores(scores: Sequence[float], diverged: dict[int, int]) -> dict[str, Any]:
        """`mean`, `std` and `folds` of per-fold `scores`, none for the `diverged` folds."""
        values = np.asarray(scores, dtype=np.float64)
        folds = [None if i in diverged else float(s) for i, s in enumerate(values)]
        mean, std = (None, None) if diverged else (float(values.mean()), float(values.std()))
        return {"mean": mean, "std": std, "folds": folds}

    @staticmethod
    def _baseline_summary(baseline: list[float] | None) -> dict[str, Any]:
        """The naive forecast's per-fold scores and their mean, as `baseline`; nothing where there is none."""
        if baseline is None:
            return {}
        return {"baseline": {"mean": float(np.mean(baseline)), "folds": [float(s) for s in baseline]}}


def encode_labels(spec: ExperimentSpec, table: Table, name: str = "experiment", start: Start | None = None) -> Encoded:
    """Encode the target and check that the model's last layer fits it (and that a text column exists, and that
    the backend in use can train the model: :func:`check_backend`). A continued experiment (`start`) keeps its
    saved model's classes, and its data must fit the saved preprocessing (:func:`check_fits`)."""
    check_backend(spec, name)
    if spec.dataset.task == "next_token":
        return encode_tokens(spec, table, name)
    text = spec.preprocess.text
    if text is not None and str(text.column) not in table.X.columns:
        key = experiment_key(spec, name, "preprocess.text.column")
        raise DataError(f"{table.source}: {key} {text.column!r} not found. "
                        f"Columns found: {', '.join(map(str, table.X.columns))} (besides the target)")
    if start is not None:
        check_fits(start, spec, name, table)
    units = output_units(spec.model)
    if spec.dataset.task == "regression":  # one unit a target column and a forecast step
        expected = spec.preprocess.steps_out * len(table.targets)
        encoded = Encoded(table.y.to_numpy(dtype=np.float64), None)
    elif spec.dataset.task == "multilabel":  # one sigmoid unit a label: its 0/1 column as it is
        expected, encoded = len(table.targets), Encoded(table.y.to_numpy(dtype=np.float64), None)
    else:
        codec = start.codec if start is not None else LabelCodec().fit(table.y)
        check_class_weight(spec.train.class_weight, codec.classes_,
                           f"{table.source}: {experiment_key(spec, name, 'train.class_weight')}")
        encoded = Encoded(codec.transform(table.y), codec)
        expected = 1 if spec.dataset.task == "binary" else encoded.n_classes
    if units != expected:
        last = len(spec.model.layers) - 1
        # A flattened time-distributed Dense layer gives its units at each step: the model's width, not its units.
        widest = "the model's output" if any(isinstance(layer, TimeDistributedLayer) and
                                             isinstance(layer.layer, DenseLayer) for layer in spec.model.layers) \
            else "the last Dense layer"
        raise DataError(f"{experiment_key(spec, name, 'model.layers')}: "
                        f"{widest} must have {expected} unit(s) for "
                        f"task {spec.dataset.task!r} on {table.source} "
                        f"({_targets(spec, encoded)}). "
                        f"Received: {units} (layers[{last}])")
    return encoded


def _targets(spec: ExperimentSpec, encoded: Encoded) -> str:
    """What the model's outputs must stand for, in the message refusing its last layer."""
    if encoded.n_classes:
        return f"{encoded.n_classes} targets"
    steps, columns = spec.preprocess.steps_out, len(spec.dataset.targets)
    if spec.dataset.task == "multilabel":
        return f"{columns} labels: dataset.target"
    if columns > 1:
        return f"{columns} numeric targets: dataset.target" if steps == 1 else \
            f"{steps} steps of {columns} numeric targets: preprocess.steps_out x dataset.target"
    return "a numeric target" if steps == 1 else f"{steps} steps ahead: preprocess.steps_out"


def encode_tokens(spec: ExperimentSpec, table: Table, name: str = "experiment") -> Encoded:
    """A next_token experiment's tokens as ids of the vocabulary of its training part (the tokens its training
    windows read and predict), whose `num_words` ids the model's last layer must give a probability each."""
    tokens, settings = table.y.tolist(), spec.preprocess.tokens
    split = make_splits(spec.evaluate, np.zeros(len(tokens) - settings.window))[0]
    rows = fold_training_rows(spec, split, spec.dataset.file)[0]  # its validation windows are held out of it too
    vocabulary = TokenVocabulary(settings).fit(tokens[:settings.window + int(rows.max()) + 1])
    units = output_units(spec.model)
    if units != settings.num_words:
        raise DataError(f"{experiment_key(spec, name, 'model.layers')}: the last Dense layer must have "
                        f"{settings.num_words} units, one per token id (preprocess.tokens.num_words). Received: "
                        f"{units} (layers[{len(spec.model.layers) - 1}])")
    return Encoded(vocabulary.transform(tokens), _codec(vocabulary))


def _codec(vocabulary: TokenVocabulary) -> LabelCodec:
    """Token ids <-> tokens, as predictions.csv shows a class."""
    codec = LabelCodec()
    codec.classes_ = list(vocabulary.tokens_)
    return codec


def check_backend(spec: ExperimentSpec, name: str = "experiment") -> None:
    """Refuse a stateful LSTM on the JAX backend: Keras (3.15) leaves an RNN's state variables out of JAX's compiled
    steps, so the state is carried from no batch to the next, in `fit` or `predict`, and the model would train and
    forecast as a stateless one without a word."""
    if spec.model.stateful and keras.backend.backend() == "jax":
        i = next(i for i, layer in enumerate(spec.model.layers) if getattr(layer, "stateful", False))
        key = experiment_key(spec, name, f"model.layers[{i}].stateful")
        raise ParamsError(f"{key}: a stateful LSTM keeps no state between "
                          "batches on the JAX backend (Keras leaves an RNN's state out of JAX's steps). Train this "
                          "experiment on tensorflow: `backend: tensorflow` in params.yaml, or KERAS_BACKEND=tensorflow")


def supervised(spec: ExperimentSpec, table: Table, labels: Encoded) -> tuple[Table, Encoded]:
    """The rows the model learns from: the table itself, or a series' look-back windows."""
    preprocess = spec.preprocess
    if preprocess.lookback is None:
        return table, labels
    return window_table(table, preprocess), Encoded(window_targets(labels.codes, preprocess), None)


def fit_split(spec: ExperimentSpec, table: Table, labels: Encoded, split: Split,
              start: Start | None = None) -> tuple[FoldData, Preprocessor]:
    """Fit the preprocessing on the split's training rows only, and transform both sides with it; a continued
    experiment (`start`) reuses its saved preprocessing and target scale instead, and its models start from the
    saved weights.

    `table` and `labels` are the supervised rows (see :func:`supervised`).
    """
    rows, validation = fold_training_rows(spec, split, table.source, labels.codes[split.train_index])
    X_train, X_test = table.X.iloc[rows], table.X.iloc[split.test_index]
    preprocessor = start.preprocessor if start is not None else Preprocessor.from_spec(spec.preprocess).fit(X_train)
    y_train = encode_target(spec, labels.codes[rows], labels.n_classes)
    fold = FoldData(
        X_train=preprocessor.transform(X_train),
        y_train=y_train,
        X_test=preprocessor.transform(X_test),
        y_test=encode_target(spec, labels.codes[split.test_index], labels.n_classes),
        validation=None if validation is None else (
            preprocessor.transform(table.X.iloc[validation]),
            encode_target(spec, labels.codes[validation], labels.n_classes)),
        target_scale=start.target_scale if start is not None else fit_target_scale(spec.preprocess, y_train,
                                                                                    len(table.targets)),
        naive_test=naive_forecast(spec, X_test, table.targets),
        test_rows=X_test.index.to_numpy(),
        initial_weights=start.weights if start is not None else None,
        embedding=pretrained_embedding(spec, preprocessor) if start is None else None,
        class_weight=labels.class_weights(spec, rows),
    )
    return fold, preprocessor


def naive_forecast(spec: ExperimentSpec, X: pd.DataFrame, targets: Sequence[str]) -> np.ndarray | None:
    """A series' windows' naive forecast: each window's last value of each target, for every step it forecasts
    (`preprocess.steps_out`, step-major as :func:`~kerasflow.tasks.data.window.window_targets`), in the targets'
    units; None for rows that are no windows."""
    preprocess = spec.preprocess
    if preprocess.lookback is None:
        return None
    columns = named_columns(list(map(str, X.columns)), targets, preprocess.horizon)
    last = X[last_value_columns(preprocess, targets, columns)].to_numpy(dtype=np.float32)
    return np.tile(last, (1, preprocess.steps_out))


def pretrained_embedding(spec: ExperimentSpec, preprocessor: Preprocessor) -> np.ndarray | None:
    """The starting weights of the model's first layer where it is an embedding naming a word-vectors file: the
    file's vector for each word of `preprocessor`'s vocabulary, fitted on the rows it saw (zeros for the rest,
    tasks/data/word_vectors.py); None for any other model."""
    layer = spec.model.layers[0]
    if not isinstance(layer, EmbeddingLayer) or layer.weights is None:
        return None
    vocabulary = preprocessor.tokenizer_.vocabulary_
    vectors = read_word_vectors(layer.weights, layer.output_dim, layer.key("weights"))
    matrix, found = vectors.matrix(vocabulary, layer.input_dim or spec.model.num_words)
    if vocabulary and not found:  # frozen, the embedding would carry nothing of the text
        raise ParamsError(f"{layer.key('weights')}: {layer.weights} has none of the {len(vocabulary)} words of the "
                          f"text's vocabulary (the most frequent: {', '.join(vocabulary[:3])}): is it the right file, "
                          f"and are its words cased as preprocess.text.lowercase makes the text's?")
    return matrix


def prepare_folds(spec: ExperimentSpec, table: Table, labels: Encoded, start: Start | None = None) -> list[FoldData]:
    """Every split of the evaluation, each with preprocessing fitted inside the fold (or a continued experiment's
    saved one: `start`)."""
    if spec.dataset.task == "next_token":
        X, y = windows(labels.codes, spec.preprocess.tokens.window)
        split = make_splits(spec.evaluate, y)[0]
        rows, validation = fold_training_rows(spec, split, spec.dataset.file)
        return [FoldData(X_train=X[rows], y_train=y[rows], X_test=X[split.test_index], y_test=y[split.test_index],
                         validation=None if validation is None else (X[validation], y[validation]),
                         test_rows=split.test_index + spec.preprocess.tokens.window)]
    table, labels = supervised(spec, table, labels)
    splits = experiment_splits(spec, labels, table.source)
    folds = [fit_split(spec, table, labels, split, start)[0] for split in splits]
    check_reshaped_width(spec, folds[0].X_train.shape[1], table.source)
    return folds


def check_reshaped_width(spec: ExperimentSpec, n_features: int, source: object) -> None:
    """A model that starts by reshaping each row (to an image, a sequence) must be given that many values: refused
    before training, naming both sides, rather than as Keras' error in every fold (and each of its retries)."""
    first = spec.model.layers[0]
    if not isinstance(first, ReshapeLayer) or math.prod(first.target_shape) == n_features:
        return
    shape = " x ".join(map(str, first.target_shape))
    folder = folder_format(spec.dataset)
    if folder is not None and folder.kind == "images":
        height, width = folder.image_size
        given = (f"images of {height} x {width} x {folder.channels} ({spec.dataset.key('image_size')}, "
                 f"{spec.dataset.key('color_mode')}) are {n_features} values")
    else:
        given = f"rows of {n_features} feature values (as preprocessed)"
    raise DataError(f"{source}: {given}, and model.layers[0] reshapes {math.prod(first.target_shape)} ({shape}; "
                    f"{first.key('target_shape')}): make them equal")


def experiment_splits(spec: ExperimentSpec, labels: Encoded, source: object) -> list[Split]:
    """The evaluation's splits of the supervised rows (:func:`supervised`), a multi-step forecast's purged of the
    training windows whose later targets are held out (:func:`~kerasflow.tasks.data.split.purged`); refused where
    a forecast's steps reach past a held-out part or leave a fold nothing to train on."""
    preprocess = spec.preprocess
    splits = [training_windows(spec, split, source, f"fold {i}", "its held-out part",
                               "evaluate.n_splits, evaluate.test_size")
              for i, split in enumerate(make_splits(spec.evaluate, labels.codes, labels.classes))]
    horizon = preprocess.horizon
    if horizon > 1 and any(len(split.test_index) <= horizon for split in splits):
        held_out = min(len(split.test_index) for split in splits)
        raise DataError(f"{source}: {preprocess.key('horizon')}={horizon} steps reach past a held-out "
                        f"part of {held_out} rows: every forecast of it would start before it. Use a shorter horizon "
                        f"or a larger evaluate.test_size (or fewer evaluate.n_splits)")
    return splits


def training_windows(spec: ExperimentSpec, split: Split, source: object, trainer: str, held_out: str,
                     hold: str) -> Split:
    """`split` purged of the training windows whose later targets are held out
    (:func:`~kerasflow.tasks.data.split.purged`); refused where that leaves `trainer` (a fold, the refit) nothing
    to train on, naming the settings that `hold` out its `held_out` rows."""
    steps = spec.preprocess.steps_out
    split = purged(split, steps)
    if not len(split.train_index):
        raise DataError(f"{source}: {spec.preprocess.key('steps_out')}={steps} leaves {trainer} no training window "
                        f"whose targets all come before {held_out}: forecast fewer steps, or hold out less ({hold})")
    return split


def cross_validate(spec: ExperimentSpec, folds: list[FoldData], callbacks: Sequence[keras.callbacks.Callback] = (),
                   initial_epoch: int = 0) -> CVResult:
    """Train and score one model per fold: all at once when the model stacks, else one after another.

    `callbacks` see every model's epochs: the stacked model's (`val_f0_<metric>`...) or each fold model's in turn.
    """
    return cross_validate_configs([spec], folds, callbacks, initial_epoch)[0]


def cross_validate_configs(specs: Sequence[ExperimentSpec], folds: list[FoldData],
                           callbacks: Sequence[keras.callbacks.Callback] = (),
                           initial_epoch: int = 0) -> list[CVResult]:
    """:func:`cross_validate` for configs that share a stack key (a grid's group, see tasks/training/stacked.py):
    every config's folds train in one stacked program, config c's fold f in slot `c * len(folds) + f`.

    Configs that cannot stack are cross-validated one at a time, each timed on its own; stacked configs share
    one program, and each result's `seconds` is that program's.
    """
    start = time.perf_counter()
    if not uses_stacking(specs[0], len(specs) * len(folds)):
        return [_cross_validate_each(spec, folds, callbacks, initial_epoch) for spec in specs]
    per_config = fit_stacked(specs, folds, callbacks, initial_epoch)
    seconds = time.perf_counter() - start
    return [CVResult(metric=spec.metric, higher_is_better=spec.higher_is_better, stacked=True, seconds=seconds,
                     folds=results, baseline=_baseline(spec, folds), epochs_run=_epochs_run(spec, results),
                     target_baselines=_target_baselines(spec, folds))
            for spec, results in zip(specs, per_config)]


def _cross_validate_each(spec: ExperimentSpec, folds: list[FoldData], callbacks: Sequence[keras.callbacks.Callback],
                         initial_epoch: int) -> CVResult:
    start = time.perf_counter()
    results = [fit_fold(spec, fold, i, callbacks, initial_epoch) for i, fold in enumerate(folds)]
    return each_fold_result(spec, folds, results, time.perf_counter() - start)


def each_fold_result(spec: ExperimentSpec, folds: list[FoldData], results: list[FoldResult],
                     seconds: float, placements: list[Placement] | None = None) -> CVResult:
    """The result of folds trained one model each (here one after another, or as Ray tasks: `placements`)."""
    return CVResult(metric=spec.metric, higher_is_better=spec.higher_is_better, folds=results, stacked=False,
                    seconds=seconds, baseline=_baseline(spec, folds), epochs_run=_epochs_run(spec, results),
                    target_baselines=_target_baselines(spec, folds), placements=placements)


def folds_on_ray(spec: ExperimentSpec) -> bool:
    """Whether the folds may train as Ray tasks (`evaluate.parallel`): folds that stack into one program never do;
    the others with 'ray', and with 'auto' when `RAY_ADDRESS` names a cluster, if it has more than one node or a
    GPU (:func:`kerasflow.flows.ray_folds.spreads` asks it). On one machine they train one after another by
    default: each task imports Keras and builds its model anew, which two cores do not win back (BENCHMARKS.md)."""
    n_folds = spec.evaluate.n_folds
    if n_folds < 2 or uses_stacking(spec, n_folds):
        return False
    parallel = spec.evaluate.parallel
    return parallel == "ray" or (parallel == "auto" and bool(os.environ.get("RAY_ADDRESS")))


def _epochs_run(spec: ExperimentSpec, results: list[FoldResult]) -> list[int] | None:
    """Per fold, the epochs it trained, when early stopping may have ended it before `train.epochs`."""
    return None if spec.train.early_stopping is None else [len(fold.history.get("loss", [])) for fold in results]


def _baseline(spec: ExperimentSpec, folds: list[FoldData]) -> list[float] | None:
    """Per fold, the naive last-value forecast's score (series only)."""
    return None if folds[0].naive_test is None else [score(spec, fold.y_test, fold.naive_test) for fold in folds]


def _target_baselines(spec: ExperimentSpec, folds: list[FoldData]) -> dict[str, list[float]] | None:
    """Per fold, the naive forecast's score of each of a series' several target columns, keyed by the column; None
    for one target or rows that are no windows."""
    if folds[0].naive_test is None:
        return None
    naive = [column_scores(spec, fold.y_test, fold.naive_test) for fold in folds]
    return None if naive[0] is None else {target: [fold[target] for fold in naive] for target in naive[0]}


def uses_stacking(spec: ExperimentSpec, n_models: int) -> bool:
    """Whether `n_models` models of `spec` (its folds, or a stacked grid's configs x folds) train as one stacked
    program (see `tasks/training/stacked.py`)."""
    return spec.evaluate.stack_folds and spec.model.stackable and spec.train.stackable and n_models > 1


@dataclass
class FinalModel:
    """The model retrained on every row (but for `train.validation_split`'s last ones), with the preprocessing
    fitted on the rows it trained on."""

    model: keras.Model
    preprocessor: Preprocessor | TokenVocabulary
    codec: LabelCodec | None
    target_scale: TargetScale | None = None
    diverged_at: int | None = None
    """The epoch (from 1) at which the refit's loss became NaN or infinite: then the model is not kept."""
    epochs: int | None = None
    """The epochs the refit trained (fewer than `train.epochs` where early stopping ended it)."""
    kept_epoch: int | None = None
    """The epoch (from 1) whose weights the model is, where early stopping or `checkpoint: best` put its best epoch's
    back; None: its last epoch's."""
    seconds: float = 0.0
    """Wall seconds the refit took, preprocessing included."""
    placement: Placement | None = None
    """A refit trained as a Ray task: where it trained; None where it trained in this process."""


@dataclass(frozen=True)
class RefitData:
    """The refit's rows, preprocessed: those it trains on, its validation rows (`train.validation_split`), and the
    preprocessing, label codec and target scale fitted on the training part (a continued experiment's saved ones)."""

    X: np.ndarray
    y: np.ndarray
    validation: tuple[np.ndarray, np.ndarray] | None
    class_weight: np.ndarray | None
    preprocessor: Preprocessor | TokenVocabulary
    codec: LabelCodec | None
    target_scale: TargetScale | None


def refit_data(spec: ExperimentSpec, table: Table, labels: Encoded, start: Start | None = None) -> RefitData:
    """The refit's rows, split and preprocessed (:class:`RefitData`), or its refusal: what `kerasflow run` checks
    before it trains anything. Its validation rows, which pick its best epoch or stop it, are held out of the
    preprocessing as a fold's held-out rows are: the scaler, imputer and target scale, or a text's vocabulary, are
    fitted on the rows before them."""
    if spec.dataset.task == "next_token":
        tokens, window = table.y.tolist(), spec.preprocess.tokens.window
        rows, validation = refit_rows(spec, len(tokens) - window, table.source)
        # The tokens the training windows read and predict: every one without a validation split.
        vocabulary = TokenVocabulary(spec.preprocess.tokens).fit(
            tokens if validation is None else tokens[:int(validation[0]) + window])
        X, y = windows(vocabulary.transform(tokens), window)
        preprocessor, codec, target_scale = vocabulary, _codec(vocabulary), None
    else:
        table, labels = supervised(spec, table, labels)
        rows, validation = refit_rows(spec, len(table.X), table.source, labels.codes)
        preprocessor = start.preprocessor if start is not None else Preprocessor.from_spec(spec.preprocess).fit(
            table.X.iloc[rows])
        X = preprocessor.transform(table.X)
        y = encode_target(spec, labels.codes, labels.n_classes)
        codec = labels.codec
        target_scale = start.target_scale if start is not None else fit_target_scale(spec.preprocess, y[rows],
                                                                                     len(table.targets))
    return RefitData(X=X[rows], y=y[rows], validation=None if validation is None else (X[validation], y[validation]),
                     class_weight=labels.class_weights(spec, rows), preprocessor=preprocessor, codec=codec,
                     target_scale=target_scale)


def refit(spec: ExperimentSpec, table: Table, labels: Encoded,
          callbacks: Sequence[keras.callbacks.Callback] = (), start: Start | None = None) -> FinalModel:
    """Retrain on all rows (:func:`refit_data`): the model to keep once cross-validation has said how good it is.
    A continued experiment's (`start`) starts from the saved weights, with the saved preprocessing and target
    scale."""
    started = time.perf_counter()
    data = refit_data(spec, table, labels, start)
    model, trained = fit_model(spec, data.X, data.y, validation=data.validation, callbacks=callbacks,
                               target_scale=data.target_scale, keep_best=spec.train.checkpoint == "best",
                               initial_weights=start.weights if start is not None else None,
                               embedding=pretrained_embedding(spec, data.preprocessor) if start is None else None,
                               class_weight=data.class_weight)
    return FinalModel(model=model, preprocessor=data.preprocessor, codec=data.codec, target_scale=data.target_scale,
                      diverged_at=first_non_finite(trained.history.get("loss", [])),
                      epochs=len(trained.history.get("loss", [])),
                      kept_epoch=trained.kept_epoch,
                      seconds=time.perf_counter() - started)


def refit_rows(spec: ExperimentSpec, n_rows: int, source: object, classes: np.ndarray | None = None
               ) -> tuple[np.ndarray | slice, np.ndarray | None]:
    """The rows of `n_rows` the refit trains on, and its validation rows (`train.validation_split`; None without):
    :func:`validation_split` of them all."""
    if spec.train.validation_split is None:
        return slice(None), None
    return validation_split(spec, np.arange(n_rows), source, "the refit", classes)


def fold_training_rows(spec: ExperimentSpec, split: Split, source: object, classes: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray | None]:
    """The rows a fold trains on and, where its training follows validation scores (`train.validates`: early
    stopping, a rate on plateau), its validation rows: :func:`validation_split` of its own training rows, never its
    held-out ones, which it is scored on. `classes`: the training rows' class codes."""
    if not spec.train.validates:
        return split.train_index, None
    return validation_split(spec, split.train_index, source, "a fold", classes)


def validation_split(spec: ExperimentSpec, rows: np.ndarray, source: object, trainer: str,
                     classes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`rows` (a model's training rows, in file order) split in two, each in file order: the rows it trains on and,
    held out, `train.validation_split`'s share (the training part rounded down, as Keras' validation_split). Rows
    in time order (`evaluate.shuffle` false, a series, a text's tokens) hold out the last ones, as Keras' does; other
    rows a draw seeded by `evaluate.seed`, stratified by `classes` (the rows' class codes) where the evaluation is,
    so that a file sorted by class does not validate on one class. A multi-step forecast's last training windows
    whose later targets are validation rows are left out, as in its folds. `trainer` names the model in a refusal:
    the refit, a fold."""
    n_rows = len(rows)
    split = math.floor(n_rows * (1 - spec.train.validation_split))
    if not 0 < split < n_rows:
        raise DataError(f"{source}: {spec.train.key('validation_split')}={spec.train.validation_split} of "
                        f"{trainer}'s {n_rows} rows leaves {'no training' if split == 0 else 'no validation'} row; "
                        f"hold out a share that leaves rows on both sides")
    if spec.evaluate.shuffle and spec.dataset.task != "next_token":
        classified = spec.dataset.task in ("binary", "multiclass") and classes is not None
        strata = classes if spec.evaluate.stratify and classified else None
        if strata is not None:  # a class too small for both sides, or more classes than either side has rows
            counts = np.unique(strata, return_counts=True)[1]
            if counts.min() < 2 or len(counts) > min(split, n_rows - split):
                strata = None
        trained, held = train_test_split(rows, train_size=split, random_state=spec.evaluate.seed, stratify=strata)
        return np.sort(trained), np.sort(held)
    split = training_windows(spec, Split(rows[:split], rows[split:]), source, trainer, "its validation rows",
                             "train.validation_split")
    return split.train_index, split.test_index
