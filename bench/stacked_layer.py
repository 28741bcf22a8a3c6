"""How to write k stacked Dense layers: ms per training step of k 30-12-8-1 MLPs (batch 10) as one Keras model,
for several formulations, beside one model alone. Why kerasflow turns oneDNN's custom ops off (tasks/config/backend.py).

Run from the repository root (after `make install`), once per setting to compare:

    .venv/bin/python bench/stacked_layer.py                          # kerasflow's default: oneDNN's ops off
    TF_ENABLE_ONEDNN_OPTS=1 .venv/bin/python bench/stacked_layer.py  # as TensorFlow sets it on some CPUs
    KERAS_BACKEND=jax .venv/bin/python bench/stacked_layer.py

Each formulation trains on random data, 2,600 steps in one `fit` after a warm-up `fit`; rows take turns
`--repeats` times. `batched` is kerasflow's own (`tasks/training/stacked.py`: the data slot-first, one batched matmul
per layer); `batched-swapped` is the same layers fed batch-first data, swapping the batch and slot axes in and out (as
kerasflow did before 2026-12-01's late session). `broadcast`, `einsum` and `per-slot` take slot-first data too.
"""

from __future__ import annotations

import argparse
import os
import time

from kerasflow.tasks.config.backend import set_backend_defaults

set_backend_defaults()  # the backends set up as `kerasflow` sets them, unless the environment says otherwise

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from kerasflow.tasks.training.stacked import StackedDense  # noqa: E402

FEATURES, BATCH, STEPS, WIDTHS = 30, 10, 2600, (12, 8, 1)


def activation(units: int) -> str:
    return "relu" if units > 1 else "sigmoid"


class BlockDiagonal(keras.layers.Layer):
    """k Dense layers as one matmul of `(batch, k*in)` by a `(k*in, k*out)` kernel masked to its diagonal blocks."""

    def __init__(self, k: int, units: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.k, self.units, self.act = k, units, keras.activations.get(activation(units))

    def build(self, input_shape) -> None:
        n_in = input_shape[-1] // self.k
        self.mask = ops.convert_to_tensor(np.kron(np.eye(self.k), np.ones((n_in, self.units))).astype("float32"))
        self.kernel = self.add_weight(shape=(self.k * n_in, self.k * self.units), initializer="glorot_uniform")
        self.bias = self.add_weight(shape=(self.k * self.units,), initializer="zeros")

    def call(self, x):
        return self.act(ops.matmul(x, self.kernel * self.mask) + self.bias)


class SlotFirst(StackedDense):
    """kerasflow's StackedDense with its batched matmul written another way (`how`)."""

    def __init__(self, units: int, seeds: list[int], how: str, **kwargs) -> None:
        super().__init__(units, seeds, activation(units), **kwargs)
        self.how = how

    def call(self, x):  # (k, batch, in)
        if self.how == "broadcast":
            y = ops.sum(x[:, :, :, None] * self.kernel[:, None, :, :], axis=2)
        elif self.how == "einsum":
            y = ops.einsum("kbi,kio->kbo", x, self.kernel)
        else:  # one matmul per slot
            y = ops.stack([ops.matmul(x[j], self.kernel[j]) for j in range(self.k)])
        return self.activation(y + self.bias)


SLOT_FIRST = ("batched", "broadcast", "einsum", "per-slot")


class SwapBatchAndSlots(keras.layers.Layer):
    """`(batch, k, ...)` to `(k, batch, ...)` and back."""

    def call(self, inputs):
        return ops.swapaxes(inputs, 0, 1)


def model(name: str, k: int) -> keras.Model:
    inputs = keras.Input((k, FEATURES))
    if name == "one model":
        return keras.Sequential([keras.Input((FEATURES,))] + [keras.layers.Dense(w, activation=activation(w))
                                                              for w in WIDTHS])
    if name == "block-diagonal":
        return keras.Sequential([inputs, keras.layers.Reshape((k * FEATURES,))]
                                + [BlockDiagonal(k, w) for w in WIDTHS] + [keras.layers.Reshape((k, 1))])
    if name == "grouped conv":
        return keras.Sequential([inputs, keras.layers.Reshape((1, k * FEATURES))]
                                + [keras.layers.Conv1D(k * w, 1, groups=k, activation=activation(w)) for w in WIDTHS]
                                + [keras.layers.Reshape((k, 1))])
    seeds = list(range(k))
    layers = [StackedDense(w, seeds, activation(w)) if name.startswith("batched") else SlotFirst(w, seeds, name)
              for w in WIDTHS]
    if name in SLOT_FIRST:
        return keras.Sequential([keras.Input((BATCH, FEATURES)), *layers])
    return keras.Sequential([inputs, SwapBatchAndSlots(), *layers, SwapBatchAndSlots()])


def ms_per_step(name: str, k: int) -> float:
    # Slot-first, each of Keras' samples is one slot's batch, and a batch of Keras' holds every slot's.
    batch = k if name in SLOT_FIRST else BATCH
    shape = {"one model": (STEPS * BATCH, FEATURES)}.get(name, (STEPS * k, BATCH, FEATURES) if name in SLOT_FIRST
                                                        else (STEPS * BATCH, k, FEATURES))
    rng = np.random.default_rng(0)
    X = rng.random(shape, dtype=np.float32)
    y = (rng.random(shape[:-1] + (1,)) > 0.5).astype("float32")
    net = model(name, k)
    net.compile("adam", "binary_crossentropy", steps_per_execution=520)
    net.fit(X[:batch * 520], y[:batch * 520], batch_size=batch, epochs=1, verbose=0)  # tracing, compiling
    start = time.perf_counter()
    net.fit(X, y, batch_size=batch, epochs=1, verbose=0)
    return (time.perf_counter() - start) / STEPS * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ways", default="one model,batched,batched-swapped,block-diagonal,broadcast,einsum,per-slot,"
                                          "grouped conv")
    args = parser.parse_args()
    ways = args.ways.split(",")
    keras.utils.set_random_seed(0)  # deterministic kernels (kerasflow's default) need seeded random ops
    seen: dict[str, list[float]] = {way: [] for way in ways}
    for _ in range(args.repeats):
        for way in ways:
            seen[way].append(ms_per_step(way, args.slots))
    print(f"backend={keras.backend.backend()} slots={args.slots} TF_ENABLE_ONEDNN_OPTS="
          f"{os.environ['TF_ENABLE_ONEDNN_OPTS']}  ms per step, {args.repeats} runs taking turns (median: all)")
    for way in ways:
        print(f"{way:<16} {np.median(seen[way]):6.3f}  ({' '.join(f'{v:.3f}' for v in seen[way])})")


if __name__ == "__main__":
    main()
