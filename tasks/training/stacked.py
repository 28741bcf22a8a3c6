"""Many small models as one program: the k folds of a Dense model, or of several configs that share its shape,
trained by one stacked model.

Slot ``j`` of every tensor belongs to one model: weights are shaped ``(slots, in, out)`` and one batched matmul
per layer computes all of them, so Keras' per-step overhead (which dominates for models this small) is paid once per
step instead of once per model. Configs of a grid stack when they differ only in their Dense layers'
initializers, hidden widths (narrower slots padded and masked, :class:`StackedDense`) and optimizers
(:func:`stack_key`; an optimizer per slot group, `tasks/training/slot_optimizers.py`);
config ``c``'s fold ``f`` is slot ``c * k + f``. Each slot gets

- its own weights, initialised exactly as a separate ``Dense`` layer would be;
- its own rows: the model takes its data slot-first, each step a ``(slots, batch, features)`` block whose slot
  ``j`` holds training rows of fold ``j``, dealt in the order the per-fold path deals them to fold ``j``'s own
  model, a new one each epoch (`tasks/training/fit.py`). Slot-first, no layer swaps the batch and slot axes in or out;
- its own gradient: the loss is the *sum* over slots of each slot's batch mean, so no slot's learning rate is
  scaled by k (:class:`StackedModel`).

Folds whose training sets are shorter than the longest are padded with zero-weight rows. With early stopping each
slot stops on its own (:class:`StopSlots`), keeping the weights its model alone would stop with.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import keras
import numpy as np
from keras import ops

from kerasflow.tasks.config.layers import ActivationLayer, DenseLayer, DropoutLayer, GaussianNoiseLayer
from kerasflow.tasks.config.schema import ExperimentSpec, ModelSpec, TrainSpec
from kerasflow.tasks.training.epoch_plan import plan_epochs
from kerasflow.tasks.training.fit import fit_epochs
from kerasflow.tasks.training.models import (
    TargetScale,
    layer_seeds,
    make_optimizer,
    output_units,
    schedule_callbacks,
    seeded_initializer,
    weight_arguments,
)
from kerasflow.tasks.training.scoring import (
    HeldOut,
    SlotMean,
    by_chunks_of_rows,
    metric_fn,
    row_loss,
    row_scores,
    score,
)
from kerasflow.tasks.training.slot_optimizers import own_optimizers, slot_groups
from kerasflow.tasks.training.train import (
    EarlyStoppingAcrossFits,
    FoldData,
    FoldResult,
    steps_per_execution,
    with_predictions,
)


class PerSlotInitializer(keras.initializers.Initializer):
    """Initialise a `(k, in, out)` kernel as k independent kernels, slot j drawn by the initializer `names[j]`
    seeded with `seeds[j]`, for its own `(in, out)` shape `shapes[j]` (by default the whole `(in, out)`) and padded
    with zeros to the whole.

    Calling the base initializer on the 3-D shape would count k into its fan-in and shrink every weight.
    """

    def __init__(self, names: list[str], seeds: list[int], shapes: list[tuple[int, int]] | None = None) -> None:
        if len(names) != len(seeds):
            raise ValueError(f"one initializer per slot: {len(names)} names for {len(seeds)} seeds")
        self.names, self.seeds = list(names), list(seeds)
        self.shapes = [tuple(shape) for shape in shapes] if shapes is not None else None

    def __call__(self, shape, dtype=None):
        whole = tuple(shape[1:])
        own = self.shapes or [whole] * len(self.seeds)
        return ops.stack([ops.pad(seeded_initializer(name, seed)(size, dtype=dtype),
                                  [[0, whole[0] - size[0]], [0, whole[1] - size[1]]])
                          for name, seed, size in zip(self.names, self.seeds, own)])

    def get_config(self) -> dict:
        return {"names": self.names, "seeds": self.seeds, "shapes": self.shapes}


def slotwise_constraint(constraint: keras.constraints.Constraint | None,
                        leading: int) -> keras.constraints.Constraint | None:
    """`constraint` for a weight stacked behind `leading` axes (the slots', and the bias's row axis): one that acts
    along an axis (max_norm, unit_norm, min_max_norm) acts along that same axis of each slot's weight."""
    if constraint is None:
        return None
    config = constraint.get_config()
    if "axis" in config:
        axes = config["axis"]
        shifted = [axis + leading if axis >= 0 else axis for axis in (axes if isinstance(axes, list) else [axes])]
        config["axis"] = shifted if isinstance(axes, list) else shifted[0]
    return type(constraint).from_config(config)


def slot_penalty(regularizer: keras.regularizers.Regularizer | None, weight) -> object:
    """Each slot's penalty for a stacked `weight`, a `(slots,)` tensor: what `regularizer` (l1, l2 or l1_l2) gives
    that slot's weight alone; 0 without one."""
    if regularizer is None:
        return 0.0
    config, axes = regularizer.get_config(), tuple(range(1, len(weight.shape)))
    penalty = 0.0
    if config.get("l1"):
        penalty = penalty + config["l1"] * ops.sum(ops.absolute(weight), axis=axes)
    if config.get("l2"):
        penalty = penalty + config["l2"] * ops.sum(ops.square(weight), axis=axes)
    return penalty


class StackedDense(keras.layers.Layer):
    """k independent `Dense` layers applied slot-wise to slot-first inputs of shape `(k, rows, in)`, one batched
    matmul for all; slot j's kernel is drawn by `initializers[j]` (all `glorot_uniform` by default) seeded with
    `seeds[j]`.

    `options` are the Dense layer's constraints, penalties and `use_bias` (as Keras objects): a constraint holds
    slot by slot, and each slot's penalty (:meth:`slot_penalties`) is its Dense layer's, added to its own loss by
    :class:`StackedModel`. An activity penalty is not taken (see `ModelSpec.stackable`). `groups` splits the slots,
    in order, into groups with a kernel and bias each (`group_weights`), for an optimizer per group
    (`tasks/training/slot_optimizers.py`); by default all k share one.

    Slots may be narrower than the layer: slot j has `widths[j]` units of `units` and takes the first
    `input_widths[j]` inputs. Its kernel is drawn for its own shape and padded with zeros, and its inputs past its
    own are multiplied by 0, so the padding units neither reach its outputs nor get a gradient: it trains as the
    narrower Dense layer alone (the zero weights add nothing to a penalty, and no stackable optimizer or constraint
    moves a weight whose gradient is always 0: see `TrainSpec.stackable`)."""

    def __init__(self, units: int, seeds: list[int], activation: str = "linear",
                 initializers: list[str] | None = None, options: dict | None = None,
                 groups: Sequence[int] | None = None, widths: Sequence[int] | None = None,
                 input_widths: Sequence[int] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.k, self.units, self.seeds = len(seeds), units, list(seeds)
        self.widths = list(widths or [units] * self.k)
        self.input_widths = list(input_widths) if input_widths is not None else None
        self.groups = list(groups or [self.k])
        if sum(self.groups) != self.k:
            raise ValueError(f"slot groups {self.groups} do not add up to the {self.k} slots")
        self.initializers = list(initializers or ["glorot_uniform"] * self.k)
        self.activation = keras.activations.get(activation)
        self.options = {"use_bias": True, **(options or {})}
        if self.options.get("activity_regularizer") is not None:
            raise ValueError("an activity penalty cannot be stacked: the zero rows padding a slot would add to it")

    def build(self, input_shape) -> None:
        n_inputs = input_shape[-1]
        inputs = self.input_widths or [n_inputs] * self.k
        shapes = list(zip(inputs, self.widths))
        # A slot's inputs past its own width are a narrower previous layer's padding units: multiplied by 0.
        self.input_mask = None if min(inputs) == n_inputs else \
            (np.arange(n_inputs)[None, None, :] < np.array(inputs)[:, None, None]).astype("float32")
        starts = np.cumsum([0, *self.groups])
        named = (lambda name, g: name) if len(self.groups) == 1 else (lambda name, g: f"{name}_{g}")
        self.kernels = [self.add_weight(shape=(size, n_inputs, self.units), name=named("kernel", g),
                                        initializer=PerSlotInitializer(self.initializers[start:start + size],
                                                                       self.seeds[start:start + size],
                                                                       shapes[start:start + size]),
                                        constraint=slotwise_constraint(self.options.get("kernel_constraint"), 1))
                        for g, (start, size) in enumerate(zip(starts, self.groups))]
        self.biases = [self.add_weight(shape=(size, 1, self.units), name=named("bias", g), initializer="zeros",
                                       constraint=slotwise_constraint(self.options.get("bias_constraint"), 2))
                       for g, size in enumerate(self.groups)] if self.options["use_bias"] else []

    @property
    def kernel(self):
        """Every slot's kernel, `(k, in, out)`."""
        return self.kernels[0] if len(self.kernels) == 1 else ops.concatenate(self.kernels, axis=0)

    @property
    def bias(self):
        """Every slot's bias, `(k, 1, out)`, or None without one."""
        if not self.biases:
            return None
        return self.biases[0] if len(self.biases) == 1 else ops.concatenate(self.biases, axis=0)

    @property
    def group_weights(self) -> list[list]:
        """Each slot group's variables: its kernel, and its bias."""
        return [[kernel, *self.biases[g:g + 1]] for g, kernel in enumerate(self.kernels)]

    def slot_penalties(self) -> object:
        """Each slot's weight penalties, a `(slots,)` tensor, or 0.0 when the layer has none."""
        penalty = slot_penalty(self.options.get("kernel_regularizer"), self.kernel)
        if self.biases:
            penalty = penalty + slot_penalty(self.options.get("bias_regularizer"), self.bias)
        return penalty

    def call(self, inputs):
        if self.input_mask is not None:
            inputs = ops.multiply(inputs, self.input_mask)
        outputs = ops.matmul(inputs, self.kernel)
        return self.activation(outputs + self.bias if self.biases else outputs)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        # Given, not inferred: JAX cannot match the unknown slots of a symbolic input with the kernel's k.
        return (*input_shape[:-1], self.units)


class StackedModel(keras.Sequential):
    """The stacked model: a `Sequential` that computes its loss itself and tracks each slot's loss from the same
    per-row values.

    The loss (:meth:`compute_loss`) is the sum over slots of each slot's batch mean of `loss`, so each slot's
    gradient is what separate training gives. Each slot's running loss, logged as ``f<j>_loss``, is kept from the
    per-row losses that sum is made of (`slot_loss`), rather than by a compiled metric that would compute them a
    second time each step. Keras' own running ``loss`` is that sum over slots: it is logged too, and read by
    nothing in kerasflow (each slot's results come from its ``f<j>_`` entries).

    With `class_weights`, a ``(slots, classes)`` table, each slot's per-row losses are weighed by their class's
    weight in that slot before both (`train.class_weight`: Keras' weighted loss, whose weights differ from fold to
    fold when balanced).
    """

    def __init__(self, layers: list, loss: str | Callable, slots: int, class_weights: np.ndarray | None = None,
                 **kwargs) -> None:
        super().__init__(layers, **kwargs)
        self.slots, self.row_loss = slots, keras.losses.get(loss)
        self.class_weights = None if class_weights is None else np.asarray(class_weights, dtype="float32")
        # Kept as Keras keeps a model's running loss (by step), so each slot logs what its model alone would log;
        # Keras tracks it as one of `metrics`.
        self.slot_loss = SlotMean(self.row_loss, slots=slots, name="loss", by_step=True)

    def variable_groups(self) -> dict[str, int]:
        """Each stacked layer's variables by path, mapped to their slot group."""
        return {variable.path: g for layer in self.layers if isinstance(layer, StackedDense)
                for g, variables in enumerate(layer.group_weights) for variable in variables}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The weighted sum of every slot's per-row losses over the batch's rows: each slot's weighted batch mean,
        summed over slots, as Keras' ``sum_over_batch_size`` reduction of the per-row losses times the slots; plus
        each slot's weight penalties, as Keras adds a layer's to its model's loss.

        Compile the model with no loss. Each slot's tracked loss includes its penalties, as Keras' ``loss`` does.
        """
        rows = self.row_loss(y, y_pred)  # (slots, batch)
        if self.class_weights is not None:
            rows = rows * self.row_class_weights(y)
        penalties = self.slot_penalties()
        penalized = not isinstance(penalties, float)  # a (slots,) tensor; 0.0 when no layer has a penalty
        self.slot_loss.update_rows(rows + ops.expand_dims(penalties, -1) if penalized else rows, sample_weight)
        weighted = rows * self.slots if sample_weight is None else rows * self.slots * sample_weight
        size = ops.cast(ops.prod(ops.convert_to_tensor(ops.shape(weighted), dtype="int32")), weighted.dtype)
        loss = ops.divide_no_nan(ops.sum(weighted), size)
        return loss + ops.sum(penalties) if penalized else loss

    def slot_penalties(self) -> object:
        """Each slot's weight penalties over its layers, a `(slots,)` tensor, or 0.0 when no layer has one."""
        return sum((layer.slot_penalties() for layer in self.layers if isinstance(layer, StackedDense)), 0.0)

    def row_class_weights(self, y):
        """Each row's class weight in its slot, a `(slots, batch)` tensor, from the targets `y` as
        :func:`~kerasflow.tasks.training.train.encode_target` makes them: codes, 0/1 floats, or one-hot."""
        n_classes = self.class_weights.shape[1]
        if len(y.shape) == 2:  # class codes
            y = ops.one_hot(ops.cast(y, "int32"), n_classes)
        elif y.shape[-1] == 1:  # binary
            y = ops.concatenate([1.0 - y, y], axis=-1)
        return ops.sum(ops.cast(y, "float32") * ops.expand_dims(self.class_weights, 1), axis=-1)


ACROSS_UNITS = ("softmax", "log_softmax", "sparsemax", "glu")
"""Activations whose value at a unit depends on the layer's other units: a padding unit would change a narrower
slot's outputs, so configs with other hidden widths do not stack where one of these is hidden."""


def stack_key(spec: ExperimentSpec) -> str:
    """What configs must share to train as one stacked program: everything but their Dense layers' initializers,
    their hidden Dense layers' widths (:class:`StackedDense` pads narrower slots; not where a hidden activation
    spans the units, :data:`ACROSS_UNITS`), and their optimizer and learning rate where each slot group may have its
    own (:func:`own_optimizers`).

    Two configs with equal keys have the same layers, activations, preprocessing, folds, batch size, epochs and
    seed, so one stacked program reproduces each config's own training.
    """
    dense = [i for i, layer in enumerate(spec.model.layers) if isinstance(layer, DenseLayer)]
    hidden = dense[:-1]  # the output layer's units are the task's
    if any(str(getattr(layer, "activation", "")).lower() in ACROSS_UNITS for layer in spec.model.layers[:dense[-1]]):
        hidden = []
    layers = [layer.model_copy(update={"initializer": "", **({"units": 0} if i in hidden else {})})
              if isinstance(layer, DenseLayer) else layer for i, layer in enumerate(spec.model.layers)]
    update: dict = {"model": spec.model.model_copy(update={"layers": layers})}
    if own_optimizers(spec):
        update["train"] = spec.train.model_copy(update={"optimizer": "", "learning_rate": None})
    return spec.model_copy(update=update).model_dump_json()


def build_stacked(models: Sequence[ModelSpec], n_features: int, seeds: Sequence[int], loss: str | Callable,
                  target_scales: list[TargetScale] | None = None, groups: Sequence[int] | None = None,
                  class_weights: np.ndarray | None = None) -> StackedModel:
    """The stacked twin of :func:`kerasflow.tasks.training.models.build_model`: slot j is `models[j]` seeded with
    `seeds[j]`, rescaled by `target_scales[j]`, and trained to minimise `loss` (a Keras loss's name, or its per-row
    function with its arguments: :func:`~kerasflow.tasks.training.scoring.row_loss`), its rows weighed by
    `class_weights[j]` (:class:`StackedModel`); `groups` splits the slots into optimizer groups
    (:class:`StackedDense`).

    Slot j starts from the weights `build_model(models[j], n_features, seeds[j])` gives: that model's own.
    The models must differ only in their Dense layers' initializers and hidden widths (see :func:`stack_key`).
    """
    k = len(seeds)
    # Keras' batch axis is the slots' axis: each slot's rows are one "sample", of any number of rows.
    stack: list[keras.layers.Layer] = [keras.Input(shape=(None, n_features))]
    layers = models[0].layers
    slot_seeds = [layer_seeds(seed, len(layers)) for seed in seeds]
    widths = [n_features] * k  # each slot's own width of the activations so far
    for i, layer in enumerate(layers):
        if isinstance(layer, DenseLayer):
            units = [m.layers[i].units for m in models]
            stack.append(StackedDense(max(units), [s[i] for s in slot_seeds], layer.activation,
                                      [m.layers[i].initializer for m in models], weight_arguments(layer), groups,
                                      widths=units, input_widths=widths))
            widths = units
        elif isinstance(layer, DropoutLayer):  # one layer's draws over every slot: each slot's draws its own
            stack.append(keras.layers.Dropout(layer.rate, seed=slot_seeds[0][i]))
        elif isinstance(layer, GaussianNoiseLayer):
            stack.append(keras.layers.GaussianNoise(layer.stddev, seed=slot_seeds[0][i]))
        elif isinstance(layer, ActivationLayer):
            stack.append(keras.layers.Activation(layer.activation))
        else:
            raise TypeError(f"layer {layer.type!r} cannot be stacked; use the per-fold path")
    if target_scales is not None:
        stack.append(keras.layers.Rescaling(*slot_target_scale(target_scales), name="target_scale"))
    # All layers at once: a Sequential with an Input rebuilds itself, every layer so far, at each `add`.
    return StackedModel(stack, loss, k, class_weights, name="kerasflow_stacked")


def slot_target_scale(target_scales: Sequence[TargetScale]) -> tuple[np.ndarray, np.ndarray]:
    """Each slot's `(scale, offset)` (:data:`~kerasflow.tasks.training.models.TargetScale`) as two arrays of slots x
    1 x one an output (or one for all): each slot's row of outputs scaled by its fold's."""
    scale, offset = (np.array(values, dtype="float32").reshape(len(values), 1, -1) for values in zip(*target_scales))
    return scale, offset


def compile_stacked(model: StackedModel, spec: ExperimentSpec, steps: int = 1, steps_per_epoch: int = 1,
                    groups: Sequence[TrainSpec] = ()) -> None:
    """Compile `model` to train as `spec` says, `steps` steps per compiled call and `steps_per_epoch` an epoch (for
    the learning rate's schedule), its slots scored by the spec's primary metric besides the loss the model tracks
    itself. With `groups` (a train section per slot group, :func:`build_stacked`), each group's slots are trained
    by that section's optimizer (Keras' `MultiOptimizer`, each variable to its group's)."""
    name, (fn, finish) = spec.metric, metric_fn(spec)
    optimizers = [make_optimizer(train, steps_per_epoch) for train in groups or [spec.train]]
    optimizer = optimizers[0]
    if len(optimizers) > 1:
        group_of = model.variable_groups()
        optimizer = keras.optimizers.MultiOptimizer(lambda variable: optimizers[group_of[variable.path]])
    # Weighted: Keras hands sample weights to `weighted_metrics` only, and padding rows weigh 0.
    model.compile(optimizer=optimizer, loss=None, steps_per_execution=steps,
                  weighted_metrics=[SlotMean(fn, slots=model.slots, finish=finish, name=name,
                                             outputs=output_units(spec.model))])


def predict_slots(model: StackedModel, X: np.ndarray) -> np.ndarray:
    """A stacked model's predictions for slot-first rows `X`: every slot in each call (the model takes no fewer),
    at most `ONE_BATCH` rows of each at a time."""
    return by_chunks_of_rows(lambda chunk: model.predict_on_batch(chunk[0]), [X])[0]


def stack_slots(parts: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-slot rows as one slot-first `(k, L, ...)` table, L being the longest part, plus `(k, L)` weights: 1 for
    a slot's rows, 0 for the zero rows padding a shorter one."""
    length = max(len(part) for part in parts)
    table = np.zeros((len(parts), length) + parts[0].shape[1:], dtype=parts[0].dtype)
    weight = np.zeros((len(parts), length), dtype=np.float32)
    for j, part in enumerate(parts):
        table[j, : len(part)] = part
        weight[j, : len(part)] = 1.0
    return table, weight


class SlotView:
    """One slot of a stacked model, as Keras' EarlyStopping sees a model: its weights are the slot's slices of the
    stacked model's trainable weights (`snapshot`, taken once per epoch), and weights it restores are kept in
    `restored`."""

    def __init__(self, snapshot: Callable[[], list[np.ndarray]], index: int) -> None:
        self.snapshot, self.index = snapshot, index
        self.stop_training = False
        self.restored: list[np.ndarray] | None = None

    def get_weights(self) -> list[np.ndarray]:
        return [weight[self.index].copy() for weight in self.snapshot()]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        self.restored = weights


def trainable_values(model: keras.Model) -> list[np.ndarray]:
    """A stacked model's trainable weights (each slot-first) as arrays."""
    return [np.asarray(keras.ops.convert_to_numpy(weight)) for weight in model.trainable_weights]


class StopSlots(keras.callbacks.Callback):
    """Keras' EarlyStopping for every slot of a stacked program, each following its own ``f<j>_`` score
    (`spec.train.early_stopping`), as each slot's model alone would stop.

    A slot that stops keeps, in `final`, its weights at that epoch (its best epoch's with `restore_best_weights`).
    The program trains on until every slot has stopped: the slots are independent, so what later steps do to a
    stopped slot's weights changes no other slot, and its kept weights are the ones it ends with. From the epoch
    after its stop, its entries are taken out of the logs, so its history (and every callback after this one) ends
    where it stopped. List it first among the callbacks.
    """

    def __init__(self, spec: ExperimentSpec, slots: int) -> None:
        super().__init__()
        self.monitor = spec.train.early_stopping.monitor
        self.stoppers = [EarlyStoppingAcrossFits.from_spec(spec.train) for _ in range(slots)]
        for stopper in self.stoppers:
            stopper.on_train_begin()
        self.active = list(range(slots))
        self.final: dict[int, list[np.ndarray]] = {}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        stopped = [slot for slot in range(len(self.stoppers)) if slot not in self.active]
        for key in [key for key in logs if slot_of(key) in stopped]:
            del logs[key]
        model, cache = self.model, []

        def snapshot() -> list[np.ndarray]:
            if not cache:
                cache.append(trainable_values(model))
            return cache[0]

        name = self.monitor.removeprefix("val_")
        prefix = "val_" if self.monitor.startswith("val_") else ""
        for slot in list(self.active):
            view = SlotView(snapshot, slot)
            self.stoppers[slot].set_model(view)
            self.stoppers[slot].on_epoch_end(epoch, {self.monitor: logs.get(f"{prefix}f{slot}_{name}")})
            if view.stop_training:
                self.end(slot, view)
        if not self.active:
            model.stop_training = True

    def end(self, slot: int, view: SlotView) -> None:
        """Slot `slot` stops: keep its weights as Keras' EarlyStopping leaves them at the end of training."""
        self.stoppers[slot].set_model(view)
        self.stoppers[slot].restore()  # with restore_best_weights: hands the best epoch's weights to `view`
        self.final[slot] = view.restored if view.restored is not None else view.get_weights()
        self.active.remove(slot)

    def finish(self, model: keras.Model) -> list[np.ndarray]:
        """After training: end the slots still training, and return every slot's kept weights, slot-first."""
        weights = trainable_values(model)
        for slot in list(self.active):
            self.end(slot, SlotView(lambda: weights, slot))
        return [np.stack([self.final[slot][v] for slot in range(len(self.stoppers))]) for v in range(len(weights))]


def slot_of(key: str) -> int | None:
    """The slot a stacked model's log entry belongs to: `f3_loss` and `val_f3_loss` to slot 3; None for others.

    Examples
    --------
    >>> slot_of("val_f3_loss"), slot_of("f12_accuracy"), slot_of("loss"), slot_of("learning_rate")
    (3, 12, None, None)
    """
    match = SLOT_KEY.fullmatch(key)
    return int(match.group(1)) if match else None


SLOT_KEY = re.compile(r"(?:val_)?f(\d+)_.+")


def fit_stacked(specs: Sequence[ExperimentSpec], folds: list[FoldData],
                callbacks: Sequence[keras.callbacks.Callback] = (), initial_epoch: int = 0) -> list[list[FoldResult]]:
    """Train one model per config and fold, all as one stacked program; score and predict each on its fold's
    held-out rows.

    `specs` must share a :func:`stack_key`. Returns the results per config, each a list over the folds. Fold f's
    slots are dealt its rows in the order the per-fold path deals them to fold f's own model (both seeded with
    the spec's seed + f), so every config of a stacked grid trains as it would alone; a dropout or noise layer's
    draws aside, which are one layer's over all slots, not each slot's model's own (docs/design.md, "Seeds").
    """
    spec, n_configs, n_folds = specs[0], len(specs), len(folds)
    key = stack_key(spec)
    if any(stack_key(other) != key for other in specs[1:]):
        raise ValueError("configs stacked into one program may differ only in their Dense layers' initializers "
                         "and hidden widths, and their optimizers")
    groups = slot_groups(specs, n_folds)
    k = n_configs * n_folds
    # One table per config, repeated: slot c * n_folds + f holds fold f's rows.
    X, _ = stack_slots([f.X_train for f in folds] * n_configs)
    y, _ = stack_slots([f.y_train for f in folds] * n_configs)
    # Scored each epoch: the held-out rows, or where a callback follows val_ scores, each fold's validation split.
    validated = folds[0].validation is not None
    X_val, w_val = stack_slots([f.validation[0] if validated else f.X_test for f in folds] * n_configs)
    y_val, _ = stack_slots([f.validation[1] if validated else f.y_test for f in folds] * n_configs)

    scales = None if folds[0].target_scale is None else [f.target_scale for f in folds] * n_configs
    slot_scale = None if scales is None else slot_target_scale(scales)  # the loss's, in scaled units
    fold_seeds = [spec.train.seed + f for f in range(n_folds)] * n_configs
    class_weights = None if folds[0].class_weight is None else np.stack([f.class_weight for f in folds] * n_configs)
    model = build_stacked([s.model for s in specs for _ in folds], X.shape[-1], fold_seeds,
                          row_loss(spec, slot_scale), scales, [slots for _, slots in groups], class_weights)
    if folds[0].initial_weights is not None:  # a continued experiment: every slot starts from the saved model's
        for variable, value in zip(model.weights, folds[0].initial_weights):
            variable.assign(np.broadcast_to(value.reshape(variable.shape[1:]), variable.shape))
    scores = row_scores(spec, slot_scale)
    plan = plan_epochs([len(f.X_train) for f in folds] * n_configs, fold_seeds, spec.train.epochs,
                       spec.train.batch_size)
    compile_stacked(model, spec, steps_per_execution(X.shape[1], spec.train.batch_size), plan.steps,
                    [train for train, _ in groups])
    # Early stopping first: a stopped slot's entries leave the logs before any other callback reads them.
    stopping = [StopSlots(spec, k)] if spec.train.early_stopping is not None else []
    trained = fit_epochs(model, X, y, plan, slotted=True, held_out=HeldOut(X_val, y_val, scores, w_val),
                         callbacks=[*stopping, *schedule_callbacks(spec.train), *callbacks],
                         initial_epoch=initial_epoch)
    predictions = None if validated else trained.predictions
    if stopping:  # each slot ends with the weights it stopped with
        for variable, value in zip(model.trainable_weights, stopping[0].finish(model)):
            variable.assign(value)
        predictions = None
    if predictions is None:
        predictions = predict_slots(model, stack_slots([f.X_test for f in folds] * n_configs)[0])

    results: list[list[FoldResult]] = [[] for _ in specs]
    for j in range(k):
        fold = folds[j % n_folds]
        n_test = len(fold.X_test)
        outputs = predictions[j, :n_test]  # slot j's first n_test rows are its fold's held-out rows, in order
        # Empty when a resumed run had no epoch left to train.
        fold_history = {f"{prefix}{metric}": trained.history.get(f"{prefix}f{j}_{metric}", [])
                        for metric in ("loss", spec.metric) for prefix in ("", "val_")}
        if "learning_rate" in trained.history:  # one rate for every slot
            fold_history["learning_rate"] = trained.history["learning_rate"]
        config = specs[j // n_folds]
        result = FoldResult(score=score(config, fold.y_test, outputs), history=fold_history,
                            n_train=fold.n_train, n_test=n_test)
        results[j // n_folds].append(with_predictions(config, result, fold, outputs))
    return results
