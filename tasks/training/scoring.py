"""Scoring: the primary metric, per-row loss and metric functions, and held-out rows scored at each epoch's end."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import keras
import numpy as np
from keras import ops

from kerasflow.tasks.config.schema import SEVERAL_TARGETS, ExperimentSpec
from kerasflow.tasks.training.hinge import class_scale, parted_at_zero

CATEGORICAL_LOSSES = ("categorical_crossentropy", "categorical_focal_crossentropy")

ONE_BATCH = 4096
"""The most held-out rows of a model scored in one step (a stacked model's: of each slot)."""


EVERY_SLOT = "f*_"
"""Marks a log entry that holds one value per slot of a stacked model, as a vector: ``val_f*_loss`` stands for
``val_f0_loss``, ``val_f1_loss``... A compiled step returns one such vector per metric, not k scalars: on JAX each
output of a step costs a dispatch. :class:`SlotLogs` expands them before any other callback reads the epoch's
logs."""


def every_slot(name: str) -> str:
    """The log name of `name`'s per-slot vector (see `EVERY_SLOT`)."""
    return EVERY_SLOT + name


def expand_slots(logs: dict) -> None:
    """Replace, in place, each `EVERY_SLOT` entry of `logs` by one float per slot.

    Examples
    --------
    >>> logs = {"loss": 0.5, "val_f*_accuracy": np.array([0.25, 1.0])}
    >>> expand_slots(logs)
    >>> logs
    {'loss': 0.5, 'val_f0_accuracy': 0.25, 'val_f1_accuracy': 1.0}
    """
    for key in [key for key in logs if EVERY_SLOT in key]:
        values = np.asarray(logs.pop(key)).reshape(-1)
        logs.update({key.replace(EVERY_SLOT, f"f{j}_"): float(value) for j, value in enumerate(values)})


class SlotLogs(keras.callbacks.Callback):
    """Expands the per-slot vectors of each epoch's logs, and of the training's last, into ``f<j>_<name>``
    entries (:func:`expand_slots`): what History, the sweep's reports and any later callback read. (Per-batch logs
    keep the vectors: nothing reads them, and expanding them would cost every batch.)"""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            expand_slots(logs)

    def on_train_end(self, logs: dict | None = None) -> None:
        if logs is not None:
            expand_slots(logs)


Finish = Literal["sqrt", "exp", "ratio", "macro", "roc_auc", "pr_auc"] | None
"""What the logged value is of the per-row values: their mean (None), its root (RMSE) or its exponential
(perplexity, of the mean cross-entropy); or, for a score that is no mean, a function of each slot's tally of its rows'
values (:func:`tallied`): ``ratio``, a (numerator, denominator) pair a row whose sums' ratio is the score (precision,
recall, F1; 0 where the denominators sum to 0, as Keras' metrics give), ``macro``, such pairs for each class and
whether the row is of the class or predicted as it (the mean of the ratios of the classes found among the rows'
classes or predictions, as scikit-learn's ``average="macro"``), or ``roc_auc`` and ``pr_auc``, a row's place among
the curve's thresholds and its class (:func:`curve_rows`)."""

CURVE_THRESHOLDS = 200
"""Keras' AUC's default `num_thresholds`: the ROC and precision-recall curves are drawn through this many points."""

TALLIED = ("ratio", "macro", "roc_auc", "pr_auc")
"""The finishes computed from a tally of the rows' values (:func:`tallied`)."""

CURVES = ("roc_auc", "pr_auc")


def row_width(finish: Finish, outputs: int = 1) -> int:
    """How many values a tallied score's function gives a row of a model of `outputs` outputs a row: a ratio's pair;
    a macro score's pair and found flag for each class (one output, of a binary task, stands for two); a curve's
    place and class for each output.

    Examples
    --------
    >>> row_width("ratio"), row_width("macro", 3), row_width("macro", 1), row_width("pr_auc", 3)
    (2, 9, 6, 6)
    """
    if finish in CURVES:  # one curve an output: a binary task's, or each class's against the others
        return 2 * outputs
    return 3 * max(outputs, 2) if finish == "macro" else 2


def tally_width(finish: Finish, outputs: int = 1) -> int:
    """The length of a slot's tally (:func:`tallied`): the sums of the rows' values (:func:`row_width`), or for each
    curve its positive and negative rows' counts at each place among its thresholds.

    Examples
    --------
    >>> tally_width("ratio"), tally_width("macro", 3), tally_width("pr_auc", 1)
    (2, 9, 402)
    """
    width = row_width(finish, outputs)
    return width * (CURVE_THRESHOLDS + 1) if finish in CURVES else width


def of_mean(mean, finish: Finish, xp=np):
    """The logged value from the rows' mean, in NumPy or (`xp` = ``keras.ops``) in the compiled step."""
    return getattr(xp, finish)(mean) if finish in ("sqrt", "exp") else mean


def tallied(values, counts, finish: Finish, xp=np):
    """Each slot's tally of the per-row `values` (``(slots, rows, width)``) of the rows `counts` marks, ``(slots,
    tally_width)``: a ratio's (or each class's) sums, or for each curve (one an output) the count of positive and of
    negative rows at each place among its thresholds. In NumPy, or (`xp` = ``keras.ops``) in the compiled step.

    Examples
    --------
    >>> pairs = np.array([[[1.0, 1.0], [0.0, 1.0], [9.0, 9.0]]])  # the third row pads
    >>> tallied(pairs, np.array([[True, True, False]]), "ratio").tolist()
    [[1.0, 2.0]]
    """
    if finish not in CURVES:  # `where`, not a product: a padding row's value may be inf (inf * 0 is nan)
        return xp.sum(xp.where(counts[..., None], values, 0.0), axis=1)
    curves = values.shape[-1] // 2
    places, actual = values[..., :curves], values[..., curves:]  # (slots, rows, curves) each
    positive, negative = (xp.where(counts[..., None], weight, 0.0) for weight in (actual, 1.0 - actual))
    width, slots = CURVE_THRESHOLDS + 1, places.shape[0]
    # One count a place, summed by each row's index among (slot, curve, place): not a one-hot vector of places a
    # row, which for many classes and rows would take gigabytes in the compiled step.
    index = xp.reshape(xp.cast(places, "int32") if xp is not np else places.astype(np.int64), (slots, -1, curves)) \
        + width * (xp.arange(curves) + curves * xp.reshape(xp.arange(slots), (slots, 1, 1)))
    index, size = xp.reshape(index, (-1,)), slots * curves * width
    if xp is np:
        counted = [np.bincount(index, weights=weight.reshape(-1), minlength=size) for weight in (positive, negative)]
    else:
        counted = [ops.segment_sum(ops.reshape(weight, (-1,)), index, num_segments=size)
                   for weight in (positive, negative)]
    # Each curve's positives' counts, then its negatives'.
    return xp.reshape(xp.stack([xp.reshape(count, (slots, curves, width)) for count in counted], axis=2),
                      (slots, -1))


def of_sums(tally, finish: Finish, xp=np):
    """The logged value from each slot's tally (:func:`tallied`), in NumPy or (`xp` = ``keras.ops``) in the
    compiled step: a ratio; the mean ratio of the classes found among the rows' classes and predictions; or the area
    under the ROC or the precision-recall curve as Keras' AUC interpolates it between its thresholds' points
    (trapezoids for the ROC; for precision-recall, precision varying as its true and predicted positives do linearly
    between two points, Davis and Goadrich's interpolation), of a binary task's one curve or the mean of each class's
    against the others (Keras' AUC with ``multi_label=True``).

    Examples
    --------
    >>> of_sums(np.array([[3.0, 4.0], [0.0, 0.0]]), "ratio").tolist()
    [0.75, 0.0]
    >>> of_sums(np.array([[1.0, 0.0, 0.0, 2.0, 0.0, 0.0, 2.0, 0.0, 1.0]]), "macro").tolist()  # class 1 absent
    [0.25]
    """
    def divide(a, b):
        return xp.divide_no_nan(a, b) if xp is not np else np.divide(a, b, out=np.zeros(np.broadcast(a, b).shape),
                                                                      where=b != 0)

    if finish == "ratio":
        return divide(tally[:, 0], tally[:, 1])
    if finish == "macro":
        classes = tally.shape[1] // 3
        ratios = divide(tally[:, :classes], tally[:, classes:2 * classes])
        found = xp.where(tally[:, 2 * classes:] > 0, 1.0, 0.0)
        return divide(xp.sum(ratios * found, axis=1), xp.sum(found, axis=1))
    width = CURVE_THRESHOLDS + 1
    curves = tally.shape[1] // (2 * width)
    tally = xp.reshape(tally, (-1, 2 * width))  # a row a slot's curve

    def above(counts):  # rows at a place above threshold t: those at places t + 1 and beyond
        return xp.flip(xp.cumsum(xp.flip(counts, axis=1), axis=1), axis=1)

    positives, negatives = above(tally[:, :width]), above(tally[:, width:])
    true_positives, false_positives = positives[:, 1:], negatives[:, 1:]  # at each threshold
    if finish == "roc_auc":
        true_rate = divide(true_positives, positives[:, :1])
        false_rate = divide(false_positives, negatives[:, :1])
        heights = (true_rate[:, :-1] + true_rate[:, 1:]) / 2.0
        areas = xp.sum((false_rate[:, :-1] - false_rate[:, 1:]) * heights, axis=1)
    else:  # Keras' AUC(curve="PR"), `interpolate_pr_auc`: its terms, over the same thresholds
        gained = true_positives[:, :-1] - true_positives[:, 1:]
        predicted = true_positives + false_positives
        slope = divide(gained, xp.maximum(predicted[:, :-1] - predicted[:, 1:], 0.0))
        intercept = true_positives[:, 1:] - slope * predicted[:, 1:]
        both = xp.logical_and(predicted[:, :-1] > 0, predicted[:, 1:] > 0)
        ratio = xp.where(both, divide(predicted[:, :-1], xp.maximum(predicted[:, 1:], 0.0)), 1.0)
        areas = xp.sum(divide(slope * (gained + intercept * xp.log(ratio)), positives[:, :1]), axis=1)
    return xp.mean(xp.reshape(areas, (-1, curves)), axis=1)


def binary_hits(y_true, y_pred) -> tuple:
    """Each row's true and predicted class (0/1 floats, a prediction above 0.5 being 1) of a binary task, or each
    label's of a multilabel task, shaped as the predictions: what precision, recall and F1 count."""
    actual = ops.cast(ops.reshape(y_true, ops.shape(y_pred)) > 0.5, "float32")
    return actual, ops.cast(y_pred > 0.5, "float32")


def label_accuracy_rows(y_true, y_pred):
    """Per row: the share of its labels predicted right (above 0.5 where the label applies), Keras'
    `binary_accuracy` of each label averaged: over the rows, Keras' BinaryAccuracy of a multilabel task."""
    return ops.mean(keras.metrics.binary_accuracy(y_true, y_pred), axis=-1)


def ratio_rows(numerator, denominator):
    """A row's (numerator, denominator) pair, each summed over the row's labels (one of a binary task): the counts
    of every label of every row, as Keras' Precision, Recall and F1Score(average="micro") take a multilabel task's."""
    return ops.concatenate([ops.sum(numerator, axis=-1, keepdims=True), ops.sum(denominator, axis=-1, keepdims=True)],
                           axis=-1)


def precision_rows(y_true, y_pred):
    """Per row: (true positives, predicted positives); their sums' ratio is Keras' Precision."""
    actual, predicted = binary_hits(y_true, y_pred)
    return ratio_rows(actual * predicted, predicted)


def recall_rows(y_true, y_pred):
    """Per row: (true positives, actual positives); their sums' ratio is Keras' Recall."""
    actual, predicted = binary_hits(y_true, y_pred)
    return ratio_rows(actual * predicted, actual)


def f1_rows(y_true, y_pred):
    """Per row: (twice the true positives, the actual plus the predicted positives); their sums' ratio is F1,
    2 TP / (2 TP + FP + FN), as Keras' F1Score gives it at threshold 0.5 (a multilabel task's micro-averaged)."""
    actual, predicted = binary_hits(y_true, y_pred)
    return ratio_rows(2.0 * actual * predicted, actual + predicted)


def curve_rows(y_true, y_pred):
    """Per row and output: its place among the curves' thresholds (Keras' AUC's: -epsilon, 1/199, 2/199, ...,
    1 + epsilon), that is how many its prediction, clipped to [0, 1], is above, found as Keras finds it for evenly
    spaced thresholds (``ceil(p * 199)``, at least 1; a NaN is above none), then whether the row is of the class
    (:func:`class_hits`; of a binary task, of the positive class): tallied (:func:`tallied`), the points of the ROC
    and precision-recall curves Keras' AUC draws, one curve an output."""
    actual = binary_hits(y_true, y_pred)[0] if y_pred.shape[-1] == 1 else class_hits(y_true, y_pred)[0]
    return curve_place_rows(actual, y_pred)


def label_curve_rows(y_true, y_pred):
    """:func:`curve_rows` of a multilabel task: one curve a label, whether the label applies to the row."""
    return curve_place_rows(binary_hits(y_true, y_pred)[0], y_pred)


def curve_place_rows(actual, y_pred):
    """Each output's place among the curves' thresholds (:func:`curve_rows`), then `actual`."""
    clipped = ops.clip(ops.cast(y_pred, "float32"), 0.0, 1.0)
    places = ops.maximum(ops.ceil(clipped * (CURVE_THRESHOLDS - 1)), 1.0)
    return ops.concatenate([ops.where(ops.isnan(clipped), 0.0, places), actual], axis=-1)


def class_hits(y_true, y_pred) -> tuple:
    """Each row's true and predicted class as one-hot rows of the classes (a binary task's one output stands for
    two): the predicted class is the most probable (above 0.5, of a binary task); targets are class codes, or
    one-hot rows (a categorical loss's)."""
    if y_pred.shape[-1] == 1:
        actual, predicted = binary_hits(y_true, y_pred)
        return ops.concatenate([1.0 - actual, actual], axis=-1), ops.concatenate([1.0 - predicted, predicted], axis=-1)
    classes = y_pred.shape[-1]
    if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == classes:  # one-hot targets
        codes = ops.argmax(y_true, axis=-1)
    else:
        codes = ops.reshape(ops.cast(y_true, "int32"), ops.shape(y_pred)[:-1])
    return ops.one_hot(codes, classes), ops.one_hot(ops.argmax(y_pred, axis=-1), classes)


def macro_rows(y_true, y_pred, tally: Callable[[object, object], tuple]):
    """Per row and class: `tally`'s (numerator, denominator) of (actual, predicted) one-hot rows, and whether the
    row is of the class or predicted as it (:func:`class_hits`), as three blocks of one value a class."""
    actual, predicted = class_hits(y_true, y_pred)
    return ops.concatenate([*tally(actual, predicted), ops.maximum(actual, predicted)], axis=-1)


MACRO_TALLIES: dict[str, Callable[[object, object], tuple]] = {
    "precision_macro": lambda actual, predicted: (actual * predicted, predicted),
    "recall_macro": lambda actual, predicted: (actual * predicted, actual),
    "f1_macro": lambda actual, predicted: (2.0 * actual * predicted, actual + predicted)}
"""A macro score's (numerator, denominator) of each class's (or label's) actual and predicted 0/1 values: (true
positives, predicted positives), (true positives, actual positives), (twice the true positives, the actual plus the
predicted positives)."""


def precision_macro_rows(y_true, y_pred):
    """Per class: (a true positive, a predicted positive), and whether the row is of the class or predicted as it:
    scikit-learn's macro precision."""
    return macro_rows(y_true, y_pred, MACRO_TALLIES["precision_macro"])


def recall_macro_rows(y_true, y_pred):
    """Per class: (a true positive, an actual positive), and whether the row is of the class or predicted as it:
    scikit-learn's macro recall."""
    return macro_rows(y_true, y_pred, MACRO_TALLIES["recall_macro"])


def f1_macro_rows(y_true, y_pred):
    """Per class: (twice a true positive, an actual plus a predicted positive), and whether the row is of the class
    or predicted as it: scikit-learn's macro F1."""
    return macro_rows(y_true, y_pred, MACRO_TALLIES["f1_macro"])


def label_macro_rows(y_true, y_pred, tally: Callable[[object, object], tuple]):
    """:func:`macro_rows` of a multilabel task: per label, `tally`'s pair of whether it applies and whether it is
    predicted to, and 1: every label counts in the mean, as scikit-learn's macro average of label columns takes
    them all (one with no actual or predicted positive scores 0, its `zero_division`)."""
    actual, predicted = binary_hits(y_true, y_pred)
    return ops.concatenate([*tally(actual, predicted), ops.ones_like(actual)], axis=-1)


TALLIED_METRICS: dict[str, tuple[Callable, Finish]] = {
    "precision": (precision_rows, "ratio"), "recall": (recall_rows, "ratio"), "f1": (f1_rows, "ratio"),
    "auc": (curve_rows, "roc_auc"), "pr_auc": (curve_rows, "pr_auc"),
    "precision_macro": (precision_macro_rows, "macro"), "recall_macro": (recall_macro_rows, "macro"),
    "f1_macro": (f1_macro_rows, "macro")}
"""The scores that are no mean of per-row values, by name: each row's values and their finish."""

RowScores = Mapping[str, tuple[Callable, Finish]]
"""Per-row functions of (targets, predictions) by log name (``loss``, ``accuracy``...), each with what the logged
value is of the rows' values (:data:`Finish`)."""


@dataclass(frozen=True)
class HeldOut:
    """Rows a model is scored on at each epoch's end, and the functions it is scored by.

    For a stacked model the tables are slot-first, ``(slots, rows, ...)``, and `weight` is 0 where a slot's rows
    are padding (see `tasks/training/stacked.py`).
    """

    X: np.ndarray
    y: np.ndarray
    scores: RowScores
    weight: np.ndarray | None = None

    @property
    def validation_data(self) -> tuple[np.ndarray, ...]:
        """The rows as Keras' ``validation_data``."""
        return (self.X, self.y) if self.weight is None else (self.X, self.y, self.weight)


def slot_scores(values: np.ndarray, weight: np.ndarray | None, slots: int, finish: Finish = None) -> np.ndarray:
    """Each slot's score from per-row `values` over its rows with weight above 0 (:func:`of_mean`, or
    :func:`of_sums` of a tally of the rows' values, given on their last axis): one value per slot.

    Examples
    --------
    >>> slot_scores(np.array([[1.0, 3.0], [5.0, np.inf]]), np.array([[1.0, 1.0], [1.0, 0.0]]), slots=2).tolist()
    [2.0, 5.0]
    """
    tally = finish in TALLIED
    values = np.asarray(values, dtype=np.float64)
    values = values.reshape((slots, -1, values.shape[-1]) if tally else (slots, -1))
    counts = np.ones(values.shape[:2], dtype=bool) if weight is None else np.asarray(weight).reshape(slots, -1) > 0
    if tally:
        return of_sums(tallied(values, counts, finish), finish)
    # `where`, not a product: a padding row's value may be inf (inf * 0 is nan).
    return of_mean(np.where(counts, values, 0.0).sum(axis=1) / np.maximum(counts.sum(axis=1), 1), finish)


class RowScorer(keras.Model):
    """Held-out rows scored in one compiled prediction: called on ``(X, y)``, it returns each of `functions` of
    (targets, `scored`'s predictions), one value per row (and slot), then the predictions themselves. It shares
    `scored`'s weights."""

    def __init__(self, scored: keras.Model, functions: Sequence[Callable]) -> None:
        super().__init__()
        self.scored, self.functions = scored, tuple(functions)
        # No weights of its own: built already. Keras would otherwise build it by an eager call, which on JAX
        # compiles each op of the model and the functions one by one.
        self.built = True

    def call(self, inputs: tuple) -> list:
        """Each function's per-row values for held-out rows ``X`` with targets ``y``, and the predictions.

        The loss function's values are the rows' alone: :class:`HeldOutScores` adds the model's weight penalties to
        their mean, as Keras' own ``val_loss`` does.

        Each function reduces the predictions' last axis, so its values are shaped as the predictions less that
        axis, and a tallied score's values (:data:`TALLIED`) as the predictions with a last axis of their own (2, or
        3 a class): reshaped so, with a last axis of its own, as Keras' functions squeeze a known axis of 1 (on JAX, a
        stacked model's chunk of one row per slot came back as one value per slot).
        """
        X, y = inputs
        predictions = self.scored(X, training=False)
        rows = (*keras.ops.shape(predictions)[:-1], -1)
        return [*(keras.ops.reshape(keras.ops.cast(fn(y, predictions), "float32"), rows) for fn in self.functions),
                predictions]


def weight_penalties(model: keras.Model, slots: int | None) -> np.ndarray:
    """The penalties of `model`'s weights (`kernel_regularizer` and the like), as Keras adds them to a model's loss:
    one value, or for a model of `slots` stacked models one a slot (its ``slot_penalties``). An activity penalty,
    which depends on the rows, is not among them (:func:`penalises_activity`)."""
    if slots is not None:
        return np.broadcast_to(np.asarray(ops.convert_to_numpy(model.slot_penalties()), dtype=np.float64), (slots,))
    return np.array([sum(float(ops.convert_to_numpy(weight.regularizer(weight))) for weight in model.trainable_weights
                         if weight.regularizer is not None)])


def penalises_activity(layer: keras.Layer) -> bool:
    """Whether `layer`, or a layer within it (a model's layers, a wrapper's layer), adds a penalty on its outputs
    (`activity_regularizer`). Keras adds it to the loss of the rows it scores, each batch's over its rows: a model
    with one is scored by Keras' own `validation_data` (:func:`~kerasflow.tasks.training.fit.fit_epochs`), not by
    :class:`HeldOutScores`, which adds the weights' penalties alone.

    Examples
    --------
    >>> penalised = keras.layers.Dense(2, activity_regularizer="l2")
    >>> penalises_activity(keras.Sequential([keras.layers.Bidirectional(keras.layers.LSTM(2)), penalised]))
    True
    >>> penalises_activity(keras.layers.Bidirectional(keras.layers.LSTM(2)))
    False
    """
    within = [*getattr(layer, "layers", ()), *(getattr(layer, name, None) for name in ("layer", "forward_layer",
                                                                                         "backward_layer"))]
    return layer.activity_regularizer is not None or any(penalises_activity(inner) for inner in within
                                                         if isinstance(inner, keras.Layer))


def by_chunks_of_rows(call: Callable, tables: Sequence[np.ndarray]) -> list[np.ndarray]:
    """`call`'s outputs for slot-first `tables`, called on at most `ONE_BATCH` rows of every slot at a time (a stacked
    model takes no fewer slots than it has), each output joined back along the rows.

    Examples
    --------
    >>> table = np.arange(2 * ONE_BATCH + 2).reshape(2, -1)  # 2 slots of ONE_BATCH + 1 rows: 2 chunks
    >>> calls = []
    >>> (joined,) = by_chunks_of_rows(lambda chunk: calls.append(chunk[0].shape) or chunk[0] * 10, [table])
    >>> calls == [(2, ONE_BATCH), (2, 1)] and bool((joined == table * 10).all())
    True
    """
    scored = [keras.tree.flatten(call([table[:, start:start + ONE_BATCH] for table in tables]))
              for start in range(0, tables[0].shape[1], ONE_BATCH)]
    return [np.concatenate(parts, axis=1) for parts in zip(*scored)]


class HeldOutScores(keras.callbacks.Callback):
    """Score held-out rows at each epoch's end, one compiled call per chunk of rows, and add the scores to the
    epoch's logs as ``val_<name>``, or for `slots` stacked models as one vector ``val_f*_<name>`` (expanded by
    :class:`SlotLogs`). List it before any callback that reads them.

    One model's rows must fit one chunk (`ONE_BATCH` rows); a stacked model's chunks hold at most `ONE_BATCH` rows
    of every slot, as the stacked model takes no fewer slots than it has.

    Why not ``test_on_batch``: it resets and reads the compiled metrics eagerly each time, on JAX syncs the whole
    training state, and compiles a test step of its own. Here a :class:`RowScorer` gives every row's loss and
    metric in one prediction a chunk, and the means per slot are taken in NumPy.

    The last epoch's predictions are kept (`predictions`): the trained model's held-out predictions, with no
    prediction program of its own to compile: one compile less a model.
    """

    def __init__(self, held_out: HeldOut, slots: int | None = None) -> None:
        super().__init__()
        self.held_out, self.slots = held_out, slots
        self.scorer: RowScorer | None = None
        self.predictions: np.ndarray | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None:
            return
        held_out = self.held_out
        if self.scorer is None:
            self.scorer = RowScorer(self.model, [fn for fn, _ in held_out.scores.values()])
        tables = [held_out.X, held_out.y]
        if self.slots is None:
            *rows, self.predictions = self.scorer.predict_on_batch(tables)
        else:
            *rows, self.predictions = by_chunks_of_rows(self.scorer.predict_on_batch, tables)
        for (name, (_, finish)), values in zip(held_out.scores.items(), rows):
            means = slot_scores(values, held_out.weight, self.slots or 1, finish)
            if name == "loss":  # the loss as Keras' `validation_data` gives it, for more rows: with the penalties
                means = means + weight_penalties(self.model, self.slots)
            if self.slots is None:
                logs[f"val_{name}"] = float(means[0])
            else:
                logs[f"val_{every_slot(name)}"] = means


def _on_class_scale(fn: Callable, y_true, y_pred):
    return fn(y_true, class_scale(y_pred, at_zero=True))


def metric_fn(spec: ExperimentSpec) -> tuple[Callable, Finish]:
    """The per-sample function behind the primary metric, and what the metric is of its values (:data:`Finish`):
    of a model whose classes part at 0, of its outputs on the 0-to-1 scale (:func:`class_scale`)."""
    fn, finish = _metric_fn(spec)
    return (functools.partial(_on_class_scale, fn) if parted_at_zero(spec) else fn), finish


def _metric_fn(spec: ExperimentSpec) -> tuple[Callable, Finish]:
    metric = spec.metric
    if metric == "accuracy":
        if spec.dataset.task == "binary":
            return keras.metrics.binary_accuracy, None
        if spec.dataset.task == "multilabel":
            return label_accuracy_rows, None
        if spec.loss in CATEGORICAL_LOSSES:
            return keras.metrics.categorical_accuracy, None
        return keras.metrics.sparse_categorical_accuracy, None
    if metric in TALLIED_METRICS:
        fn, finish = TALLIED_METRICS[metric]
        if spec.dataset.task == "multilabel":  # its curves and macro means are its labels', not its classes'
            if finish in CURVES:
                return label_curve_rows, finish
            if finish == "macro":
                return functools.partial(label_macro_rows, tally=MACRO_TALLIES[metric]), finish
        return fn, finish
    if metric == "perplexity":
        return keras.losses.sparse_categorical_crossentropy, "exp"
    if metric == "mae":
        return keras.metrics.mean_absolute_error, None
    if metric == "mape":
        return keras.metrics.mean_absolute_percentage_error, None
    return keras.metrics.mean_squared_error, "sqrt" if metric == "rmse" else None


def row_loss(spec: ExperimentSpec, target_scale: tuple | None = None) -> Callable:
    """The loss as a per-row function of (targets, predictions), with its arguments (`train.loss: {name: ...,
    label_smoothing: 0.1}`): Keras' loss function behind the loss class :func:`~kerasflow.tasks.training.models.
    make_loss` compiles.

    With `target_scale`, the `(scale, offset)` of the model's fixed rescaling (`preprocess.scale_target`; arrays
    that broadcast over the outputs, a stacked model's shaped `(slots, 1, outputs)`), the loss is taken in scaled
    units, of `(y - offset) / scale` on both sides: what the layers before the rescaling learn, each target column
    weighing as its scaled values do, not as its range in the data does."""
    function = keras.losses.get(spec.loss)
    loss = functools.partial(function, **spec.loss_arguments) if spec.loss_arguments else function
    if target_scale is None:
        return loss
    scale, offset = (np.asarray(values, dtype="float32") for values in target_scale)
    return functools.partial(_in_scaled_units, loss, scale, offset)


def _in_scaled_units(loss: Callable, scale: np.ndarray, offset: np.ndarray, y_true, y_pred):
    return loss(ops.divide(ops.subtract(y_true, offset), scale), ops.divide(ops.subtract(y_pred, offset), scale))


def row_scores(spec: ExperimentSpec, target_scale: tuple | None = None) -> RowScores:
    """What a model is scored by at each epoch, by log name: its loss (with `target_scale`, in scaled units:
    :func:`row_loss`) and its primary metric (in the data's units), as per-row functions."""
    return {"loss": (row_loss(spec, target_scale), None), spec.metric: metric_fn(spec)}


class SlotMean(keras.metrics.Metric):
    """Mean of a per-sample function over the rows that count (or a score of their tally, :data:`Finish`); with
    `slots=k`, one per slot of a stacked output.

    A row counts when its sample weight is above 0: weights here mark padding (0), a partial batch's rows (scaled
    so the batch's loss is their mean, see `tasks/training/fit.py`) and class weights, and each real row counts
    once. A tallied score's function gives each row a pair (a ``macro`` score's: a pair and whether the row is of
    the class or predicted as it, for each class of a model of `outputs` outputs a row; a curve's: a place and a
    class for each output), and its finish is of their tally (:data:`Finish`).
    Stacked targets, predictions and sample weights are slot-first, `(k, batch, ...)`; the per-sample function
    reduces the last axis, giving `(k, batch)` values. One metric object keeps all k totals in one vector, so the
    cost per step does not grow with k, and reports them as one vector, `f*_<name>`, which `fit_epochs` logs as
    `f0_<name>` ... `f{k-1}_<name>`.

    With `by_step`, the mean is of each step's mean over its rows that count, over the steps where any does: how
    Keras keeps a model's running ``loss`` (a partial batch's mean weighs as much as a whole batch's).
    """

    def __init__(self, fn: Callable, slots: int | None = None, finish: Finish = None, name: str = "metric",
                 outputs: int | None = None, by_step: bool = False, **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.fn, self.slots, self.finish, self.by_step = fn, slots, finish, by_step
        width = slots or 1
        if finish in TALLIED:  # each slot's tally of the rows' values
            if finish != "ratio" and outputs is None:
                raise ValueError(f"a {finish} score's tally needs `outputs`, the model's outputs a row")
            self.row_width = row_width(finish, outputs or 1)
            self.total = self.add_variable(shape=(width, tally_width(finish, outputs or 1)), initializer="zeros",
                                           name="total")
        else:
            self.total = self.add_variable(shape=(width,), initializer="zeros", name="total")
            self.count = self.add_variable(shape=(width,), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.update_rows(self.fn(y_true, y_pred), sample_weight)

    def update_rows(self, values, sample_weight=None):
        """Add per-sample `values` already computed (the stacked model's per-row losses)."""
        width = self.slots or 1
        tally = self.finish in TALLIED
        values = ops.reshape(ops.cast(values, "float32"), (width, -1, self.row_width) if tally else (width, -1))
        if sample_weight is None:
            counts = ops.ones_like(values[..., 0] if tally else values, dtype="bool")
        else:
            counts = ops.reshape(ops.greater(sample_weight, 0), (width, -1))
        if tally:
            self.total.assign_add(tallied(values, counts, self.finish, ops))
            return
        # `where`, not a product with the 0/1 mask: a padding row's value may be inf, and inf * 0 is nan
        sums, counted = ops.sum(ops.where(counts, values, 0.0), axis=1), ops.sum(ops.cast(counts, "float32"), axis=1)
        if self.by_step:  # the step's mean over its rows that count, one step more where any does
            sums, counted = ops.divide_no_nan(sums, counted), ops.cast(ops.greater(counted, 0), "float32")
        self.total.assign_add(sums)
        self.count.assign_add(counted)

    def result(self):
        if self.finish in TALLIED:
            mean = of_sums(self.total, self.finish, ops)
        else:
            mean = of_mean(ops.divide_no_nan(self.total, self.count), self.finish, ops)
        # Stacked: one vector, not k scalars, so a compiled step has one output per metric (see `EVERY_SLOT`).
        return mean[0] if self.slots is None else {every_slot(self.name): mean}


def first_non_finite(values: Sequence[float]) -> int | None:
    """The 1-based position of the first NaN or infinite value in `values`, or None when all are finite.

    Examples
    --------
    >>> first_non_finite([0.5, 0.4, float("nan"), 0.3]), first_non_finite([0.5, 0.4])
    (3, None)
    """
    bad = np.flatnonzero(~np.isfinite(np.asarray(values, dtype=np.float64)))
    return int(bad[0]) + 1 if bad.size else None


def point_values(task: str, y: np.ndarray) -> np.ndarray:
    """Encoded targets or model outputs of a `task` as one value per row: the class code, or the value (a
    forecast of k steps, or of several targets: k values a row, step-major; a multilabel task's: whether each label
    applies).

    Examples
    --------
    >>> point_values("multiclass", np.array([[0.1, 0.7, 0.2], [0.8, 0.1, 0.1]])).tolist()
    [1, 0]
    >>> point_values("binary", np.array([[0.3], [0.9]])).tolist()
    [0, 1]
    """
    if task == "regression":  # a forecast of k steps: k values a row
        values = y.reshape(len(y), -1).astype(np.float64)
        return values[:, 0] if values.shape[1] == 1 else values
    if task == "binary":
        return (y.reshape(-1) > 0.5).astype(np.int64)
    if task == "multilabel":  # whether each label applies: k values a row
        return (y > 0.5).astype(np.int64)
    return (y.argmax(axis=-1) if y.ndim == 2 else y).astype(np.int64)


def column_scores(spec: ExperimentSpec, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float] | None:
    """The metric (:func:`score`) of each target column's or label's predictions alone (a forecast's at all its
    steps), keyed by its column, where a regression or a multilabel task has several; None otherwise."""
    names = spec.dataset.target_names
    if spec.dataset.task not in SEVERAL_TARGETS or len(names) < 2:
        return None
    # A multi-step forecast's outputs are step-major: target j's are every len(names)-th from j.
    return {name: score(spec, y_true[:, j::len(names)], y_pred[:, j::len(names)]) for j, name in enumerate(names)}


def score(spec: ExperimentSpec, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The primary metric of predictions `y_pred` against encoded targets `y_true`, computed in NumPy."""
    metric = spec.metric
    if metric == "accuracy":
        task = spec.dataset.task
        return float(np.mean(point_values(task, class_scale(y_pred, parted_at_zero(spec)))
                             == point_values(task, y_true)))
    if metric in TALLIED_METRICS:  # the per-row pairs the epochs' scores tally, tallied over every row
        fn, finish = metric_fn(spec)
        pairs = ops.convert_to_numpy(fn(y_true.astype("float32"), y_pred.astype("float32")))
        return float(slot_scores(pairs, None, 1, finish)[0])
    if metric == "perplexity":  # exp of the mean cross-entropy of the true tokens' probabilities
        probabilities = y_pred[np.arange(len(y_pred)), y_true.reshape(-1).astype(np.int64)]
        return float(np.exp(-np.mean(np.log(np.clip(probabilities, 1e-12, 1.0)))))
    error = y_pred.reshape(-1) - y_true.reshape(-1)
    if metric == "mae":
        return float(np.mean(np.abs(error)))
    if metric == "mape":  # Keras' mean_absolute_percentage_error: a target of 0 divides by its epsilon
        return float(100.0 * np.mean(np.abs(error) / np.maximum(np.abs(y_true.reshape(-1)), keras.config.epsilon())))
    mse = float(np.mean(error**2))
    return math.sqrt(mse) if metric == "rmse" else mse
