"""Models from the spec: the run's seed alone fixes the initial weights."""

from __future__ import annotations

import math
import random
import threading

import keras
import numpy as np
import pytest

from kerasflow.tasks.config.schema import ModelSpec, TrainSpec
from kerasflow.tasks.training.models import (
    build_model,
    layer_seeds,
    learning_rate,
    make_optimizer,
    output_units,
    seeded_initializer,
)


def _weights(model: keras.Model) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


SPEC = ModelSpec.model_validate({"layers": [
    {"type": "dense", "units": 8, "activation": "relu", "initializer": "he_normal"},
    {"type": "dropout", "rate": 0.2},
    {"type": "dense", "units": 3, "activation": "softmax"},
]})


def test_same_seed_same_weights_even_while_another_thread_draws_from_global_random():
    """Keras seeds unseeded layers from Python's global `random`; Prefect's threads draw from it too."""
    stop = threading.Event()

    def draw() -> None:
        while not stop.is_set():
            random.random()

    thread = threading.Thread(target=draw, daemon=True)
    thread.start()
    try:
        first = _weights(build_model(SPEC, 4, seed=3))
        random.seed(12345)  # a different global state changes nothing either
        second = _weights(build_model(SPEC, 4, seed=3))
    finally:
        stop.set()
        thread.join()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_another_seed_gives_other_weights_and_layers_get_independent_seeds():
    a, b = _weights(build_model(SPEC, 4, seed=3)), _weights(build_model(SPEC, 4, seed=4))
    assert not np.allclose(a[0], b[0])
    seeds = layer_seeds(3, 10)
    assert len(set(seeds)) == 10 and all(0 <= s < 2**31 for s in seeds)
    assert layer_seeds(3, 2) == seeds[:2]  # adding a layer keeps the earlier layers' seeds


def test_seeded_initializer_keeps_the_initializers_own_settings():
    initializer = seeded_initializer("random_uniform", 5)
    assert initializer.get_config()["seed"] == 5 and initializer.get_config()["maxval"] == 0.05
    assert seeded_initializer("zeros", 5).get_config() == {}


def test_an_optimizer_takes_its_keras_arguments_and_the_books_decay_decays_per_step():
    spec = TrainSpec.model_validate({"optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.8, "nesterov": True,
                                                   "decay": 0.01}, "epochs": 1, "batch_size": 1})
    optimizer = make_optimizer(spec)
    assert isinstance(optimizer, keras.optimizers.SGD) and optimizer.momentum == 0.8 and optimizer.nesterov
    weight = keras.Variable(np.ones(3, dtype="float32"))
    for _ in range(10):
        optimizer.apply_gradients([(keras.ops.ones(3), weight)])
    # Keras 1/2: lr_t = lr / (1 + decay * iterations), counted in batches.
    assert float(optimizer.learning_rate) == np.float32(0.1 / (1 + 0.01 * 10))
    plain = make_optimizer(TrainSpec.model_validate({"optimizer": "rmsprop", "learning_rate": 0.002, "epochs": 1,
                                                     "batch_size": 1}))
    assert isinstance(plain, keras.optimizers.RMSprop) and float(plain.learning_rate) == np.float32(0.002)


def test_gradient_clipping_by_norm_is_not_stacked():
    """A stacked kernel's norm would mix the slots: clipnorm trains the folds one by one; clipvalue stacks."""
    def train(**arguments):
        return TrainSpec.model_validate({"optimizer": {"name": "adam", **arguments}, "epochs": 1, "batch_size": 1})

    assert not train(clipnorm=1.0).stackable and not train(global_clipnorm=1.0).stackable
    assert train(clipvalue=0.5).stackable and train(weight_decay=0.01).stackable


def test_layers_take_the_books_constraints_penalties_and_bias_option():
    spec = ModelSpec.model_validate({"layers": [
        {"type": "dense", "units": 4, "kernel_constraint": {"name": "max_norm", "max_value": 0.1},
         "kernel_regularizer": {"name": "l1_l2", "l1": 0.01, "l2": 0.02}, "use_bias": False},
        {"type": "reshape", "target_shape": [4, 1]},
        {"type": "lstm", "units": 2, "recurrent_constraint": "unit_norm", "bias_regularizer": "l2"},
        {"type": "dense", "units": 1, "kernel_constraint": "non_neg"}]})
    model = build_model(spec, n_features=3, seed=1)
    dense, lstm, out = model.layers[0], model.layers[2], model.layers[3]
    assert dense.bias is None and dense.kernel_regularizer.get_config() == {"l1": 0.01, "l2": 0.02}
    assert isinstance(lstm.cell.recurrent_constraint, keras.constraints.UnitNorm)
    assert isinstance(out.kernel_constraint, keras.constraints.NonNeg)
    # The constraint binds after each update; the penalties are in the model's loss.
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    model.train_on_batch(np.ones((8, 3), dtype="float32") * 10, np.ones((8, 1), dtype="float32") * 100)
    norms = np.linalg.norm(keras.ops.convert_to_numpy(dense.kernel), axis=0)
    assert np.all(norms <= 0.1 + 1e-6) and len(model.losses) == 2


def test_the_books_other_layers_build_and_train():
    """An image path (strided same-padded convolution, batch normalization, a separate activation, average and
    global pooling), a sequence path (a bidirectional GRU feeding a SimpleRNN) and a video path (each frame through
    a time-distributed convolution, pooling and flatten, then an LSTM over the frames), each one training step."""
    image = ModelSpec.model_validate({"layers": [
        {"type": "reshape", "target_shape": [8, 8, 1]},
        {"type": "conv2d", "filters": 4, "kernel_size": 3, "strides": 2, "padding": "same", "activation": "linear"},
        {"type": "batch_normalization"}, {"type": "activation", "activation": "relu"},
        {"type": "average_pooling2d", "pool_size": 2}, {"type": "global_average_pooling2d"},
        {"type": "dense", "units": 3, "activation": "softmax"}]})
    sequence = ModelSpec.model_validate({"layers": [
        {"type": "reshape", "target_shape": [4, 2]},
        {"type": "bidirectional", "layer": {"type": "gru", "units": 3, "return_sequences": True}},
        {"type": "simple_rnn", "units": 2}, {"type": "dense", "units": 1}]})
    video = ModelSpec.model_validate({"layers": [
        {"type": "reshape", "target_shape": [3, 6, 6, 1]},
        {"type": "time_distributed", "layer": {"type": "conv2d", "filters": 2, "kernel_size": 2}},
        {"type": "time_distributed", "layer": {"type": "max_pooling2d", "pool_size": 2}},
        {"type": "time_distributed", "layer": {"type": "flatten"}},
        {"type": "lstm", "units": 4}, {"type": "dense", "units": 1, "activation": "sigmoid"}]})
    assert output_units(video) == 1
    for spec, n_features, shape, y in ((image, 64, (None, 3), np.zeros(6)), (sequence, 8, (None, 1), np.ones(6)),
                                       (video, 108, (None, 1), np.ones(6))):
        model = build_model(spec, n_features=n_features, seed=1)
        assert model.output_shape == shape
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy" if shape[1] == 3 else "mse")
        assert np.isfinite(model.train_on_batch(np.ones((6, n_features), dtype="float32"), y))
    flatten = build_model(video, n_features=108, seed=1).layers[3]
    assert flatten.output.shape[1:] == (3, 8)  # each frame convolved to 5 x 5, pooled to 2 x 2, of 2 filters
    conv = build_model(image, n_features=64, seed=1).layers[1]
    assert conv.strides == (2, 2) and conv.padding == "same"
    bidirectional = build_model(sequence, n_features=8, seed=1).layers[1]
    # Each direction starts from weights of its own.
    assert not np.array_equal(keras.ops.convert_to_numpy(bidirectional.forward_layer.cell.kernel),
                              keras.ops.convert_to_numpy(bidirectional.backward_layer.cell.kernel))


@pytest.mark.parametrize("layers", [
    [{"type": "reshape", "target_shape": [28, 28, 1]}, {"type": "conv2d", "filters": 3, "kernel_size": 5},
     {"type": "max_pooling2d", "pool_size": 2}, {"type": "conv2d", "filters": 2, "kernel_size": [3, 2], "strides": 2,
                                                "padding": "same"},
     {"type": "average_pooling2d", "pool_size": 3, "strides": 2, "padding": "same"}, {"type": "flatten"}],
    [{"type": "reshape", "target_shape": [12, 12, 1]},
     {"type": "separable_conv2d", "filters": 4, "kernel_size": 3, "strides": 2}, {"type": "flatten"}],
    [{"type": "reshape", "target_shape": [9, 2]}, {"type": "conv1d", "filters": 3, "kernel_size": 2},
     {"type": "max_pooling1d", "pool_size": 3}, {"type": "conv1d", "filters": 2, "kernel_size": 3, "padding": "causal"},
     {"type": "flatten"}],
    [{"type": "reshape", "target_shape": [3, 4, 1]},
     {"type": "time_distributed", "layer": {"type": "conv1d", "filters": 5, "kernel_size": 2}},
     {"type": "time_distributed", "layer": {"type": "max_pooling1d", "pool_size": 2}}, {"type": "flatten"}],
    [{"type": "reshape", "target_shape": [2, 3, 4, 1]},
     {"type": "conv_lstm2d", "filters": 3, "kernel_size": [2, 2], "return_sequences": True}, {"type": "flatten"}],
], ids=["conv2d-pooling", "separable-conv2d", "conv1d-pooling-causal", "time-distributed-conv1d", "conv-lstm2d"])
def test_a_flatten_of_feature_maps_has_the_width_keras_builds(layers):
    """The output's width, known before the data: each convolution's and pooling's sizes as Keras computes them
    (no padding, same, causal; strides)."""
    spec = ModelSpec.model_validate({"layers": layers})
    n_features = math.prod(layers[0]["target_shape"])
    assert output_units(spec) == build_model(spec, n_features=n_features, seed=1).output_shape[-1]


def test_the_other_dropouts_are_seeded_act_in_training_only_and_spatial_ones_drop_whole_channels():
    """Spatial dropout after a conv1d and a conv2d, Gaussian dropout, alpha dropout after selu units: the same seed
    the same draws, the inputs as they are in prediction, and a spatial one's channel kept or dropped at every
    step (every pixel) at once."""
    spec = ModelSpec.model_validate({"layers": [
        {"type": "reshape", "target_shape": [6, 2]},
        {"type": "conv1d", "filters": 8, "kernel_size": 2, "activation": "linear"},
        {"type": "spatial_dropout1d", "rate": 0.5}, {"type": "reshape", "target_shape": [5, 8, 1]},
        {"type": "conv2d", "filters": 6, "kernel_size": 2, "activation": "linear"},
        {"type": "spatial_dropout2d", "rate": 0.5}, {"type": "flatten"},
        {"type": "dense", "units": 8, "activation": "selu"}, {"type": "alpha_dropout", "rate": 0.2},
        {"type": "gaussian_dropout", "rate": 0.3}, {"type": "dense", "units": 1}]})
    X = np.random.default_rng(0).normal(size=(4, 12)).astype("float32")
    first, again = build_model(spec, 12, seed=3), build_model(spec, 12, seed=3)
    np.testing.assert_array_equal(first(X, training=True), again(X, training=True))
    np.testing.assert_array_equal(first(X), first(X))  # prediction: no draws
    for index, axes in ((2, (1,)), (5, (1, 2))):
        before = keras.Sequential(first.layers[:index])(X)
        dropped = keras.ops.convert_to_numpy(first.layers[index](before, training=True))
        kept = np.abs(dropped).sum(axis=axes) > 0  # each (row, channel): kept everywhere or nowhere
        assert np.array_equal(kept, np.all(dropped != 0, axis=axes)) and 0 < kept.mean() < 1
    model = build_model(spec, 12, seed=3)
    model.compile(optimizer="adam", loss="mse")
    assert np.isfinite(model.train_on_batch(X, np.ones((4, 1), dtype="float32")))


def test_recurrent_layers_take_the_books_relu_activation():
    """Brownlee's LSTMs: LSTM(100, activation='relu'); a name Keras lacks is refused naming the layer's key."""
    spec = ModelSpec.model_validate({"layers": [
        {"type": "reshape", "target_shape": [3, 1]},
        {"type": "lstm", "units": 4, "activation": "relu", "return_sequences": True},
        {"type": "gru", "units": 3, "activation": "relu"}, {"type": "dense", "units": 2}]})
    model = build_model(spec, n_features=3, seed=1)
    assert [layer.activation.__name__ for layer in model.layers[1:3]] == ["relu", "relu"]
    assert build_model(ModelSpec.model_validate({"layers": [
        {"type": "reshape", "target_shape": [3, 1]}, {"type": "lstm", "units": 4}, {"type": "dense", "units": 1}]}),
        n_features=3, seed=1).layers[1].activation.__name__ == "tanh"
    with pytest.raises(ValueError, match=r"layers\.1\.lstm\.activation"):
        ModelSpec.model_validate({"layers": [{"type": "reshape", "target_shape": [3, 1]},
                                             {"type": "lstm", "units": 4, "activation": "rellu"}]})


def test_separable_convolutions_and_rescaling_build_seeded_and_train():
    """Chollet's Xception-style listing: rescaled pixels into depthwise separable convolutions."""
    spec = ModelSpec.model_validate({"layers": [
        {"type": "reshape", "target_shape": [8, 8, 1]}, {"type": "rescaling", "scale": 1 / 255},
        {"type": "separable_conv2d", "filters": 4, "kernel_size": 3, "depth_multiplier": 2, "padding": "same",
         "pointwise_constraint": {"name": "max_norm", "max_value": 2}, "depthwise_regularizer": "l2"},
        {"type": "max_pooling2d"}, {"type": "separable_conv2d", "filters": 8, "kernel_size": 3, "strides": 2},
        {"type": "global_average_pooling2d"}, {"type": "dense", "units": 3, "activation": "softmax"}]})
    model = build_model(spec, n_features=64, seed=1)
    rescaling, separable = model.layers[1], model.layers[2]
    pixels = np.full((6, 64), 255.0, dtype="float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(rescaling(pixels.reshape(6, 8, 8, 1))), 1.0, rtol=1e-6)
    assert separable.depth_multiplier == 2 and separable.padding == "same" and model.layers[4].strides == (2, 2)
    assert isinstance(separable.pointwise_constraint, keras.constraints.MaxNorm) and len(model.losses) == 1
    # Its two kernels start from draws of their own (one seed would give both the same signs), alike for a seed.
    depthwise, pointwise = (keras.ops.convert_to_numpy(kernel).ravel()[:8]
                            for kernel in (separable.depthwise_kernel, separable.pointwise_kernel))
    assert not np.array_equal(np.sign(depthwise), np.sign(pointwise))
    for a, b in zip(_weights(model), _weights(build_model(spec, n_features=64, seed=1))):
        np.testing.assert_array_equal(a, b)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    assert np.isfinite(model.train_on_batch(pixels, np.zeros(6)))


def test_gaussian_noise_is_seeded_and_added_in_training_only():
    spec = ModelSpec.model_validate({"layers": [{"type": "gaussian_noise", "stddev": 0.5},
                                                {"type": "dense", "units": 1}]})
    zeros = np.zeros((2000, 3), dtype="float32")

    def noise(seed: int, training: bool) -> np.ndarray:
        layer = build_model(spec, n_features=3, seed=seed).layers[0]
        return keras.ops.convert_to_numpy(layer(zeros, training=training))

    drawn = noise(1, training=True)
    assert abs(float(drawn.std()) - 0.5) < 0.03 and not noise(1, training=False).any()
    np.testing.assert_array_equal(drawn, noise(1, training=True))
    assert not np.allclose(drawn, noise(2, training=True))


def _rates(schedule: dict, steps: list[int], steps_per_epoch: int = 3, epochs: int = 10) -> list[float]:
    spec = TrainSpec.model_validate({"lr_schedule": schedule, "epochs": epochs, "batch_size": 1})
    rate = learning_rate(spec, 0.1, steps_per_epoch)
    return [float(keras.ops.convert_to_numpy(rate(step))) for step in steps]


def test_learning_rate_schedules_count_steps_or_epochs_as_asked():
    # 3 batches an epoch: epoch e (from 1) trains steps 3(e-1) .. 3e-1.
    assert _rates({"type": "step", "factor": 0.5, "every": 2}, [0, 5, 6, 11, 12]) == pytest.approx(
        [0.1, 0.1, 0.05, 0.05, 0.025])
    assert _rates({"type": "inverse_time", "decay_rate": 1.0, "per": "epoch"}, [0, 2, 3, 6]) == pytest.approx(
        [0.1, 0.1, 0.05, 0.1 / 3])
    assert _rates({"type": "inverse_time", "decay_rate": 0.5, "every": 2}, [0, 1, 4]) == pytest.approx(
        [0.1, 0.1 / 1.25, 0.1 / 2])
    assert _rates({"type": "exponential", "decay_rate": 0.5}, [0, 3, 6]) == pytest.approx([0.1, 0.05, 0.025])
    assert _rates({"type": "cosine", "alpha": 0.1}, [0, 15, 30]) == pytest.approx([0.1, 0.055, 0.01])
    # Géron's piecewise-constant rates: epochs 1-2 at 0.01, 3-5 at 0.005, then 0.001 (the optimizer's own ignored).
    assert _rates({"type": "piecewise", "boundaries": [2, 5], "values": [0.01, 0.005, 0.001]},
                  [0, 5, 6, 14, 15, 29]) == pytest.approx([0.01, 0.01, 0.005, 0.005, 0.001, 0.001])

