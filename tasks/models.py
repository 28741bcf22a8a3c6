"""Keras models from the spec. Only `keras` is used (never `tf.*`), so every Keras backend runs them."""

from __future__ import annotations

import keras

from tasks.spec import (
    Conv2DLayer,
    DenseLayer,
    DropoutLayer,
    EmbeddingLayer,
    FlattenLayer,
    LayerSpec,
    LSTMLayer,
    MaxPooling2DLayer,
    ModelSpec,
    ReshapeLayer,
    TrainSpec,
)


def make_layer(spec: LayerSpec) -> keras.layers.Layer:
    """One Keras layer from its spec."""
    if isinstance(spec, DenseLayer):
        return keras.layers.Dense(spec.units, activation=spec.activation, kernel_initializer=spec.initializer)
    if isinstance(spec, DropoutLayer):
        return keras.layers.Dropout(spec.rate)
    if isinstance(spec, Conv2DLayer):
        return keras.layers.Conv2D(spec.filters, spec.kernel_size, activation=spec.activation,
                                   kernel_initializer=spec.initializer, padding=spec.padding)
    if isinstance(spec, MaxPooling2DLayer):
        return keras.layers.MaxPooling2D(spec.pool_size)
    if isinstance(spec, FlattenLayer):
        return keras.layers.Flatten()
    if isinstance(spec, ReshapeLayer):
        return keras.layers.Reshape(spec.target_shape)
    if isinstance(spec, LSTMLayer):
        return keras.layers.LSTM(spec.units, return_sequences=spec.return_sequences, dropout=spec.dropout,
                                 recurrent_dropout=spec.recurrent_dropout)
    if isinstance(spec, EmbeddingLayer):
        return keras.layers.Embedding(spec.input_dim, spec.output_dim)
    raise TypeError(f"no Keras layer for spec {type(spec).__name__}")


def build_model(spec: ModelSpec, n_features: int) -> keras.Sequential:
    """A `Sequential` model taking rows of `n_features` values."""
    model = keras.Sequential([keras.Input(shape=(n_features,))], name="kerasflow_model")
    for layer in spec.layers:
        model.add(make_layer(layer))
    return model


def make_optimizer(spec: TrainSpec) -> keras.optimizers.Optimizer:
    optimizer = keras.optimizers.get(spec.optimizer)
    if spec.learning_rate is not None:
        optimizer.learning_rate = spec.learning_rate
    return optimizer


def output_units(spec: ModelSpec) -> int | None:
    """Units of the last Dense/LSTM layer: what the model predicts per row."""
    for layer in reversed(spec.layers):
        if isinstance(layer, (DenseLayer, LSTMLayer)):
            return layer.units
    return None
