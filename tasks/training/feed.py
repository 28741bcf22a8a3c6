"""The input feed: laid-out epochs handed to ``fit`` in whole batches."""

from __future__ import annotations

import keras
import numpy as np

from kerasflow.tasks.training.epoch_plan import slot_first


class Layout:
    """A reused buffer that a table's rows are laid out in, one chunk of epochs after another: one model's rows in
    the order dealt, a stacked model's slot-first (:func:`slot_first`).

    Why reused: memory first written costs page faults, and for a large table more than the copy itself; a buffer
    of `LAYOUT_BYTES` (or one epoch, if larger) is faulted in once per training. It is rewritten only between
    ``fit`` calls, each of which has trained on all it was handed by the time it returns.
    """

    def __init__(self, table: np.ndarray, places: int, slots: int | None, batch_size: int) -> None:
        self.slots, self.batch_size = slots, batch_size
        # Slotted, slot j's row r is row j * rows + r of the flattened table: one `take` lays out every slot.
        self.table = table if slots is None else table.reshape((-1,) + table.shape[2:])
        self.rows = len(table) if slots is None else table.shape[1]
        self.buffer = np.empty((places * (slots or 1),) + self.table.shape[1:], table.dtype)

    def take(self, index: np.ndarray) -> np.ndarray:
        """The rows at `index` (shaped ``(places, slots)``), laid out in the buffer's first rows: shaped
        ``(places, ...)`` for one model, ``(batches * slots, batch_size, ...)`` for a stacked one."""
        if self.slots is None:
            flat = index[:, 0]
        else:
            flat = slot_first(index + np.arange(self.slots) * self.rows, self.batch_size)
        out = self.buffer[:flat.size].reshape(flat.shape + self.table.shape[1:])
        # mode="clip" writes straight into `out` (the default checks bounds through a temporary copy); every index
        # comes from the plan, within the table.
        return np.take(self.table, flat, axis=0, out=out, mode="clip")


def as_arrays(X: np.ndarray, y: np.ndarray, weight: np.ndarray, batch_size: int) -> dict:
    """The arguments that hand ``fit`` the arrays themselves, for Keras to batch with its own pipeline: how the
    backends other than TensorFlow are fed (:func:`in_batches`)."""
    return {"x": X, "y": y, "sample_weight": weight, "batch_size": batch_size}


def in_batches(X: np.ndarray, y: np.ndarray, weight: np.ndarray, batch_size: int) -> dict:
    """The arguments that hand ``fit`` laid-out rows (their number a multiple of `batch_size`) in batches of
    `batch_size`, in order.

    On TensorFlow: a ``tf.data`` dataset of whole batches, copied from the arrays, its autotuning off. Keras' own
    pipeline for arrays gathers each batch in an autotuned parallel map, then prefetches it, which costs a small
    model more than its step; and deleting its iterator as a ``fit`` call ends sometimes waits a fraction of a
    second on tf.data's autotuning thread (`bench/feed.py`). This is kerasflow's one use of TensorFlow's own API, for
    feeding only: the models are Keras alone. On the other backends Keras feeds the arrays itself, without tf.data.
    """
    if keras.backend.backend() != "tensorflow":
        return as_arrays(X, y, weight, batch_size)
    import tensorflow as tf  # the backend in use, so installed

    batches = tuple(array.reshape((-1, batch_size) + array.shape[1:]) for array in (X, y, weight))
    options = tf.data.Options()
    options.autotune.enabled = False
    options.experimental_optimization.apply_default_optimizations = False  # nothing here for them to do
    return {"x": tf.data.Dataset.from_tensor_slices(batches).with_options(options)}
