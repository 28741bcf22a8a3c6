"""Keras models from the spec. Only `keras` is used (never `tf.*`), so every Keras backend runs them."""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from kerasflow.tasks.config.errors import ParamsError
from kerasflow.tasks.config.keras_names import keras_class
from kerasflow.tasks.config.layers import (
    PRETRAINED_BASES,
    RECURRENT_LAYERS,
    ActivationLayer,
    AlphaDropoutLayer,
    AveragePooling2DLayer,
    BatchNormalizationLayer,
    BidirectionalLayer,
    Conv1DLayer,
    Conv2DLayer,
    ConvLSTM2DLayer,
    DenseLayer,
    DropoutLayer,
    EmbeddingLayer,
    FlattenLayer,
    GaussianDropoutLayer,
    GaussianNoiseLayer,
    GlobalAveragePooling1DLayer,
    GlobalAveragePooling2DLayer,
    GlobalMaxPooling1DLayer,
    GlobalMaxPooling2DLayer,
    GRULayer,
    LayerSpec,
    LSTMLayer,
    MaxPooling1DLayer,
    MaxPooling2DLayer,
    PretrainedLayer,
    RateDropout,
    RepeatVectorLayer,
    RescalingLayer,
    ReshapeLayer,
    SeparableConv2DLayer,
    SimpleRNNLayer,
    SpatialDropout1DLayer,
    SpatialDropout2DLayer,
    TimeDistributedLayer,
    output_shape,
)
from kerasflow.tasks.config.schema import (
    AugmentSpec,
    CosineSchedule,
    ExperimentSpec,
    ExponentialSchedule,
    InverseTimeSchedule,
    ModelSpec,
    PiecewiseSchedule,
    PreprocessSpec,
    ReduceOnPlateauSchedule,
    StepSchedule,
    TrainSpec,
    monitor_mode,
)
from kerasflow.tasks.config.section import Configured, Section
from kerasflow.tasks.training.fit import AcrossFits
from kerasflow.tasks.training.scoring import row_loss

TargetScale = tuple[float, float] | tuple[tuple[float, ...], tuple[float, ...]]
"""`(scale, offset)` of a model's output: `prediction = output * scale + offset`; one of each an output where there
are several target columns (:func:`fit_target_scale`)."""


def layer_seeds(seed: int, n: int) -> list[int]:
    """`n` independent seeds derived from the run's `seed`, one per layer.

    Keras draws the seed of an unseeded initializer or dropout layer from Python's global `random`, which
    other threads in the process (Prefect's, Ray's) draw from too: the same `seed` could then give other
    weights from run to run. Every random layer therefore gets an explicit seed.
    """
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n, dtype=np.uint32) % 2**31]


def seeded_initializer(name: str, seed: int) -> keras.initializers.Initializer:
    """The named Keras initializer with an explicit seed (initializers that draw nothing are returned as is)."""
    initializer = keras.initializers.get(name)
    config = initializer.get_config()
    return type(initializer).from_config({**config, "seed": seed}) if "seed" in config else initializer


def keras_object(kind: str, value: str | Configured | None) -> object | None:
    """The Keras constraint or regularizer (`kind`: "constraints", "regularizers") a layer spec names, or None."""
    if value is None:
        return None
    name, arguments = (value, {}) if isinstance(value, str) else (value.name, value.arguments)
    return keras_class(kind, name)(**arguments)


def weight_arguments(spec: Section) -> dict[str, object]:
    """A layer spec's constraints, penalties and `use_bias` (:class:`BiasWeights`, :class:`Weights`), as Keras layer
    arguments."""
    arguments: dict[str, object] = {}
    for field, value in spec:
        if field.endswith("_constraint"):
            arguments[field] = keras_object("constraints", value)
        elif field.endswith("_regularizer"):
            arguments[field] = keras_object("regularizers", value)
        elif field == "use_bias":
            arguments[field] = value
    return arguments


def make_layer(spec: LayerSpec, seed: int, num_words: int | None = None) -> keras.layers.Layer:
    """One Keras layer from its spec; `seed` fixes its initial weights and dropout masks.

    `num_words` (the experiment's preprocess.text.num_words) is the `input_dim` of an embedding that gives none.
    """
    if isinstance(spec, DenseLayer):
        return keras.layers.Dense(spec.units, activation=spec.activation,
                                  kernel_initializer=seeded_initializer(spec.initializer, seed),
                                  **weight_arguments(spec))
    if isinstance(spec, DropoutLayer):
        return keras.layers.Dropout(spec.rate, seed=seed)
    if isinstance(spec, GaussianNoiseLayer):
        return keras.layers.GaussianNoise(spec.stddev, seed=seed)
    if isinstance(spec, RateDropout):
        dropout = {SpatialDropout1DLayer: keras.layers.SpatialDropout1D,
                   SpatialDropout2DLayer: keras.layers.SpatialDropout2D,
                   GaussianDropoutLayer: keras.layers.GaussianDropout, AlphaDropoutLayer: keras.layers.AlphaDropout}
        return dropout[type(spec)](spec.rate, seed=seed)
    if isinstance(spec, ActivationLayer):
        return keras.layers.Activation(spec.activation)
    if isinstance(spec, BatchNormalizationLayer):
        return keras.layers.BatchNormalization(momentum=spec.momentum, epsilon=spec.epsilon, center=spec.center,
                                               scale=spec.scale)
    if isinstance(spec, Conv2DLayer):
        return keras.layers.Conv2D(spec.filters, spec.kernel_size, strides=spec.strides, activation=spec.activation,
                                   kernel_initializer=seeded_initializer(spec.initializer, seed), padding=spec.padding,
                                   **weight_arguments(spec))
    if isinstance(spec, SeparableConv2DLayer):
        # Its two kernels from seeds of their own: one seed would start them from the same draws.
        return keras.layers.SeparableConv2D(
            spec.filters, spec.kernel_size, strides=spec.strides, padding=spec.padding,
            depth_multiplier=spec.depth_multiplier, activation=spec.activation,
            depthwise_initializer=seeded_initializer(spec.initializer, seed),
            pointwise_initializer=seeded_initializer(spec.initializer, seed + 1), **weight_arguments(spec))
    if isinstance(spec, RescalingLayer):
        return keras.layers.Rescaling(spec.scale, spec.offset)
    if isinstance(spec, MaxPooling2DLayer):
        return keras.layers.MaxPooling2D(spec.pool_size, strides=spec.strides, padding=spec.padding)
    if isinstance(spec, AveragePooling2DLayer):
        return keras.layers.AveragePooling2D(spec.pool_size, strides=spec.strides, padding=spec.padding)
    if isinstance(spec, GlobalAveragePooling2DLayer):
        return keras.layers.GlobalAveragePooling2D()
    if isinstance(spec, GlobalMaxPooling2DLayer):
        return keras.layers.GlobalMaxPooling2D()
    if isinstance(spec, Conv1DLayer):
        return keras.layers.Conv1D(spec.filters, spec.kernel_size, activation=spec.activation,
                                   kernel_initializer=seeded_initializer(spec.initializer, seed), padding=spec.padding,
                                   **weight_arguments(spec))
    if isinstance(spec, MaxPooling1DLayer):
        return keras.layers.MaxPooling1D(spec.pool_size)
    if isinstance(spec, GlobalMaxPooling1DLayer):
        return keras.layers.GlobalMaxPooling1D()
    if isinstance(spec, GlobalAveragePooling1DLayer):
        return keras.layers.GlobalAveragePooling1D()
    if isinstance(spec, FlattenLayer):
        return keras.layers.Flatten()
    if isinstance(spec, RepeatVectorLayer):
        return keras.layers.RepeatVector(spec.n)
    if isinstance(spec, TimeDistributedLayer):
        return keras.layers.TimeDistributed(make_layer(spec.layer, seed))
    if isinstance(spec, ReshapeLayer):
        return keras.layers.Reshape(spec.target_shape)
    if isinstance(spec, (LSTMLayer, GRULayer, SimpleRNNLayer, ConvLSTM2DLayer)):
        return recurrent_layer(spec, seed)
    if isinstance(spec, BidirectionalLayer):
        # The backward layer drawn from seeds of its own: a copy of the forward one would start from its weights.
        return keras.layers.Bidirectional(recurrent_layer(spec.layer, seed), merge_mode=spec.merge_mode,
                                          backward_layer=recurrent_layer(spec.layer, seed + 2, go_backwards=True))
    if isinstance(spec, EmbeddingLayer):
        input_dim = spec.input_dim or num_words
        if input_dim is None:
            raise ValueError("an embedding layer needs `input_dim`, or an experiment whose preprocess.text sets "
                             "num_words. Received: neither")
        return keras.layers.Embedding(input_dim, spec.output_dim,
                                      embeddings_initializer=seeded_initializer("uniform", seed),
                                      trainable=spec.trainable, **weight_arguments(spec))
    raise TypeError(f"no Keras layer for spec {type(spec).__name__}")


def pretrained_base(spec: PretrainedLayer, input_shape: tuple[int, ...], seed: int) -> keras.Model:
    """The `keras.applications` base `spec` names, without its top, taking `input_shape`: its weights read from
    `spec.weights` (else drawn from `seed`, every initializer seeded), frozen up to `spec.trainable_from`.

    Raises :class:`ParamsError` naming the layer's key for an input the base cannot take (too small, not 3-D), a
    missing weights file or one of another architecture, and an unknown `trainable_from`.
    """
    name = PRETRAINED_BASES[spec.name]
    try:
        base = getattr(keras.applications, name)(include_top=False, weights=None, input_shape=tuple(input_shape),
                                                 pooling=spec.pooling)
    except ValueError as exc:
        raise ParamsError(f"{spec.key('name')}: {spec.name} cannot take the images the layers before it give, of "
                          f"shape {tuple(input_shape)}: {exc}") from None
    if spec.weights is None:
        base = keras.models.clone_model(base, clone_function=lambda layer: seeded_copy(layer, seed))
    else:
        load_base_weights(base, spec)
    if spec.trainable_from is not None:
        names = [layer.name for layer in base.layers]
        if spec.trainable_from not in names:
            hint = difflib.get_close_matches(spec.trainable_from, names, n=1)
            raise ParamsError(f"{spec.key('trainable_from')}: {spec.name} has no layer {spec.trainable_from!r}"
                              + (f"; did you mean {hint[0]!r}?" if hint else "") + f" Its layers: {names[1]} ... "
                              f"{names[-1]}. Received: {spec.trainable_from!r}")
        for layer in base.layers[:names.index(spec.trainable_from)]:
            layer.trainable = False
    else:
        base.trainable = spec.trainable
    return base


def seeded_copy(layer: keras.layers.Layer, seed: int) -> keras.layers.Layer:
    """A fresh copy of `layer` whose initializers draw from seeds derived from `seed` and the layer's name (Keras'
    applications leave them unseeded: drawn from the process's global random state)."""
    config = layer.get_config()
    for key, value in config.items():
        if key.endswith("_initializer") and isinstance(value, dict) and "seed" in value.get("config", {}):
            derived = np.random.SeedSequence([seed, *layer.name.encode()]).generate_state(1)[0] % 2**31
            config[key] = {**value, "config": {**value["config"], "seed": int(derived)}}
    return type(layer).from_config(config)


def load_base_weights(base: keras.Model, spec: PretrainedLayer) -> None:
    """Read `spec.weights` into `base`, refusing a missing file or one saved from another architecture."""
    path = Path(spec.weights)
    if not path.is_file():
        raise ParamsError(f"{spec.key('weights')}: {path}: file not found; save the base's weights once where "
                          f"they can be downloaded: keras.applications.{PRETRAINED_BASES[spec.name]}(include_top="
                          f"False).save_weights('{path.name}'), and copy the file here (or `weights: null` to train "
                          f"it from scratch)")
    try:
        with warnings.catch_warnings():  # Keras warns once per layer it cannot fill before it raises
            warnings.simplefilter("ignore")
            base.load_weights(path)
    except (ValueError, OSError) as exc:
        problem = " ".join(str(exc).split())[:300]
        raise ParamsError(f"{spec.key('weights')}: {path} does not hold the weights of {spec.name} without its top "
                          f"for this input: {problem}") from None


def recurrent_layer(spec: LSTMLayer | GRULayer | SimpleRNNLayer | ConvLSTM2DLayer, seed: int,
                    go_backwards: bool = False) -> keras.layers.Layer:
    """An LSTM, GRU, SimpleRNN or ConvLSTM2D layer, its kernels and dropout masks seeded from `seed` (and
    `seed + 1`)."""
    options = {"activation": spec.activation, "return_sequences": spec.return_sequences, "dropout": spec.dropout,
               "recurrent_dropout": spec.recurrent_dropout, "seed": seed, "go_backwards": go_backwards,
               "kernel_initializer": seeded_initializer("glorot_uniform", seed),
               "recurrent_initializer": seeded_initializer("orthogonal", seed + 1), **weight_arguments(spec)}
    if isinstance(spec, ConvLSTM2DLayer):
        return keras.layers.ConvLSTM2D(spec.filters, spec.kernel_size, strides=spec.strides, padding=spec.padding,
                                       **options)
    if isinstance(spec, LSTMLayer):
        return keras.layers.LSTM(spec.units, stateful=spec.stateful, **options)
    if isinstance(spec, GRULayer):
        return keras.layers.GRU(spec.units, **options)
    return keras.layers.SimpleRNN(spec.units, **options)


def build_model(spec: ModelSpec, n_features: int, seed: int,
                target_scale: TargetScale | None = None) -> keras.Sequential:
    """A `Sequential` model taking rows of `n_features` values; the same `seed` gives the same initial weights.

    With `target_scale` the model ends in a fixed `Rescaling(scale, offset)`: the layers before it learn the target
    in scaled units, by a loss taken in those units (:func:`make_loss`), and the model predicts (and is scored and
    saved) in the data's units. An experiment's preprocess.augment adds its layers right after the model's first
    image layer (:func:`image_layers`). A stateful model takes one row per batch; a model that starts with an
    embedding takes rows of integer ids (a text's `maxlen` token ids).
    """
    batch_size = 1 if spec.stateful else None
    dtype = "int32" if isinstance(spec.layers[0], EmbeddingLayer) else "float32"
    model = keras.Sequential([keras.Input(shape=(n_features,), batch_size=batch_size, dtype=dtype)],
                             name="kerasflow_model")
    for i, (layer, layer_seed) in enumerate(zip(spec.layers, layer_seeds(seed, len(spec.layers)))):
        if isinstance(layer, PretrainedLayer):  # built for the shape it takes
            model.add(pretrained_base(layer, model.output_shape[1:], layer_seed))
        else:
            model.add(make_layer(layer, layer_seed, spec.num_words))
        if i == spec.image_at and spec.augment is not None:
            for augmentation in image_layers(spec.augment, model.output_shape[1:], seed):
                model.add(augmentation)
    if target_scale is not None:
        model.add(keras.layers.Rescaling(*target_scale, name="target_scale"))
    return model


FEATUREWISE = "featurewise_standardization"
ZCA = "zca_whitening"


def image_layers(spec: AugmentSpec, image_shape: tuple[int, ...], seed: int) -> list[keras.layers.Layer]:
    """The layers of an image experiment's preprocess.augment, in ImageDataGenerator's order: the random
    transformations (Keras' random layers, identity outside training, each seeded from `seed`), then the featurewise
    standardisation and ZCA whitening, whose statistics :func:`fit_image_statistics` sets from training images."""
    layers = random_image_layers(spec, seed)
    if spec.featurewise:
        layers.append(keras.layers.Normalization(axis=-1, name=FEATUREWISE))
    if spec.zca_whitening:
        size = int(np.prod(image_shape))
        layers += [keras.layers.Reshape((size,)), keras.layers.Dense(size, use_bias=False, trainable=False, name=ZCA),
                   keras.layers.Reshape(tuple(image_shape))]
    return layers


def random_image_layers(spec: AugmentSpec, seed: int) -> list[keras.layers.Layer]:
    """Keras' random layers for the augmentation's flip, rotation, shift and zoom, each seeded from `seed` (so the
    same params give the same augmented batches); identity outside training."""
    flip, rotation, shift, zoom = layer_seeds(seed + 1, 4)  # not the model layers' own seeds
    layers: list[keras.layers.Layer] = []
    if spec.flip != "none":
        layers.append(keras.layers.RandomFlip(spec.flip, seed=flip))
    if spec.rotation:
        layers.append(keras.layers.RandomRotation(spec.rotation, seed=rotation))
    if spec.shift:
        layers.append(keras.layers.RandomTranslation(spec.shift, spec.shift, seed=shift))
    if spec.zoom:
        layers.append(keras.layers.RandomZoom(spec.zoom, seed=zoom))
    return layers


def augmented_examples(spec: AugmentSpec, images: np.ndarray, versions: int, seed: int) -> np.ndarray:
    """`versions` augmented copies of each of `images` (n, height, width, channels), as training batches draw them
    from `seed`: an array (n, versions, height, width, channels), for the report to show."""
    augment = keras.Sequential(random_image_layers(spec, seed))
    batch = images.astype(np.float32)
    return np.stack([np.asarray(augment(batch, training=True)) for _ in range(versions)], axis=1)


def fit_image_statistics(model: keras.Model, spec: AugmentSpec, images: np.ndarray) -> None:
    """Set `model`'s featurewise statistics from `images` (a fold's training images, before any augmentation), as
    ImageDataGenerator.fit computes them: each channel's mean (centring; always with ZCA whitening) and standard
    deviation, then the ZCA matrix of the standardised, flattened images."""
    normalization = model.get_layer(FEATUREWISE)
    images = images.astype(np.float64)
    axes = tuple(range(images.ndim - 1))
    centre = spec.featurewise_center or spec.zca_whitening
    mean = images.mean(axis=axes) if centre else np.zeros(images.shape[-1])
    variance = images.var(axis=axes) if spec.featurewise_std_normalization else np.ones(images.shape[-1])
    count = normalization.get_weights()[2]
    normalization.set_weights([mean.reshape(normalization.mean.shape[-1:]),
                               variance.reshape(normalization.variance.shape[-1:]), count])
    normalization.finalize_state()
    if spec.zca_whitening:
        flat = ((images - mean) / np.sqrt(np.maximum(variance, 1e-7) if spec.featurewise_std_normalization
                                          else 1.0)).reshape(len(images), -1)
        u, s, _ = np.linalg.svd(flat.T @ flat / len(flat))
        model.get_layer(ZCA).kernel.assign((u / np.sqrt(s + spec.zca_epsilon)) @ u.T)


def set_model_weights(model: keras.Model, weights: list[np.ndarray]) -> None:
    """`model.set_weights(weights)`, then its featurewise Normalization layer's state finalised from its weights, as
    loading a saved model does: that layer computes with tensors derived from them."""
    model.set_weights(weights)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()


def fit_target_scale(spec: PreprocessSpec, y: np.ndarray, columns: int = 1) -> TargetScale | None:
    """`(scale, offset)` mapping the scaled target back to `y`'s units (`y = scaled * scale + offset`), when
    `spec.scale_target` asks for it; fitted like the features' `scale` (min-max or standard). Each of several target
    columns (`columns` > 1: `y`'s columns are theirs, step-major for a multi-step forecast) has its own, as tuples
    of one an output: their units differ; a multi-step forecast's steps share their target's.

    Examples
    --------
    >>> spec = PreprocessSpec(scale="minmax", scale_target=True)
    >>> fit_target_scale(spec, np.array([2.0, 4.0, 6.0]))
    (4.0, 2.0)
    >>> fit_target_scale(spec, np.array([[2.0, 10.0], [6.0, 30.0]]), columns=2)
    ((4.0, 20.0), (2.0, 10.0))
    >>> fit_target_scale(spec, np.array([[2.0, 10.0, 4.0, 20.0], [6.0, 30.0, 8.0, 40.0]]), columns=2)  # 2 steps
    ((6.0, 30.0, 6.0, 30.0), (2.0, 10.0, 2.0, 10.0))
    """
    if not spec.scale_target:
        return None
    outputs = y.shape[1] if y.ndim == 2 else 1
    axis = 0 if columns > 1 else None
    if columns > 1:  # a row a step of the targets: their values at every step pooled
        y = y.reshape(-1, columns)
    if spec.scale == "minmax":  # the bounds as float64 before the difference: a float32 one rounds it
        low, high = np.min(y, axis=axis).astype(np.float64), np.max(y, axis=axis).astype(np.float64)
        scale, offset = high - low, low
    else:
        scale, offset = np.std(y, axis=axis), np.mean(y, axis=axis)
    scale = np.where(scale == 0, 1.0, scale)
    if columns > 1:  # each target's for each step
        steps = outputs // columns
        return tuple(float(v) for v in np.tile(scale, steps)), tuple(float(v) for v in np.tile(offset, steps))
    return float(scale), float(offset)


class RowLoss(keras.losses.Loss):
    """A loss from its per-row function, reduced as Keras reduces its named losses (the mean over the batch)."""

    def __init__(self, fn: Callable, name: str) -> None:
        super().__init__(name=name)
        self.fn = fn

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred)


def make_loss(spec: ExperimentSpec, target_scale: TargetScale | None = None) -> str | keras.losses.Loss:
    """What a model is compiled with: the loss's name, or its Keras class built with its arguments (`train.loss:
    {name: categorical_crossentropy, label_smoothing: 0.1}`); for a model ending in its fixed rescaling
    (`target_scale`), the loss in scaled units (:func:`~kerasflow.tasks.training.scoring.row_loss`)."""
    if target_scale is not None:
        return RowLoss(row_loss(spec, target_scale), name=spec.loss)
    if not spec.loss_arguments:
        return spec.loss
    return keras_class("losses", spec.loss)(**spec.loss_arguments)


def make_optimizer(spec: TrainSpec, steps_per_epoch: int = 1) -> keras.optimizers.Optimizer:
    """The optimizer `spec` names, with its arguments and its learning rate's schedule (:func:`learning_rate`);
    `steps_per_epoch` (batches an epoch) turns a schedule's epochs into the optimizer's steps."""
    optimizer_class = type(keras.optimizers.get(spec.optimizer_name))
    arguments = spec.optimizer_arguments
    rate = arguments.get("learning_rate", float(keras.ops.convert_to_numpy(optimizer_class().learning_rate)))
    arguments["learning_rate"] = learning_rate(spec, float(rate), steps_per_epoch)
    return optimizer_class(**arguments)


def learning_rate(spec: TrainSpec, rate: float,
                  steps_per_epoch: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """`rate`, or the schedule `spec` gives it, in optimizer steps. The books' `decay` is the inverse-time schedule
    it meant in Keras 1/2: `rate / (1 + decay * step)`. reduce_on_plateau is a callback (:func:`schedule_callbacks`),
    not a schedule."""
    schedules, schedule = keras.optimizers.schedules, spec.lr_schedule
    if spec.decay:
        return schedules.InverseTimeDecay(rate, decay_steps=1, decay_rate=spec.decay)
    if isinstance(schedule, (InverseTimeSchedule, ExponentialSchedule)):
        per_epoch = schedule.per == "epoch"
        decay = schedules.InverseTimeDecay if isinstance(schedule, InverseTimeSchedule) else schedules.ExponentialDecay
        return decay(rate, decay_steps=schedule.every * (steps_per_epoch if per_epoch else 1),
                     decay_rate=schedule.decay_rate, staircase=per_epoch)
    if isinstance(schedule, StepSchedule):
        return schedules.ExponentialDecay(rate, decay_steps=schedule.every * steps_per_epoch,
                                          decay_rate=schedule.factor, staircase=True)
    if isinstance(schedule, PiecewiseSchedule):  # Keras keeps a value up to and including its boundary's step
        return schedules.PiecewiseConstantDecay([epoch * steps_per_epoch - 1 for epoch in schedule.boundaries],
                                                schedule.values)
    if isinstance(schedule, CosineSchedule):
        return schedules.CosineDecay(rate, decay_steps=spec.epochs * steps_per_epoch, alpha=schedule.alpha)
    return rate


class RecordLearningRate(keras.callbacks.Callback):
    """Logs each epoch's learning rate as ``learning_rate``: the rate the epoch started with (a per-step schedule
    moves on within the epoch). Last among the callbacks, so that its value is the one logged."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = self.rate


class ReduceOnPlateauAcrossFits(AcrossFits, keras.callbacks.ReduceLROnPlateau):
    """Keras' ReduceLROnPlateau for a training fed in several `fit` calls (`fit_epochs`): its best score and its
    count of epochs without improvement are reset at the first call's start only, not at each call's."""


def schedule_callbacks(spec: TrainSpec) -> list[keras.callbacks.Callback]:
    """The callbacks a training needs for its learning rate: reduce_on_plateau's, and the rate's record when it
    changes as it trains; put them after the callbacks that log the scores they read."""
    schedule = spec.lr_schedule
    callbacks: list[keras.callbacks.Callback] = []
    if isinstance(schedule, ReduceOnPlateauSchedule):
        callbacks.append(ReduceOnPlateauAcrossFits(monitor=schedule.monitor, mode=monitor_mode(schedule.monitor),
                                                   factor=schedule.factor, patience=schedule.patience,
                                                   min_delta=schedule.min_delta, min_lr=schedule.min_lr, verbose=0))
    if spec.scheduled:
        callbacks.append(RecordLearningRate())
    return callbacks


def output_units(spec: ModelSpec) -> int | None:
    """What the model predicts per row: the width of its output, followed through its layers' shapes (a flatten of a
    time-distributed Dense layer's steps gives its units times the steps, a flatten of feature maps their size);
    where a shape is not known before the data is (an embedding's, a pretrained base's), the units of the last Dense
    or recurrent layer.

    Examples
    --------
    >>> output_units(ModelSpec.model_validate({"layers": [
    ...     {"type": "reshape", "target_shape": [3, 1]}, {"type": "lstm", "units": 8},
    ...     {"type": "repeat_vector", "n": 2}, {"type": "lstm", "units": 8, "return_sequences": True},
    ...     {"type": "time_distributed", "layer": {"type": "dense", "units": 1}}, {"type": "flatten"},
    ...     {"type": "dropout", "rate": 0.1}]}))
    2
    >>> output_units(ModelSpec.model_validate({"layers": [
    ...     {"type": "reshape", "target_shape": [3, 1]}, {"type": "dense", "units": 1}, {"type": "flatten"}]}))
    3
    >>> output_units(ModelSpec.model_validate({"layers": [
    ...     {"type": "reshape", "target_shape": [4, 1]}, {"type": "conv1d", "filters": 4, "kernel_size": 2,
    ...     "padding": "same"}, {"type": "lstm", "units": 8, "return_sequences": True},
    ...     {"type": "time_distributed", "layer": {"type": "dense", "units": 1}}, {"type": "flatten"}]}))
    4
    """
    shape: list[int | None] = [None]  # the axes besides the batch's; None where not known yet
    for layer in spec.layers:
        shape = output_shape(layer, shape)
    if len(shape) == 1 and shape[0] is not None:
        return shape[0]
    for layer in reversed(spec.layers):
        if isinstance(layer, (DenseLayer, *RECURRENT_LAYERS)):
            return layer.units
    return None
