"""Every epoch's batches, dealt by kerasflow rather than by Keras' input pipeline, and the held-out rows scored
at each epoch's end.

Why not ``model.fit(X, y, shuffle=True, validation_data=...)``:

- With a global seed set, Keras' TensorFlow pipeline deals the rows in the same order every epoch: its shuffle
  op is re-created with the same seed each time an epoch starts (tensorflow/tensorflow#35682). Its JAX pipeline
  reshuffles from NumPy's global state. Here each epoch's order is a fresh permutation drawn from the model's
  seed, the same on every backend, and a run resumed at epoch e deals epochs e, e+1, ... exactly as the
  uninterrupted run did.
- On TensorFlow, Keras builds a ``tf.data`` iterator twice per epoch for training and twice more for validation,
  which costs more than the 50-odd steps of a small model's epoch. Here the
  epochs are laid out one after another in one array (in chunks of at most `LAYOUT_BYTES`), so one ``fit`` call
  streams a whole chunk of epochs through one iterator, and held-out rows are scored from one compiled prediction
  a chunk of rows (:class:`HeldOutScores`).

Each epoch is padded to whole batches with zero-weight rows, so no batch straddles two epochs. The real rows
of a partial last batch weigh ``batch_size / rows``: Keras divides a batch's weighted loss sum by the batch size,
so that batch's loss (and gradient) is the mean over its real rows, as an unpadded partial batch's is. (Keras'
running training ``loss`` of the epoch counts that batch as a full one, and a stacked slot's loss is kept alike;
kerasflow's own metrics count rows.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np

from kerasflow.tasks.training.epoch_plan import EpochPlan, slot_first
from kerasflow.tasks.training.feed import Layout, in_batches
from kerasflow.tasks.training.scoring import ONE_BATCH, HeldOut, HeldOutScores, SlotLogs, penalises_activity

LAYOUT_BYTES = 16 * 2**20
"""The most bytes of laid-out epochs handed to one ``fit`` call (one epoch at least); longer trainings are fed in
several. Small, as memory first written costs page faults: the reused layout buffer (:class:`Layout`) is faulted
in once per training; larger chunks measured slower (`bench/layout.py`)."""


class AcrossFits:
    """A mixin for a Keras callback that tracks something over a whole training (a best score, epochs without
    improvement): fed in several `fit` calls (:func:`fit_epochs`), the callback resets it at the first call's start
    only, not at each call's. List it before the Keras callback class it is mixed into."""

    started = False

    def on_train_begin(self, logs: dict | None = None) -> None:
        if not self.started:
            super().on_train_begin(logs)
            self.started = True


def fixed_batch_size(model: keras.Model) -> int | None:
    """The batch size a stateful model was built for, else None."""
    return model.inputs[0].shape[0] if model.inputs else None


@dataclass(frozen=True)
class Trained:
    """What :func:`fit_epochs` gives back: the per-epoch history, and the held-out rows' predictions as the last
    epoch's end scored them: the trained model's, as nothing changes weights after that (no callback of kerasflow,
    and no optimizer of its with a moving average to swap in). None when there were no held-out rows, no epoch was
    trained, or Keras' own `validation_data` scored the rows; then ask the model."""

    history: dict[str, list[float]]
    predictions: np.ndarray | None = None
    kept_epoch: int | None = None
    """The epoch (from 1) whose weights the model ends with where early stopping or `checkpoint: best` put its best
    epoch's back (set by `fit_model`); None: its last epoch's."""


def fit_epochs(model: keras.Model, X: np.ndarray, y: np.ndarray, plan: EpochPlan, *, slotted: bool,
               held_out: HeldOut | None = None, callbacks: Sequence[keras.callbacks.Callback] = (),
               initial_epoch: int = 0) -> Trained:
    """Train a compiled `model` on the batches `plan` deals from the tables `X`, `y`; return the per-epoch history
    and the held-out rows' last predictions (:class:`Trained`).

    With `slotted`, the tables are slot-first, ``(slots, rows, ...)``, and each step hands the model a
    ``(slots, batch, ...)`` block (:func:`slot_first`); otherwise they are one model's ``(rows, ...)``. Slotted,
    `callbacks` see each slot's scores as ``f<j>_<name>`` and ``val_f<j>_<name>`` (:class:`SlotLogs`). `held_out`
    is scored at each epoch's end: by :class:`HeldOutScores` when the model is stacked or the rows fit one batch,
    else (more rows, a stateful model, which takes them in order a fixed number at a time, or a model whose loss
    adds a penalty on its layers' outputs, :func:`~kerasflow.tasks.training.scoring.penalises_activity`) by Keras' own
    `validation_data`, whose iterator Keras keeps for the whole `fit` call; its scores come from the compiled loss
    and metrics, which must log the names `held_out.scores` gives. Training starts at epoch `initial_epoch` of the
    plan; a run resumed at its last epoch trains nothing, though its callbacks still see the training begin and end.

    A training longer than `LAYOUT_BYTES` is fed in several `fit` calls, and `callbacks` see
    ``on_train_begin``/``on_train_end`` once per call: they must not reset what they track there (:class:`AcrossFits`).
    """
    n_slots = plan.index.shape[-1]
    rows = X.shape[1] if slotted else len(X)
    epoch_bytes = plan.index.shape[1] * ((X.nbytes + y.nbytes) // rows + 4 * n_slots)
    per_fit = max(1, min(LAYOUT_BYTES // epoch_bytes, plan.epochs - initial_epoch))
    X_laid, y_laid = (Layout(table, per_fit * plan.index.shape[1], n_slots if slotted else None, plan.batch_size)
                      for table in (X, y))
    fixed_batch = fixed_batch_size(model)
    scored_here = held_out is not None and fixed_batch is None and (
        slotted or (len(held_out.X) <= ONE_BATCH and not penalises_activity(model)))
    scoring = [HeldOutScores(held_out, n_slots if slotted else None)] if scored_here else []
    callbacks = [*scoring, *([SlotLogs()] if slotted else []), *callbacks]
    validation = None if scored_here or held_out is None else held_out.validation_data
    history: dict[str, list[float]] = {}
    for start in range(initial_epoch, plan.epochs, per_fit) or [initial_epoch]:
        stop = max(start, min(start + per_fit, plan.epochs))
        # A finished run trains no epoch; Keras is handed the last one anyway, as it refuses empty data.
        dealt = slice(start, stop) if stop > start else slice(-1, None)
        index = plan.index[dealt].reshape(-1, n_slots)
        weight = plan.weight[dealt].reshape(-1, n_slots)
        # Slotted, each of Keras' samples is one slot's rows of a batch, and a batch of Keras' is every slot's.
        weight, batch = (slot_first(weight, plan.batch_size), n_slots) if slotted else (weight[:, 0], plan.batch_size)
        fitted = model.fit(**in_batches(X_laid.take(index), y_laid.take(index), weight, batch), epochs=stop,
                           initial_epoch=start, steps_per_epoch=plan.steps, shuffle=False, callbacks=callbacks,
                           verbose=0, validation_data=validation, validation_batch_size=fixed_batch or ONE_BATCH)
        for key, values in fitted.history.items():
            history.setdefault(key, []).extend(float(v) for v in values)
        if model.stop_training:
            break
    return Trained(history, scoring[0].predictions if scoring else None)
