"""Every epoch's batches, dealt by kerasflow rather than by Keras' input pipeline, and the held-out rows scored
at each epoch's end.

Why not ``model.fit(X, y, shuffle=True, validation_data=...)``:

- With a global seed set, Keras' TensorFlow pipeline deals the rows in the same order every epoch: its shuffle
  op is re-created with the same seed each time an epoch starts (tensorflow/tensorflow#35682). Its JAX pipeline
  reshuffles from NumPy's global state. Here each epoch's order is a fresh permutation drawn from the model's
  seed, the same on every backend, and a run resumed at epoch e deals epochs e, e+1, ... exactly as the
  uninterrupted run did.
- On TensorFlow, Keras builds a ``tf.data`` iterator twice per epoch for training and twice more for validation,
  ~12 ms each on a 2-core machine: more than the 50-odd steps of a small model's epoch (BENCHMARKS.md). Here the
  epochs are laid out one after another in one array (in chunks of at most `LAYOUT_BYTES`), so one ``fit`` call
  streams a whole chunk of epochs through one iterator, and held-out rows are scored from one compiled prediction
  a chunk of rows (:class:`HeldOutScores`).

Each epoch is padded to whole batches with zero-weight rows, so no batch straddles two epochs. The real rows
of a partial last batch weigh ``batch_size / rows``: Keras divides a batch's weighted loss sum by the batch size,
so that batch's loss (and gradient) is the mean over its real rows, as an unpadded partial batch's is. (Keras'
running training ``loss`` of the epoch counts that batch as a full one; kerasflow's own metrics count rows.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import keras
import numpy as np

ONE_BATCH = 4096
"""The most held-out rows of a model scored in one step (a stacked model's: of each slot)."""

LAYOUT_BYTES = 16 * 2**20
"""The most bytes of laid-out epochs handed to one ``fit`` call (one epoch at least); longer trainings are fed in
several. Small, as memory first written costs page faults: the reused layout buffer (:class:`Layout`) is faulted
in once per training. 10 stacked folds of 150 epochs (94 MB laid out) took 1.07x one fold on TensorFlow in 16 MiB
calls, 1.09x in 32 MiB calls and 1.20x in 96 MiB calls; on JAX 1.13x in 16 or 32 MiB calls (`bench/layout.py`,
BENCHMARKS.md)."""


@dataclass(frozen=True)
class EpochPlan:
    """Which row of each slot fills each place of every epoch's batches, and the weight it gets there.

    ``index[e, p, j]`` is the row of slot j's table at place p of epoch e; ``weight`` is 0 at padding places.
    A model trained alone is one slot; a stacked model has one slot per model (see `tasks/stacked.py`).
    """

    index: np.ndarray
    weight: np.ndarray
    batch_size: int

    @property
    def epochs(self) -> int:
        return self.index.shape[0]

    @property
    def steps(self) -> int:
        """Batches per epoch."""
        return self.index.shape[1] // self.batch_size


def plan_epochs(sizes: Sequence[int], seeds: Sequence[int], epochs: int, batch_size: int,
                shuffle: bool = True) -> EpochPlan:
    """Deal `epochs` epochs of slots holding `sizes` rows in batches of `batch_size`: slot j's rows in a new
    random order each epoch, drawn from `seeds[j]` (or in their own order when `shuffle` is false).

    Every slot has as many batches as the longest one. A slot with a whole batch fewer rows than the longest
    gets an empty batch at the end of each epoch: no rows, so no gradient, though a momentum optimizer still
    moves its weights a little in that step.

    Examples
    --------
    >>> plan = plan_epochs([5], [0], epochs=2, batch_size=2)
    >>> plan.steps, plan.index.shape
    (3, (2, 6, 1))
    >>> plan.weight[0, :, 0].tolist()  # the last batch holds one real row, weighted to count as its mean
    [1.0, 1.0, 1.0, 1.0, 2.0, 0.0]
    >>> sorted(plan.index[1, :5, 0].tolist())
    [0, 1, 2, 3, 4]
    """
    places = math.ceil(max(sizes) / batch_size) * batch_size
    index = np.zeros((epochs, places, len(sizes)), dtype=np.int64)
    weight = np.zeros((epochs, places, len(sizes)), dtype=np.float32)
    for j, (n_rows, seed) in enumerate(zip(sizes, seeds)):
        rows = np.tile(np.arange(n_rows), (epochs, 1))
        index[:, :n_rows, j] = np.random.default_rng(seed).permuted(rows, axis=1) if shuffle else rows
        partial = n_rows % batch_size
        weight[:, :n_rows - partial, j] = 1.0
        weight[:, n_rows - partial:n_rows, j] = batch_size / partial if partial else 1.0
    return EpochPlan(index, weight, batch_size)


def fixed_batch_size(model: keras.Model) -> int | None:
    """The batch size a stateful model was built for, else None."""
    return model.inputs[0].shape[0] if model.inputs else None


EVERY_SLOT = "f*_"
"""Marks a log entry that holds one value per slot of a stacked model, as a vector: ``val_f*_loss`` stands for
``val_f0_loss``, ``val_f1_loss``... A compiled step returns one such vector per metric, not k scalars: on JAX each
output of a step costs a dispatch, and 40 per-slot scalars made a 10-slot epoch 14.5 ms against 8.9 ms
(BENCHMARKS.md). :class:`SlotLogs` expands them before any other callback reads the epoch's logs."""


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


RowScores = Mapping[str, tuple[Callable, bool]]
"""Per-row functions of (targets, predictions) by log name (``loss``, ``accuracy``...), each with whether the
logged value is the root of the rows' mean (RMSE)."""


@dataclass(frozen=True)
class HeldOut:
    """Rows a model is scored on at each epoch's end, and the functions it is scored by.

    For a stacked model the tables are slot-first, ``(slots, rows, ...)``, and `weight` is 0 where a slot's rows
    are padding (see `tasks/stacked.py`).
    """

    X: np.ndarray
    y: np.ndarray
    scores: RowScores
    weight: np.ndarray | None = None

    @property
    def validation_data(self) -> tuple[np.ndarray, ...]:
        """The rows as Keras' ``validation_data``."""
        return (self.X, self.y) if self.weight is None else (self.X, self.y, self.weight)


def slot_means(values: np.ndarray, weight: np.ndarray | None, slots: int) -> np.ndarray:
    """Each slot's mean of per-row `values` over its rows with weight above 0: one value per slot.

    Examples
    --------
    >>> slot_means(np.array([[1.0, 3.0], [5.0, np.inf]]), np.array([[1.0, 1.0], [1.0, 0.0]]), slots=2).tolist()
    [2.0, 5.0]
    """
    values = np.asarray(values, dtype=np.float64).reshape(slots, -1)
    counts = np.ones(values.shape, dtype=bool) if weight is None else np.asarray(weight).reshape(slots, -1) > 0
    # `where`, not a product: a padding row's value may be inf (inf * 0 is nan).
    return np.where(counts, values, 0.0).sum(axis=1) / np.maximum(counts.sum(axis=1), 1)


class RowScorer(keras.Model):
    """Held-out rows scored in one compiled prediction: called on ``(X, y)``, it returns each of `functions` of
    (targets, `scored`'s predictions), one value per row (and slot), then the predictions themselves. It shares
    `scored`'s weights."""

    def __init__(self, scored: keras.Model, functions: Sequence[Callable]) -> None:
        super().__init__()
        self.scored, self.functions = scored, tuple(functions)
        # No weights of its own: built already. Keras would otherwise build it by an eager call, which on JAX
        # compiles each op of the model and the functions one by one (0.8 s for a 10-slot MLP).
        self.built = True

    def call(self, inputs: tuple) -> list:
        """Each function's per-row values for held-out rows ``X`` with targets ``y``, and the predictions.

        Keras' own ``val_loss`` also adds the model's ``losses`` (weight penalties); kerasflow's layers have no
        regularizers, so the loss function alone is the same value.

        Each function reduces the predictions' last axis, so its values are shaped as the predictions less that
        axis: reshaped so, as Keras' functions squeeze a known axis of 1 (on JAX, a stacked model's chunk of one
        row per slot came back as one value per slot).
        """
        X, y = inputs
        predictions = self.scored(X, training=False)
        rows = keras.ops.shape(predictions)[:-1]
        return [*(keras.ops.reshape(keras.ops.cast(fn(y, predictions), "float32"), rows) for fn in self.functions),
                predictions]


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

    Why not ``test_on_batch``: it resets and reads the compiled metrics eagerly each time, and on JAX syncs the
    whole training state: inside ``fit`` it cost 3.4 ms an epoch on TensorFlow and 4.6 ms on JAX for 10 stacked
    folds, and compiled a test step of its own. Here a :class:`RowScorer` gives every row's loss and metric in one
    prediction a chunk, and the means per slot are taken in NumPy: 1.2 ms and 1.9 ms an epoch.

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
        for (name, (_, root)), values in zip(held_out.scores.items(), rows):
            means = slot_means(values, held_out.weight, self.slots or 1)
            means = np.sqrt(means) if root else means
            if self.slots is None:
                logs[f"val_{name}"] = float(means[0])
            else:
                logs[f"val_{every_slot(name)}"] = means


@dataclass(frozen=True)
class Trained:
    """What :func:`fit_epochs` gives back: the per-epoch history, and the held-out rows' predictions as the last
    epoch's end scored them: the trained model's, as nothing changes weights after that (no callback of kerasflow,
    and no optimizer of its with a moving average to swap in). None when there were no held-out rows, no epoch was
    trained, or Keras' own `validation_data` scored the rows; then ask the model."""

    history: dict[str, list[float]]
    predictions: np.ndarray | None = None


def slot_first(places: np.ndarray, batch_size: int) -> np.ndarray:
    """Per-place values of every slot, shaped ``(places, slots, ...)``, as a stacked model takes them: each batch
    of `batch_size` places as `slots` runs, run j slot j's, shaped ``(batches * slots, batch_size, ...)``.

    Examples
    --------
    >>> slot_first(np.array([[0, 10], [1, 11], [2, 12], [3, 13]]), batch_size=2).tolist()
    [[0, 1], [10, 11], [2, 3], [12, 13]]
    """
    batches = places.reshape((-1, batch_size) + places.shape[1:])
    return np.swapaxes(batches, 1, 2).reshape((-1, batch_size) + places.shape[2:])


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


def fit_epochs(model: keras.Model, X: np.ndarray, y: np.ndarray, plan: EpochPlan, *, slotted: bool,
               held_out: HeldOut | None = None, callbacks: Sequence[keras.callbacks.Callback] = (),
               initial_epoch: int = 0) -> Trained:
    """Train a compiled `model` on the batches `plan` deals from the tables `X`, `y`; return the per-epoch history
    and the held-out rows' last predictions (:class:`Trained`).

    With `slotted`, the tables are slot-first, ``(slots, rows, ...)``, and each step hands the model a
    ``(slots, batch, ...)`` block (:func:`slot_first`); otherwise they are one model's ``(rows, ...)``. Slotted,
    `callbacks` see each slot's scores as ``f<j>_<name>`` and ``val_f<j>_<name>`` (:class:`SlotLogs`). `held_out`
    is scored at each epoch's end: by :class:`HeldOutScores` when the model is stacked or the rows fit one batch,
    else (more rows, or a stateful model, which takes them in order a fixed number at a time) by Keras' own
    `validation_data`, whose iterator Keras keeps for the whole `fit` call; its scores come from the compiled loss
    and metrics, which must log the names `held_out.scores` gives. Training starts at epoch `initial_epoch` of the
    plan; a run resumed at its last epoch trains nothing, though its callbacks still see the training begin and end.

    A training longer than `LAYOUT_BYTES` is fed in several `fit` calls, and `callbacks` see
    ``on_train_begin``/``on_train_end`` once per call: they must not reset what they track there.
    """
    n_slots = plan.index.shape[-1]
    rows = X.shape[1] if slotted else len(X)
    epoch_bytes = plan.index.shape[1] * ((X.nbytes + y.nbytes) // rows + 4 * n_slots)
    per_fit = max(1, min(LAYOUT_BYTES // epoch_bytes, plan.epochs - initial_epoch))
    X_laid, y_laid = (Layout(table, per_fit * plan.index.shape[1], n_slots if slotted else None, plan.batch_size)
                      for table in (X, y))
    fixed_batch = fixed_batch_size(model)
    scored_here = held_out is not None and fixed_batch is None and (slotted or len(held_out.X) <= ONE_BATCH)
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
