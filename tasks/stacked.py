"""Many small models as one program: the k folds of a Dense model, or of several configs that share its shape,
trained by one stacked model.

Slot ``j`` of every tensor belongs to one model: weights are shaped ``(slots, in, out)`` and one batched matmul
per layer computes all of them, so Keras' per-step overhead (which dominates for models this small) is paid once per
step instead of once per model. Configs of a grid stack when they differ only in their Dense layers'
initializers (:func:`stack_key`); config ``c``'s fold ``f`` is slot ``c * k + f``. Each slot gets

- its own weights, initialised exactly as a separate ``Dense`` layer would be;
- its own rows: slot ``j`` of input row ``i`` is a training row of fold ``j``, and shuffling the stacked rows
  gives every slot a uniformly random order each epoch, as separate training would;
- its own gradient: the loss is the *sum* over slots of each slot's batch mean, so no slot's learning rate is
  scaled by k.

Folds whose training sets are one row shorter than the longest are padded with zero-weight rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from tasks.models import TargetScale, layer_seeds, make_optimizer, seeded_initializer
from tasks.spec import DenseLayer, DropoutLayer, ExperimentSpec, ModelSpec
from tasks.train import (
    FoldData,
    FoldResult,
    SlotMean,
    metric_fn,
    predict,
    score,
    steps_per_execution,
    validation_batch_size,
)


class PerSlotInitializer(keras.initializers.Initializer):
    """Initialise a `(k, in, out)` kernel as k independent `(in, out)` kernels, slot j drawn by the initializer
    `names[j]` seeded with `seeds[j]`.

    Calling the base initializer on the 3-D shape would count k into its fan-in and shrink every weight.
    """

    def __init__(self, names: list[str], seeds: list[int]) -> None:
        if len(names) != len(seeds):
            raise ValueError(f"one initializer per slot: {len(names)} names for {len(seeds)} seeds")
        self.names, self.seeds = list(names), list(seeds)

    def __call__(self, shape, dtype=None):
        return ops.stack([seeded_initializer(name, seed)(shape[1:], dtype=dtype)
                          for name, seed in zip(self.names, self.seeds)])

    def get_config(self) -> dict:
        return {"names": self.names, "seeds": self.seeds}


class SwapBatchAndSlots(keras.layers.Layer):
    """`(batch, k, ...)` to `(k, batch, ...)` and back: the stacked Dense layers work slot-first.

    Slot-first, each layer is one batched matmul. The batch-first `einsum("bki,kio->bko")` transposes in and out
    at every layer: on TensorFlow a 12-8-1 step of 10 slots took 1.34-1.44 ms that way against 0.96-1.07 ms
    (BENCHMARKS.md).
    """

    def call(self, inputs):
        return ops.swapaxes(inputs, 0, 1)


class StackedDense(keras.layers.Layer):
    """k independent `Dense` layers applied slot-wise to slot-first inputs of shape `(k, batch, in)`; slot j's
    kernel is drawn by `initializers[j]` (all `glorot_uniform` by default) seeded with `seeds[j]`."""

    def __init__(self, units: int, seeds: list[int], activation: str = "linear",
                 initializers: list[str] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.k, self.units, self.seeds = len(seeds), units, list(seeds)
        self.initializers = list(initializers or ["glorot_uniform"] * self.k)
        self.activation = keras.activations.get(activation)

    def build(self, input_shape) -> None:
        self.kernel = self.add_weight(shape=(self.k, input_shape[-1], self.units), name="kernel",
                                      initializer=PerSlotInitializer(self.initializers, self.seeds))
        self.bias = self.add_weight(shape=(self.k, self.units), name="bias", initializer="zeros")

    def call(self, inputs):
        return self.activation(ops.matmul(inputs, self.kernel) + self.bias[:, None, :])


class SlotSumLoss(keras.losses.Loss):
    """Sum over slots of each slot's mean loss, so each slot's gradient is what separate training gives."""

    def __init__(self, loss: str, k: int, **kwargs) -> None:
        super().__init__(name=f"stacked_{loss}", **kwargs)
        self.fn, self.k = keras.losses.get(loss), k

    def call(self, y_true, y_pred):
        # Keras divides the weighted sum by batch * k elements; multiplying by k leaves the per-slot batch mean.
        return self.fn(y_true, y_pred) * self.k


def stack_key(spec: ExperimentSpec) -> str:
    """What configs must share to train as one stacked program: everything but their Dense layers' initializers.

    Two configs with equal keys have the same shapes, activations, preprocessing, folds, optimizer, batch size,
    epochs and seed, so one stacked program reproduces each config's own training.
    """
    layers = [layer.model_copy(update={"initializer": ""}) if isinstance(layer, DenseLayer) else layer
              for layer in spec.model.layers]
    return spec.model_copy(update={"model": spec.model.model_copy(update={"layers": layers})}).model_dump_json()


def build_stacked(models: Sequence[ModelSpec], n_features: int, seeds: Sequence[int],
                  target_scales: list[TargetScale] | None = None) -> keras.Model:
    """The stacked twin of :func:`tasks.models.build_model`: slot j is `models[j]` seeded with `seeds[j]`,
    rescaled by `target_scales[j]`.

    Slot j starts from the weights `build_model(models[j], n_features, seeds[j])` gives: that model's own.
    The models must differ only in their Dense layers' initializers (see :func:`stack_key`).
    """
    k = len(seeds)
    model = keras.Sequential([keras.Input(shape=(k, n_features)), SwapBatchAndSlots()], name="kerasflow_stacked")
    layers = models[0].layers
    slot_seeds = [layer_seeds(seed, len(layers)) for seed in seeds]
    for i, layer in enumerate(layers):
        if isinstance(layer, DenseLayer):
            model.add(StackedDense(layer.units, [s[i] for s in slot_seeds], layer.activation,
                                   [m.layers[i].initializer for m in models]))
        elif isinstance(layer, DropoutLayer):
            model.add(keras.layers.Dropout(layer.rate, seed=slot_seeds[0][i]))
        else:
            raise TypeError(f"layer {layer.type!r} cannot be stacked; use the per-fold path")
    model.add(SwapBatchAndSlots())  # batch-first outputs, as the stacked targets and sample weights are
    if target_scales is not None:
        scale, offset = (np.array(values, dtype="float32")[:, None] for values in zip(*target_scales))
        model.add(keras.layers.Rescaling(scale, offset, name="target_scale"))
    return model


def stack_rows(parts: list[np.ndarray], targets: list[np.ndarray],
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack per-slot rows into `(L, k, ...)` arrays plus `(L, k)` weights, L being the longest part.

    Each slot's rows are put in a random order; shorter slots are padded with copies of their own rows at
    weight 0, so padding never injects values a model would not otherwise see.
    """
    length = max(len(p) for p in parts)
    X = np.empty((length, len(parts)) + parts[0].shape[1:], dtype=parts[0].dtype)
    y = np.empty((length, len(parts)) + targets[0].shape[1:], dtype=targets[0].dtype)
    weight = np.zeros((length, len(parts)), dtype=np.float32)
    for j, (rows, target) in enumerate(zip(parts, targets)):
        order = rng.permutation(len(rows))
        filled = np.concatenate([order, order[: length - len(rows)]])
        X[:, j], y[:, j] = rows[filled], target[filled]
        weight[: len(rows), j] = 1.0
    return X, y, weight


def fit_stacked(specs: Sequence[ExperimentSpec], folds: list[FoldData],
                callbacks: Sequence[keras.callbacks.Callback] = (), initial_epoch: int = 0) -> list[list[FoldResult]]:
    """Train one model per config and fold, all as one stacked program; score each on its fold's held-out rows.

    `specs` must share a :func:`stack_key`. Returns the results per config, each a list over the folds. Every
    config's slots see its folds' rows in the order a run of that config alone gives them, so the configs of a
    stacked grid train as they would one by one.
    """
    spec, n_configs = specs[0], len(specs)
    key = stack_key(spec)
    if any(stack_key(other) != key for other in specs[1:]):
        raise ValueError("configs stacked into one program may differ only in their Dense layers' initializers")
    rng = np.random.default_rng(spec.train.seed)
    # One config's stacked rows, repeated for every config: slot c * k + f holds fold f's rows.
    X, y, w = (np.concatenate([part] * n_configs, axis=1)
               for part in stack_rows([f.X_train for f in folds], [f.y_train for f in folds], rng))
    X_val, y_val, w_val = (np.concatenate([part] * n_configs, axis=1)
                           for part in stack_rows([f.X_test for f in folds], [f.y_test for f in folds], rng))

    n_folds = len(folds)
    k = n_configs * n_folds
    scales = None if folds[0].target_scale is None else [f.target_scale for f in folds] * n_configs
    model = build_stacked([s.model for s in specs for _ in folds], X.shape[-1],
                          [s.train.seed + f for s in specs for f in range(n_folds)], scales)
    fn, root = metric_fn(spec)
    loss_fn = keras.losses.get(spec.loss)
    metrics = [SlotMean(loss_fn, slots=k, name="loss"), SlotMean(fn, slots=k, root=root, name=spec.metric)]
    # Weighted: Keras hands sample weights to `weighted_metrics` only, and the rows padding a short fold weigh 0.
    model.compile(optimizer=make_optimizer(spec.train), loss=SlotSumLoss(spec.loss, k), weighted_metrics=metrics,
                  steps_per_execution=steps_per_execution(len(X), spec.train.batch_size))
    keras.utils.set_random_seed(spec.train.seed)  # the shuffle order, as in `fit_model`
    history = model.fit(X, y, sample_weight=w, batch_size=spec.train.batch_size, epochs=spec.train.epochs,
                        shuffle=True, validation_data=(X_val, y_val, w_val),
                        validation_batch_size=validation_batch_size(model, (X_val,)), callbacks=list(callbacks),
                        initial_epoch=initial_epoch, verbose=0).history

    predictions = predict(model, X_val)
    results: list[list[FoldResult]] = [[] for _ in specs]
    for j in range(k):
        fold = folds[j % n_folds]
        n_test = len(fold.X_test)
        # Slot j's first n_test stacked rows are its held-out rows (in stacked order, as are the predictions).
        fold_history = {
            "loss": history[f"f{j}_loss"], "val_loss": history[f"val_f{j}_loss"],
            spec.metric: history[f"f{j}_{spec.metric}"], f"val_{spec.metric}": history[f"val_f{j}_{spec.metric}"],
        }
        results[j // n_folds].append(FoldResult(
            score=score(spec, y_val[:n_test, j], predictions[:n_test, j]),
            history={key: [float(v) for v in vals] for key, vals in fold_history.items()},
            n_train=len(fold.X_train), n_test=n_test))
    return results
