"""Training one Keras model and scoring it: the per-model path, and the pieces the stacked path shares."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from collections.abc import Callable, Sequence

import keras
import numpy as np
from keras import ops

from tasks.epochs import ONE_BATCH, HeldOut, RowScores, Trained, every_slot, fit_epochs, fixed_batch_size, plan_epochs
from tasks.models import TargetScale, build_model, make_optimizer
from tasks.spec import ExperimentSpec

CATEGORICAL_LOSSES = ("categorical_crossentropy", "categorical_focal_crossentropy")


@dataclass(frozen=True)
class FoldData:
    """One split, already preprocessed: float32 features, encoded targets (see :func:`encode_target`)."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    target_scale: TargetScale | None = None
    naive_test: np.ndarray | None = None
    """A series' last-value forecast of each held-out row, in the target's units: the baseline to beat."""
    test_rows: np.ndarray | None = None
    """Each held-out row's index in the data file (0-based data rows, header excluded): where a prediction
    came from, once folds have shuffled the rows."""


@dataclass
class FoldResult:
    """A fold's score on its held-out rows and its per-epoch history (`loss`, `val_loss`, metric, `val_`+metric)."""

    score: float
    history: dict[str, list[float]] = field(default_factory=dict)
    n_train: int = 0
    n_test: int = 0
    rows: np.ndarray | None = None
    """The held-out rows' indices in the data file (`FoldData.test_rows`), in `FoldData.X_test` order."""
    y_true: np.ndarray | None = None
    """The held-out rows' targets as class codes or values (see :func:`point_values`)."""
    y_pred: np.ndarray | None = None
    """The model's predictions for the same rows, in the same form as `y_true`."""


def encode_target(spec: ExperimentSpec, codes: np.ndarray, n_classes: int) -> np.ndarray:
    """The target as the loss expects it: (n, 1) floats, (n,) class codes, or (n, C) one-hot."""
    task = spec.dataset.task
    if task == "regression" or task == "binary":
        return codes.astype(np.float32).reshape(-1, 1)
    if spec.loss in CATEGORICAL_LOSSES:
        return np.eye(n_classes, dtype=np.float32)[codes]
    return codes.astype(np.int32)


def metric_fn(spec: ExperimentSpec) -> tuple[Callable, bool]:
    """The per-sample Keras function behind the primary metric, and whether to take the root of its mean."""
    metric = spec.metric
    if metric == "accuracy":
        if spec.dataset.task == "binary":
            return keras.metrics.binary_accuracy, False
        if spec.loss in CATEGORICAL_LOSSES:
            return keras.metrics.categorical_accuracy, False
        return keras.metrics.sparse_categorical_accuracy, False
    if metric == "mae":
        return keras.metrics.mean_absolute_error, False
    return keras.metrics.mean_squared_error, metric == "rmse"


def row_scores(spec: ExperimentSpec) -> RowScores:
    """What a model is scored by at each epoch, by log name: its loss and its primary metric, as per-row functions."""
    return {"loss": (keras.losses.get(spec.loss), False), spec.metric: metric_fn(spec)}


class SlotMean(keras.metrics.Metric):
    """Mean of a per-sample function over the rows that count; with `slots=k`, one mean per slot of a stacked
    output.

    A row counts when its sample weight is above 0: weights here only mark padding (0) and a partial batch's
    rows (scaled so the batch's loss is their mean, see `tasks/epochs.py`), and each real row counts once.
    Stacked targets, predictions and sample weights are slot-first, `(k, batch, ...)`; the per-sample function
    reduces the last axis, giving `(k, batch)` values. One metric object keeps all k totals in one vector, so the
    cost per step does not grow with k, and reports them as one vector, `f*_<name>`, which `fit_epochs` logs as
    `f0_<name>` ... `f{k-1}_<name>`.
    """

    def __init__(self, fn: Callable, slots: int | None = None, root: bool = False, name: str = "metric",
                 **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.fn, self.slots, self.root = fn, slots, root
        width = slots or 1
        self.total = self.add_variable(shape=(width,), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(width,), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.update_rows(self.fn(y_true, y_pred), sample_weight)

    def update_rows(self, values, sample_weight=None):
        """Add per-sample `values` already computed (the stacked model's per-row losses, `tasks/stacked.py`)."""
        width = self.slots or 1
        values = ops.reshape(ops.cast(values, "float32"), (width, -1))
        if sample_weight is None:
            counts = ops.ones_like(values, dtype="bool")
        else:
            counts = ops.reshape(ops.greater(sample_weight, 0), (width, -1))
        # `where`, not a product with the 0/1 mask: a padding row's value may be inf, and inf * 0 is nan.
        self.total.assign_add(ops.sum(ops.where(counts, values, 0.0), axis=1))
        self.count.assign_add(ops.sum(ops.cast(counts, "float32"), axis=1))

    def result(self):
        mean = ops.divide_no_nan(self.total, self.count)
        mean = ops.sqrt(mean) if self.root else mean
        # Stacked: one vector, not k scalars, so a compiled step has one output per metric (see `EVERY_SLOT`).
        return mean[0] if self.slots is None else {every_slot(self.name): mean}


def point_values(task: str, y: np.ndarray) -> np.ndarray:
    """Encoded targets or model outputs of a `task` as one value per row: the class code, or the value.

    Examples
    --------
    >>> point_values("multiclass", np.array([[0.1, 0.7, 0.2], [0.8, 0.1, 0.1]])).tolist()
    [1, 0]
    >>> point_values("binary", np.array([[0.3], [0.9]])).tolist()
    [0, 1]
    """
    if task == "regression":
        return y.reshape(-1).astype(np.float64)
    if task == "binary":
        return (y.reshape(-1) > 0.5).astype(np.int64)
    return (y.argmax(axis=-1) if y.ndim == 2 else y).astype(np.int64)


def score(spec: ExperimentSpec, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The primary metric of predictions `y_pred` against encoded targets `y_true`, computed in NumPy."""
    metric = spec.metric
    if metric == "accuracy":
        task = spec.dataset.task
        return float(np.mean(point_values(task, y_pred) == point_values(task, y_true)))
    error = y_pred.reshape(-1) - y_true.reshape(-1)
    if metric == "mae":
        return float(np.mean(np.abs(error)))
    mse = float(np.mean(error**2))
    return math.sqrt(mse) if metric == "rmse" else mse


def steps_per_execution(n_rows: int, batch_size: int) -> int:
    """Run a whole epoch per compiled call: for small models the per-call overhead, not the maths, is the cost.

    Keras' PyTorch backend runs one step per call only (it refuses more).
    """
    if keras.backend.backend() == "torch":
        return 1
    return max(1, math.ceil(n_rows / batch_size))


def one_batch(n_rows: int) -> int:
    """A batch holding all rows (capped): scoring small data in one step, not many tiny ones."""
    return max(1, min(n_rows, ONE_BATCH))


def fit_model(spec: ExperimentSpec, X: np.ndarray, y: np.ndarray,
              validation: tuple[np.ndarray, np.ndarray] | None = None,
              callbacks: Sequence[keras.callbacks.Callback] = (), initial_epoch: int = 0,
              target_scale: TargetScale | None = None) -> tuple[keras.Model, Trained]:
    """Build, compile and train one model on `X`, `y`; return it, its per-epoch history and its last predictions
    for the `validation` rows (:class:`~tasks.epochs.Trained`).

    Each epoch deals the rows in a new order drawn from the spec's seed (`tasks/epochs.py`). `callbacks` and
    `initial_epoch` let a sweep trial report each epoch and resume from a checkpoint. A stateful model sees the
    rows in time order, its state reset at the start of every epoch.
    """
    model = build_model(spec.model, X.shape[1], spec.train.seed, target_scale)
    scores = row_scores(spec)
    # Weighted: Keras hands sample weights (here, the epochs' padding) to `weighted_metrics` only. The loss is
    # Keras' own; the other scores are metrics, logged under the names `HeldOutScores` gives them.
    model.compile(optimizer=make_optimizer(spec.train), loss=spec.loss,
                  weighted_metrics=[SlotMean(fn, root=root, name=name) for name, (fn, root) in scores.items()
                                    if name != "loss"],
                  steps_per_execution=steps_per_execution(len(X), spec.train.batch_size))
    stateful = spec.model.stateful
    if stateful:
        callbacks = [ResetStatesEachEpoch(), *callbacks]
    plan = plan_epochs([len(X)], [spec.train.seed], spec.train.epochs, spec.train.batch_size, shuffle=not stateful)
    held_out = None if validation is None else HeldOut(*validation, scores=scores)
    trained = fit_epochs(model, X, y, plan, slotted=False, held_out=held_out, callbacks=callbacks,
                         initial_epoch=initial_epoch)
    return model, trained


class ResetStatesEachEpoch(keras.callbacks.Callback):
    """Start every epoch from a zero state, as each pass over the series starts at its beginning."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        reset_states(self.model)


def reset_states(model: keras.Model) -> None:
    for layer in model.layers:
        if getattr(layer, "stateful", False):
            layer.reset_state()


def predict(model: keras.Model, X: np.ndarray) -> np.ndarray:
    """Predictions as a NumPy array, in one batch for the small data this project trains on."""
    batch = fixed_batch_size(model)
    if batch:
        # A stateful model takes its rows in order, `batch` at a time. `Model.predict` with the compiled
        # steps_per_execution retraces on such input (about 70 s for 300 rows); batch by batch takes 0.3 s.
        return np.concatenate([np.asarray(model.predict_on_batch(X[i:i + batch])) for i in range(0, len(X), batch)])
    return np.asarray(model.predict(X, batch_size=one_batch(len(X)), verbose=0))


def predict_held_out(model: keras.Model, fold: FoldData) -> np.ndarray:
    """The fold's held-out predictions; a stateful model first reads the training rows, so the held-out rows
    continue the state they follow in time."""
    if fixed_batch_size(model):
        reset_states(model)
        predict(model, fold.X_train)
    return predict(model, fold.X_test)


def fit_fold(spec: ExperimentSpec, fold: FoldData, index: int, callbacks: Sequence[keras.callbacks.Callback] = (),
             initial_epoch: int = 0) -> FoldResult:
    """Train on one fold's training rows, score on its held-out rows."""
    seeded = spec.model_copy(update={"train": spec.train.model_copy(update={"seed": spec.train.seed + index})})
    model, trained = fit_model(seeded, fold.X_train, fold.y_train, validation=(fold.X_test, fold.y_test),
                               callbacks=callbacks, initial_epoch=initial_epoch, target_scale=fold.target_scale)
    outputs = predict_held_out(model, fold) if trained.predictions is None else trained.predictions
    result = FoldResult(score=score(spec, fold.y_test, outputs), history=trained.history,
                        n_train=len(fold.X_train), n_test=len(fold.X_test))
    return with_predictions(spec, result, fold, outputs)


def with_predictions(spec: ExperimentSpec, result: FoldResult, fold: FoldData, outputs: np.ndarray) -> FoldResult:
    """`result` keeping the fold's held-out rows, their targets and the model's `outputs` for them, as
    :func:`point_values`: what a confusion matrix or residual plot is drawn from."""
    task = spec.dataset.task
    return replace(result, rows=fold.test_rows, y_true=point_values(task, fold.y_test),
                   y_pred=point_values(task, outputs))
