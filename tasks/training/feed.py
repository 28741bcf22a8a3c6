"""The input feed: laid-out epochs handed to ``fit`` in whole batches."""

from __future__ import annotations

import math

import keras
import numpy as np

from kerasflow.tasks.training.epoch_plan import slot_first

ALIGNMENT = 64
"""Bytes a buffer's address is a multiple of for TensorFlow to read it in place (``EIGEN_MAX_ALIGN_BYTES`` with
AVX-512): it aborts the process, not raises, on a less aligned buffer handed to it by DLPack."""


def aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised C-ordered array whose data starts at a multiple of `ALIGNMENT` bytes (NumPy's own start
    at multiples of 16). An empty one may start anywhere: NumPy places no empty slice at its offset.

    Examples
    --------
    >>> array = aligned_empty((3, 5), np.float32)
    >>> array.shape, array.ctypes.data % ALIGNMENT
    ((3, 5), 0)
    """
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    raw = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start:start + nbytes].view(dtype).reshape(shape)


class Layout:
    """A reused buffer that a table's rows are laid out in, one chunk of epochs after another: one model's rows in
    the order dealt, a stacked model's slot-first (:func:`slot_first`).

    Why reused: a fresh array of ~100 MB costs a few tenths of a second in page faults each time it is first
    written (on these virtual machines), more than the copy itself; a buffer of `LAYOUT_BYTES` (or one epoch, if
    larger) is faulted in once per training. On TensorFlow it is aligned (:func:`aligned_empty`), so that the
    batches ``fit`` reads are this buffer, not a copy of it (:func:`in_batches`): it is rewritten only between
    ``fit`` calls. Not on JAX: JAX reads an aligned NumPy argument in place too, but its steps run asynchronously,
    so only a wait for every step before the next chunk is laid out would keep them from reading that chunk's rows.
    """

    def __init__(self, table: np.ndarray, places: int, slots: int | None, batch_size: int) -> None:
        self.slots, self.batch_size = slots, batch_size
        # Slotted, slot j's row r is row j * rows + r of the flattened table: one `take` lays out every slot.
        self.table = table if slots is None else table.reshape((-1,) + table.shape[2:])
        self.rows = len(table) if slots is None else table.shape[1]
        allocate = aligned_empty if keras.backend.backend() == "tensorflow" else np.empty
        self.buffer = allocate((places * (slots or 1),) + self.table.shape[1:], table.dtype)

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

    On TensorFlow: a ``tf.data`` dataset of whole batches, its autotuning off. Keras' own pipeline for arrays
    gathers each batch in an autotuned parallel map, then prefetches it, which costs a small model more than its
    step; and deleting its iterator as a ``fit`` call ends sometimes waits a fraction of a second on tf.data's
    autotuning thread. Fed this way, one fold of the 12-8-1 MLP took 1.98 s against 2.43 s, its 10 stacked folds
    2.15 s against 3.19 s, the same training bit for bit (`bench/feed.py`, BENCHMARKS.md). An array TensorFlow can
    read in place (:func:`in_place`) is not copied: the dataset reads it, so it must not change until ``fit`` is
    done with it. This is kerasflow's one use of TensorFlow's own API, for feeding only: the models are Keras alone.
    On the other backends Keras feeds the arrays itself, without tf.data.
    """
    if keras.backend.backend() != "tensorflow":
        return as_arrays(X, y, weight, batch_size)
    import tensorflow as tf  # the backend in use, so installed

    batches = tuple(in_place(array.reshape((-1, batch_size) + array.shape[1:])) for array in (X, y, weight))
    options = tf.data.Options()
    options.autotune.enabled = False
    options.experimental_optimization.apply_default_optimizations = False  # nothing here for them to do
    return {"x": tf.data.Dataset.from_tensor_slices(batches).with_options(options)}


def in_place(array: np.ndarray):
    """`array` as a TensorFlow tensor sharing its memory (by DLPack) where TensorFlow can read it there: native
    integers or floats of at most 8 bytes, C-ordered, `ALIGNMENT`-aligned and writeable (NumPy exports no read-only
    array by DLPack), as a :class:`Layout`'s batches are; else `array` itself, for TensorFlow to copy.

    Why: 10 stacked folds of the 12-8-1 MLP lay out 94 MB. Read in place, they took 2.32 s against 2.46 s copied,
    each timed in its own process (`bench/kfold.py --only-kerasflow` at each commit); in one process taking turns,
    2.15 s against 2.17 s (`bench/feed.py`; BENCHMARKS.md).
    """
    import tensorflow as tf  # only called on the TensorFlow backend

    dtype, flags = array.dtype, array.flags
    readable = (dtype.kind in "iuf" and dtype.isnative and dtype.itemsize <= 8 and flags.c_contiguous
                and flags.writeable and array.ctypes.data % ALIGNMENT == 0)
    return tf.experimental.dlpack.from_dlpack(array.__dlpack__()) if readable else array
