"""The layers a model in params.yaml is made of, one section each, told apart by their `type:`."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BeforeValidator, Field, field_validator

from kerasflow.tasks.config.keras_names import activation_name, check_configured, initializer_name
from kerasflow.tasks.config.section import Configured, Count, Section

Constraint = Annotated[Union[str, Configured, None],
                       BeforeValidator(lambda value: value if value is None
                                       else check_configured("constraints", value))]
"""A weight constraint: max_norm, non_neg, unit_norm or min_max_norm, by name or with arguments
(`{name: max_norm, max_value: 3, axis: 0}`)."""

Regularizer = Annotated[Union[str, Configured, None],
                        BeforeValidator(lambda value: value if value is None
                                        else check_configured("regularizers", value))]
"""A penalty added to the loss: l1, l2 or l1_l2, by name or with arguments (`{name: l2, l2: 0.001}`)."""


class Weights(Section):
    """What the books set on a layer's weights: constraints applied after each update, penalties added to the
    loss, and whether the layer has a bias. Keras' own argument names."""

    kernel_constraint: Constraint = None
    bias_constraint: Constraint = None
    kernel_regularizer: Regularizer = None
    bias_regularizer: Regularizer = None
    activity_regularizer: Regularizer = None
    use_bias: bool = True


class DenseLayer(Weights):
    type: Literal["dense"]
    units: Count
    activation: str = "linear"
    initializer: str = "glorot_uniform"

    _check_activation = field_validator("activation")(activation_name)
    _check_initializer = field_validator("initializer")(initializer_name)

class DropoutLayer(Section):
    type: Literal["dropout"]
    rate: float = Field(ge=0.0, lt=1.0)

class Conv2DLayer(Weights):
    type: Literal["conv2d"]
    filters: Count
    kernel_size: Count | tuple[Count, Count]
    activation: str = "relu"
    initializer: str = "glorot_uniform"
    padding: Literal["valid", "same"] = "valid"

    _check_activation = field_validator("activation")(activation_name)
    _check_initializer = field_validator("initializer")(initializer_name)

class MaxPooling2DLayer(Section):
    type: Literal["max_pooling2d"]
    pool_size: Count | tuple[Count, Count] = 2

class FlattenLayer(Section):
    type: Literal["flatten"]

class ReshapeLayer(Section):
    type: Literal["reshape"]
    target_shape: tuple[Count, ...] = Field(min_length=1)

class Conv1DLayer(Weights):
    type: Literal["conv1d"]
    filters: Count
    kernel_size: Count
    activation: str = "relu"
    initializer: str = "glorot_uniform"
    padding: Literal["valid", "same", "causal"] = "valid"

    _check_activation = field_validator("activation")(activation_name)
    _check_initializer = field_validator("initializer")(initializer_name)

class MaxPooling1DLayer(Section):
    type: Literal["max_pooling1d"]
    pool_size: Count = 2

class GlobalMaxPooling1DLayer(Section):
    type: Literal["global_max_pooling1d"]

class GlobalAveragePooling1DLayer(Section):
    type: Literal["global_average_pooling1d"]

class LSTMLayer(Weights):
    type: Literal["lstm"]
    units: Count
    recurrent_constraint: Constraint = None
    recurrent_regularizer: Regularizer = None
    return_sequences: bool = False
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    recurrent_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    stateful: bool = Field(default=False, description="carry the state from one row to the next; reset each epoch")

class EmbeddingLayer(Section):
    type: Literal["embedding"]
    input_dim: Count | None = Field(default=None, description="the number of token ids; None takes "
                                                                     "preprocess.text.num_words")
    output_dim: Count
    embeddings_constraint: Constraint = None
    embeddings_regularizer: Regularizer = None
    activity_regularizer: Regularizer = None

LayerSpec = Annotated[
    Union[DenseLayer, DropoutLayer, Conv2DLayer, MaxPooling2DLayer, FlattenLayer, ReshapeLayer, LSTMLayer,
          EmbeddingLayer, Conv1DLayer, MaxPooling1DLayer, GlobalMaxPooling1DLayer, GlobalAveragePooling1DLayer],
    Field(discriminator="type"),
]

STACKABLE_LAYERS = (DenseLayer, DropoutLayer)

SEQUENCE_LAYERS = (LSTMLayer, Conv1DLayer, MaxPooling1DLayer, GlobalMaxPooling1DLayer, GlobalAveragePooling1DLayer)
"""Layers that take a sequence, `(batch, steps, features)`: what an LSTM before them must return."""
