"""Training one Keras model and scoring it: the per-model path, and the pieces the stacked path shares."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import keras
import numpy as np

from kerasflow.tasks.config.schema import ExperimentSpec, TrainSpec, monitor_mode
from kerasflow.tasks.training.class_weights import class_codes
from kerasflow.tasks.training.epoch_plan import plan_epochs
from kerasflow.tasks.training.fit import AcrossFits, Trained, fit_epochs, fixed_batch_size
from kerasflow.tasks.training.hinge import class_scale, parted_at_zero
from kerasflow.tasks.training.models import (
    TargetScale,
    build_model,
    fit_image_statistics,
    make_loss,
    make_optimizer,
    schedule_callbacks,
    set_model_weights,
)
from kerasflow.tasks.training.scoring import (
    CATEGORICAL_LOSSES,
    ONE_BATCH,
    HeldOut,
    SlotMean,
    column_scores,
    first_non_finite,
    point_values,
    row_scores,
    score,
)


@dataclass(frozen=True)
class FoldData:
    """One split, already preprocessed: float32 features, encoded targets (see :func:`encode_target`)."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    validation: tuple[np.ndarray, np.ndarray] | None = None
    """Where early stopping or reduce_on_plateau follows a `val_` score (`TrainSpec.validates`):
    `train.validation_split`'s share of the fold's training rows, held out of `X_train` and scored each epoch in place
    of the held-out rows, which are scored once the training is over."""
    target_scale: TargetScale | None = None
    naive_test: np.ndarray | None = None
    """A series' last-value forecast of each held-out row, in the target's units: the baseline to beat."""
    test_rows: np.ndarray | None = None
    """Each held-out row's index in the data file (0-based data rows, header excluded): where a prediction
    came from, once folds have shuffled the rows."""
    initial_weights: list[np.ndarray] | None = None
    """The weights the fold's model starts from (a continued experiment's saved model's); None: fresh ones."""
    embedding: np.ndarray | None = None
    """The first layer's starting weights where it is an embedding naming a word-vectors file: the file's vectors
    for the fold's vocabulary (see :func:`kerasflow.tasks.training.evaluate.pretrained_embedding`)."""
    class_weight: np.ndarray | None = None
    """Each class code's weight in the loss of the fold's training rows (`train.class_weight`,
    :func:`kerasflow.tasks.training.class_weights.class_weights`); None: every row weighs 1."""

    @property
    def n_train(self) -> int:
        """The rows the fold's training was given: those it trains on and its validation split's."""
        return len(self.X_train) + (0 if self.validation is None else len(self.validation[0]))


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
    target_scores: dict[str, float] | None = None
    """Several target columns or labels: the metric of each one's held-out predictions alone, keyed by its column
    (:func:`~kerasflow.tasks.training.scoring.column_scores`)."""

    @property
    def diverged_at(self) -> int | None:
        """The first epoch (from 1) whose training loss was NaN or infinite, or the last epoch when only the
        held-out score is not finite; None for a fold whose training stayed finite."""
        losses = self.history.get("loss", [])
        first = first_non_finite(losses)
        if first is None and not math.isfinite(self.score):
            return max(1, len(losses))
        return first


def encode_target(spec: ExperimentSpec, codes: np.ndarray, n_classes: int) -> np.ndarray:
    """The target as the loss expects it: (n, 1) floats ((n, k) for a forecast of k steps, k target columns or a
    multilabel task's k labels; (n, k x targets) for k steps of several), (n,) class codes, or (n, C) one-hot."""
    task = spec.dataset.task
    if task in ("regression", "binary", "multilabel"):
        return codes.astype(np.float32).reshape(len(codes), -1)
    if spec.loss in CATEGORICAL_LOSSES:
        return np.eye(n_classes, dtype=np.float32)[codes]
    return codes.astype(np.int32)


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
              target_scale: TargetScale | None = None, keep_best: bool = False,
              initial_weights: list[np.ndarray] | None = None,
              embedding: np.ndarray | None = None,
              class_weight: np.ndarray | None = None) -> tuple[keras.Model, Trained]:
    """Build, compile and train one model on `X`, `y`; return it, its per-epoch history and its last predictions
    for the `validation` rows (:class:`~kerasflow.tasks.training.fit.Trained`). With `keep_best` (the refit of
    `checkpoint: best`), the model ends with its best epoch's weights by the `validation` rows.

    Each epoch deals the rows in a new order drawn from the spec's seed (`tasks/training/fit.py`). `callbacks` and
    `initial_epoch` let a sweep trial report each epoch and resume from a checkpoint. A stateful model sees the
    rows in time order, its state reset at the start of every epoch. With `initial_weights` (a continued
    experiment's) the model starts from them instead of its seeded initial weights; with `embedding`, its first
    layer, an embedding, starts from those pretrained word vectors. With `class_weight` (a weight per class code),
    each training row's loss weighs its class's weight, given to Keras as sample weights. An image experiment's
    featurewise statistics are fitted on `X`, the training rows (:func:`fit_image_statistics`).
    """
    model = build_model(spec.model, X.shape[1], spec.train.seed, target_scale)
    augment = spec.model.augment
    if embedding is not None:
        model.layers[0].set_weights([embedding])
    if initial_weights is not None:
        set_model_weights(model, initial_weights)  # a continued experiment keeps its saved image statistics too
    elif augment is not None and augment.featurewise:
        fit_image_statistics(model, augment, X.reshape((len(X), *spec.model.layers[0].target_shape)))
    scores = row_scores(spec, target_scale)
    # Weighted: Keras hands sample weights (here, the epochs' padding and class weights) to `weighted_metrics`
    # only, which count the rows whose weight is above 0 (`SlotMean`). The loss is Keras' own (in scaled units with
    # `target_scale`: `make_loss`); the other scores are metrics, logged under the names `HeldOutScores` gives them.
    stateful = spec.model.stateful
    plan = plan_epochs([len(X)], [spec.train.seed], spec.train.epochs, spec.train.batch_size, shuffle=not stateful,
                       row_weights=None if class_weight is None else [class_weight[class_codes(y)]])
    model.compile(optimizer=make_optimizer(spec.train, plan.steps), loss=make_loss(spec, target_scale),
                  weighted_metrics=[SlotMean(fn, finish=finish, name=name, outputs=model.output_shape[-1])
                                    for name, (fn, finish) in scores.items() if name != "loss"],
                  steps_per_execution=steps_per_execution(len(X), spec.train.batch_size))
    # The learning rate's callbacks first: the epoch's logs hold its rate by the time the caller's see them.
    stopper = EarlyStoppingAcrossFits.from_spec(spec.train, keep_best)
    callbacks = [*schedule_callbacks(spec.train), *callbacks, *([stopper] if stopper else []), StopWhenDiverged()]
    if stateful:
        callbacks = [ResetStatesEachEpoch(), *callbacks]
    held_out = None if validation is None else HeldOut(*validation, scores=scores)
    trained = fit_epochs(model, X, y, plan, slotted=False, held_out=held_out, callbacks=callbacks,
                         initial_epoch=initial_epoch)
    if stopper is not None and stopper.restore():  # the last epoch's predictions are not the restored model's
        trained = replace(trained, predictions=None, kept_epoch=stopper.best_epoch + 1)
    return model, trained


class EarlyStoppingAcrossFits(AcrossFits, keras.callbacks.EarlyStopping):
    """Keras' EarlyStopping for a training fed in several `fit` calls (`fit_epochs`): its state is reset at the first
    call's start only, and the best weights restored by :meth:`restore` once the training is over, not at each
    call's end."""

    @classmethod
    def from_spec(cls, spec: TrainSpec, keep_best: bool = False) -> "EarlyStoppingAcrossFits | None":
        """`spec`'s early stopping; with `keep_best`, one that also (or only: it never stops then) puts the best
        epoch's weights back, by `spec.best_monitor`."""
        stopping = spec.early_stopping
        if stopping is None and not keep_best:
            return None
        if stopping is None:
            return cls(monitor=spec.best_monitor, mode=monitor_mode(spec.best_monitor), patience=spec.epochs,
                       restore_best_weights=True)
        return cls(monitor=stopping.monitor, mode=monitor_mode(stopping.monitor), patience=stopping.patience,
                   min_delta=stopping.min_delta, restore_best_weights=stopping.restore_best_weights or keep_best,
                   start_from_epoch=stopping.start_from_epoch)

    def on_train_end(self, logs: dict | None = None) -> None:
        pass

    def restore(self) -> bool:
        """Put the best epoch's weights back, as Keras' callback does at the end of training; whether it did."""
        restored = self.restore_best_weights and self.best_weights is not None
        super().on_train_end()
        return restored


class StopWhenDiverged(keras.callbacks.Callback):
    """Stop training once the loss is NaN or infinite: it stays so, and the epoch it happened in is recorded in the
    history (Keras' TerminateOnNaN, without its message on stdout)."""

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True


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
        # steps_per_execution retraces on such input, which costs far more than predicting batch by batch.
        return np.concatenate([np.asarray(model.predict_on_batch(X[i:i + batch])) for i in range(0, len(X), batch)])
    return np.asarray(model.predict(X, batch_size=one_batch(len(X)), verbose=0))


def predict_held_out(model: keras.Model, fold: FoldData) -> np.ndarray:
    """The fold's held-out predictions; a stateful model first reads the training rows (and the validation rows
    after them), so the held-out rows continue the state they follow in time."""
    if fixed_batch_size(model):
        reset_states(model)
        predict(model, fold.X_train)
        if fold.validation is not None:
            predict(model, fold.validation[0])
    return predict(model, fold.X_test)


def fit_fold(spec: ExperimentSpec, fold: FoldData, index: int, callbacks: Sequence[keras.callbacks.Callback] = (),
             initial_epoch: int = 0) -> FoldResult:
    """Train on one fold's training rows, score on its held-out rows."""
    return train_fold(spec, fold, index, callbacks, initial_epoch)[1]


def train_fold(spec: ExperimentSpec, fold: FoldData, index: int, callbacks: Sequence[keras.callbacks.Callback] = (),
               initial_epoch: int = 0) -> tuple[keras.Model, FoldResult]:
    """:func:`fit_fold`, with the trained model."""
    seeded = spec.model_copy(update={"train": spec.train.model_copy(update={"seed": spec.train.seed + index})})
    model, trained = fit_model(seeded, fold.X_train, fold.y_train, validation=fold.validation or (fold.X_test,
                                                                                                  fold.y_test),
                               callbacks=callbacks, initial_epoch=initial_epoch, target_scale=fold.target_scale,
                               initial_weights=fold.initial_weights, embedding=fold.embedding,
                               class_weight=fold.class_weight)
    # The last epoch's predictions are the held-out rows' unless a validation split was scored in their place.
    held_out = trained.predictions if fold.validation is None else None
    outputs = predict_held_out(model, fold) if held_out is None else held_out
    result = FoldResult(score=score(spec, fold.y_test, outputs), history=trained.history,
                        n_train=fold.n_train, n_test=len(fold.X_test))
    return model, with_predictions(spec, result, fold, outputs)


def with_predictions(spec: ExperimentSpec, result: FoldResult, fold: FoldData, outputs: np.ndarray) -> FoldResult:
    """`result` keeping the fold's held-out rows, their targets and the model's `outputs` for them, as
    :func:`point_values`: what a confusion matrix or residual plot is drawn from; and each target column's score,
    of the outputs themselves (a label's curve needs its probabilities)."""
    task = spec.dataset.task
    return replace(result, rows=fold.test_rows, y_true=point_values(task, fold.y_test),
                   y_pred=point_values(task, class_scale(outputs, parted_at_zero(spec))),
                   target_scores=column_scores(spec, fold.y_test, outputs))
