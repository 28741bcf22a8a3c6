"""Which row of each slot fills each place of every epoch's batches: kerasflow deals the epochs itself."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EpochPlan:
    """Which row of each slot fills each place of every epoch's batches, and the weight it gets there.

    ``index[e, p, j]`` is the row of slot j's table at place p of epoch e; ``weight`` is 0 at padding places.
    A model trained alone is one slot; a stacked model has one slot per model (see `tasks/training/stacked.py`).
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
                shuffle: bool = True, row_weights: Sequence[np.ndarray] | None = None) -> EpochPlan:
    """Deal `epochs` epochs of slots holding `sizes` rows in batches of `batch_size`: slot j's rows in a new
    random order each epoch, drawn from `seeds[j]` (or in their own order when `shuffle` is false). With
    `row_weights`, row i of slot j weighs `row_weights[j][i]` times more wherever it is dealt (a class weight).

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
    >>> plan_epochs([5], [0], epochs=1, batch_size=10**12).batch_size  # one batch of all rows
    5
    """
    # A batch larger than the longest slot is all of it, as in Keras: one batch an epoch, not a plan of batch_size
    # places (a huge batch_size would allocate it).
    batch_size = min(batch_size, max(sizes))
    places = math.ceil(max(sizes) / batch_size) * batch_size
    index = np.zeros((epochs, places, len(sizes)), dtype=np.int64)
    weight = np.zeros((epochs, places, len(sizes)), dtype=np.float32)
    for j, (n_rows, seed) in enumerate(zip(sizes, seeds)):
        rows = np.tile(np.arange(n_rows), (epochs, 1))
        index[:, :n_rows, j] = np.random.default_rng(seed).permuted(rows, axis=1) if shuffle else rows
        partial = n_rows % batch_size
        weight[:, :n_rows - partial, j] = 1.0
        weight[:, n_rows - partial:n_rows, j] = batch_size / partial if partial else 1.0
        if row_weights is not None:
            weight[:, :n_rows, j] *= row_weights[j][index[:, :n_rows, j]]
    return EpochPlan(index, weight, batch_size)


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
