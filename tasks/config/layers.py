"""The layers a model in params.yaml is made of, one section each, told apart by their `type:`."""

from __future__ import annotations

import math
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


class BiasWeights(Section):
    """What the books set on a layer's bias and output: its constraint applied after each update, penalties added
    to the loss, and whether the layer has a bias. Keras' own argument names."""

    bias_constraint: Constraint = None
    bias_regularizer: Regularizer = None
    activity_regularizer: Regularizer = None
    use_bias: bool = True


class Weights(BiasWeights):
    """:class:`BiasWeights`, and the kernel's constraint and penalty."""

    kernel_constraint: Constraint = None
    kernel_regularizer: Regularizer = None


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

class RateDropout(Section):
    """What the dropout layers besides `dropout` share: the rate of their draws, seeded from the run's seed."""

    rate: float = Field(ge=0.0, lt=1.0)

class SpatialDropout1DLayer(RateDropout):
    """Dropout of whole channels of a sequence (Keras' SpatialDropout1D): a conv1d's feature maps or an embedding's
    dimensions, dropped at every step at once, where neighbouring steps are too alike for single values to be."""

    type: Literal["spatial_dropout1d"]

class SpatialDropout2DLayer(RateDropout):
    """Dropout of whole feature maps of an image (Keras' SpatialDropout2D)."""

    type: Literal["spatial_dropout2d"]

class GaussianDropoutLayer(RateDropout):
    """Each input times Gaussian noise of mean 1 and variance rate / (1 - rate), while training only (Keras'
    GaussianDropout)."""

    type: Literal["gaussian_dropout"]

class AlphaDropoutLayer(RateDropout):
    """Dropout that keeps its inputs' mean and variance (Keras' AlphaDropout), for self-normalising selu layers."""

    type: Literal["alpha_dropout"]

class GaussianNoiseLayer(Section):
    """Zero-mean Gaussian noise added to its input while training only, a regularizer (Brownlee's Better Deep
    Learning, "Train Neural Networks With Noise"); its draws seeded from the run's seed."""

    type: Literal["gaussian_noise"]
    stddev: float = Field(gt=0.0)

class ActivationLayer(Section):
    """An activation as a layer of its own, as many listings write it after a Dense or Conv2D layer."""

    type: Literal["activation"]
    activation: str

    _check_activation = field_validator("activation")(activation_name)

class BatchNormalizationLayer(Section):
    type: Literal["batch_normalization"]
    momentum: float = Field(default=0.99, ge=0.0, lt=1.0)
    epsilon: float = Field(default=0.001, gt=0.0)
    center: bool = True
    scale: bool = True

class Conv2DLayer(Weights):
    type: Literal["conv2d"]
    filters: Count
    kernel_size: Count | tuple[Count, Count]
    strides: Count | tuple[Count, Count] = 1
    activation: str = "relu"
    initializer: str = "glorot_uniform"
    padding: Literal["valid", "same"] = "valid"

    _check_activation = field_validator("activation")(activation_name)
    _check_initializer = field_validator("initializer")(initializer_name)

class SeparableConv2DLayer(BiasWeights):
    """A depthwise separable convolution (the books' Xception-style listings): each input channel convolved on its
    own (`depth_multiplier` maps each), then mixed by a 1x1 convolution into `filters`. Its weights' settings are
    Keras' own: depthwise_ and pointwise_ constraints and penalties; `initializer` draws both kernels."""

    type: Literal["separable_conv2d"]
    filters: Count
    kernel_size: Count | tuple[Count, Count]
    strides: Count | tuple[Count, Count] = 1
    depth_multiplier: Count = 1
    activation: str = "relu"
    initializer: str = "glorot_uniform"
    padding: Literal["valid", "same"] = "valid"
    depthwise_constraint: Constraint = None
    pointwise_constraint: Constraint = None
    depthwise_regularizer: Regularizer = None
    pointwise_regularizer: Regularizer = None

    _check_activation = field_validator("activation")(activation_name)
    _check_initializer = field_validator("initializer")(initializer_name)

class RescalingLayer(Section):
    """Every input value times `scale`, plus `offset`: the books' `Rescaling(1./255)` of pixel values, inside the
    model, so that predictions take the raw values too."""

    type: Literal["rescaling"]
    scale: float
    offset: float = 0.0

class MaxPooling2DLayer(Section):
    type: Literal["max_pooling2d"]
    pool_size: Count | tuple[Count, Count] = 2
    strides: Count | tuple[Count, Count] | None = Field(default=None, description="None: the pool size")
    padding: Literal["valid", "same"] = "valid"

class AveragePooling2DLayer(Section):
    type: Literal["average_pooling2d"]
    pool_size: Count | tuple[Count, Count] = 2
    strides: Count | tuple[Count, Count] | None = Field(default=None, description="None: the pool size")
    padding: Literal["valid", "same"] = "valid"

class GlobalAveragePooling2DLayer(Section):
    type: Literal["global_average_pooling2d"]

class GlobalMaxPooling2DLayer(Section):
    type: Literal["global_max_pooling2d"]

class FlattenLayer(Section):
    type: Literal["flatten"]

class ReshapeLayer(Section):
    type: Literal["reshape"]
    target_shape: tuple[Count, ...] = Field(min_length=1)

class RepeatVectorLayer(Section):
    """A vector repeated `n` times into a sequence of n steps: an encoder's summary handed to each step of a
    decoder (the encoder-decoder forecast's RepeatVector(n_steps_out))."""

    type: Literal["repeat_vector"]
    n: Count

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

StepLayer = Annotated[
    Union[DenseLayer, DropoutLayer, ActivationLayer, Conv1DLayer, MaxPooling1DLayer, GlobalMaxPooling1DLayer,
          GlobalAveragePooling1DLayer, Conv2DLayer, MaxPooling2DLayer, AveragePooling2DLayer,
          GlobalAveragePooling2DLayer, GlobalMaxPooling2DLayer, FlattenLayer],
    Field(discriminator="type"),
]
"""The layers `time_distributed` applies to each step of a sequence. Not batch normalization: Keras 3's
TimeDistributed calls its layer once a step, so each step would be normalised by its own statistics in training and
by one running mean, updated once a step, in prediction; a plain `batch_normalization` pools the steps' statistics,
as the books' TimeDistributed(BatchNormalization()) did."""


class TimeDistributedLayer(Section):
    """A layer applied to each step of a sequence, its weights shared across the steps (Keras' TimeDistributed):
    a Dense layer at each step of a decoder's output, or a CNN-LSTM's convolution, pooling and flatten of each
    subsequence (or frame) before an LSTM reads them in turn."""

    type: Literal["time_distributed"]
    layer: StepLayer

class StepByStep(Weights):
    """What the layers that read a sequence step by step share: their activation (Brownlee's LSTMs use relu),
    whether every step's output is returned, dropout of the inputs and of the recurrent state, and the recurrent
    kernel's constraint and penalty."""

    activation: str = "tanh"
    return_sequences: bool = False
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    recurrent_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    recurrent_constraint: Constraint = None
    recurrent_regularizer: Regularizer = None

    _check_activation = field_validator("activation")(activation_name)

class Recurrent(StepByStep):
    """An LSTM, GRU or SimpleRNN: :class:`StepByStep`, and its units."""

    units: Count

class LSTMLayer(Recurrent):
    type: Literal["lstm"]
    stateful: bool = Field(default=False, description="carry the state from one row to the next; reset each epoch")

class GRULayer(Recurrent):
    type: Literal["gru"]

class SimpleRNNLayer(Recurrent):
    type: Literal["simple_rnn"]

RecurrentSpec = Annotated[Union[LSTMLayer, GRULayer, SimpleRNNLayer], Field(discriminator="type")]

class ConvLSTM2DLayer(StepByStep):
    """An LSTM whose input and state transforms are convolutions (Keras' ConvLSTM2D): it reads a sequence of
    images (steps, rows, columns, channels) and returns the last step's feature maps, or every step's
    (`return_sequences`). Brownlee's ConvLSTM forecast reads a window as subsequences of one row each."""

    type: Literal["conv_lstm2d"]
    filters: Count
    kernel_size: Count | tuple[Count, Count]
    strides: Count | tuple[Count, Count] = 1
    padding: Literal["valid", "same"] = "valid"

class BidirectionalLayer(Section):
    """A recurrent layer run over the sequence both ways, its two outputs merged (`merge_mode`)."""

    type: Literal["bidirectional"]
    layer: RecurrentSpec
    merge_mode: Literal["concat", "sum", "mul", "ave"] = "concat"

    @field_validator("layer")
    @classmethod
    def _not_stateful(cls, layer: LSTMLayer | GRULayer | SimpleRNNLayer) -> LSTMLayer | GRULayer | SimpleRNNLayer:
        if getattr(layer, "stateful", False):
            raise ValueError("a bidirectional layer cannot be stateful: its backward pass reads the sequence's end "
                             "first. Received: stateful true")
        return layer

    @property
    def return_sequences(self) -> bool:
        return self.layer.return_sequences

    @property
    def units(self) -> int:
        """Units per step of its output: both directions' when concatenated."""
        return self.layer.units * (2 if self.merge_mode == "concat" else 1)

class EmbeddingLayer(Section):
    type: Literal["embedding"]
    input_dim: Count | None = Field(default=None, description="the number of token ids; None takes "
                                                                     "preprocess.text.num_words")
    output_dim: Count
    weights: str | None = Field(default=None, description="a file of pretrained word vectors in GloVe's text format "
                                                          "(a word, then output_dim numbers, per line): the "
                                                          "vocabulary's words start from them, others from zeros")
    trainable: bool = Field(default=True, description="false: the vectors stay as they start (the books freeze "
                                                      "pretrained ones)")
    embeddings_constraint: Constraint = None
    embeddings_regularizer: Regularizer = None
    activity_regularizer: Regularizer = None

PRETRAINED_BASES = {"vgg16": "VGG16", "vgg19": "VGG19", "resnet50": "ResNet50", "mobilenet": "MobileNet",
                    "mobilenet_v2": "MobileNetV2", "inception_v3": "InceptionV3", "xception": "Xception",
                    "densenet121": "DenseNet121", "efficientnet_b0": "EfficientNetB0"}
"""The convolutional bases a `pretrained` layer can be, and their classes in `keras.applications`."""


class PretrainedLayer(Section):
    """A convolutional base of `keras.applications` without its classifier (`include_top=False`), as the books'
    transfer learning uses VGG16: frozen, a feature extractor (`trainable: false`); fine-tuned from one of its
    layers on (`trainable_from: block5_conv1`, the earlier layers frozen); or trained whole (`trainable: true`)."""

    type: Literal["pretrained"]
    name: Literal[tuple(PRETRAINED_BASES)]  # type: ignore[valid-type]
    weights: str | None = Field(description=(
        "a local weights file of the base without its top (e.g. saved once by `keras.applications.VGG16("
        "include_top=False).save_weights('vgg16_notop.weights.h5')` where it can download them); null: seeded "
        "random weights, trained from scratch"))
    trainable: bool = False
    trainable_from: str | None = Field(default=None, description="the base's layer from which on it trains")
    pooling: Literal["avg", "max"] | None = Field(default=None, description="None: the last block's feature maps")

    @field_validator("weights")
    @classmethod
    def _local_file(cls, value: str | None) -> str | None:
        if value == "imagenet":
            raise ValueError("'imagenet' would download the weights at run time, and nothing may; give the path of "
                             "the file saved where they can be downloaded (include_top=False). Received: 'imagenet'")
        return value


LayerSpec = Annotated[
    Union[DenseLayer, DropoutLayer, GaussianNoiseLayer, ActivationLayer, BatchNormalizationLayer, Conv2DLayer,
          SeparableConv2DLayer, RescalingLayer, MaxPooling2DLayer, AveragePooling2DLayer, GlobalAveragePooling2DLayer,
          GlobalMaxPooling2DLayer, FlattenLayer, ReshapeLayer, LSTMLayer, GRULayer, SimpleRNNLayer, BidirectionalLayer,
          EmbeddingLayer, Conv1DLayer, MaxPooling1DLayer, GlobalMaxPooling1DLayer, GlobalAveragePooling1DLayer,
          PretrainedLayer, RepeatVectorLayer, TimeDistributedLayer, ConvLSTM2DLayer, SpatialDropout1DLayer,
          SpatialDropout2DLayer, GaussianDropoutLayer, AlphaDropoutLayer],
    Field(discriminator="type"),
]

STACKABLE_LAYERS = (DenseLayer, DropoutLayer, GaussianNoiseLayer, ActivationLayer)

RECURRENT_LAYERS = (LSTMLayer, GRULayer, SimpleRNNLayer, BidirectionalLayer)
"""Layers that read a sequence step by step, and return its last step's output or (`return_sequences`) every
step's."""

SEQUENCE_READERS = (*RECURRENT_LAYERS, ConvLSTM2DLayer)
"""Layers that read a sequence step by step and return its last step's output, or every step's
(`return_sequences`)."""

PASS_THROUGH_LAYERS = (DropoutLayer, GaussianNoiseLayer, ActivationLayer, BatchNormalizationLayer, RescalingLayer,
                       SpatialDropout1DLayer, SpatialDropout2DLayer, GaussianDropoutLayer, AlphaDropoutLayer)
"""Layers whose output has their input's shape."""

INPUT_RANK: dict[type, int] = {
    **{layer: 3 for layer in (Conv2DLayer, SeparableConv2DLayer, MaxPooling2DLayer, AveragePooling2DLayer,
                              GlobalAveragePooling2DLayer, GlobalMaxPooling2DLayer, PretrainedLayer,
                              SpatialDropout2DLayer)},
    **{layer: 2 for layer in (*RECURRENT_LAYERS, Conv1DLayer, MaxPooling1DLayer, GlobalMaxPooling1DLayer,
                              GlobalAveragePooling1DLayer, SpatialDropout1DLayer)},
    RepeatVectorLayer: 1, ConvLSTM2DLayer: 4,
}
"""The axes (besides the batch's) a layer's input must have: an image's 3 (height, width, channels), a sequence's 2
(steps, features)."""

def input_rank(layer: LayerSpec) -> int | None:
    """The axes (besides the batch's) `layer`'s input must have, or None where any will do (a time-distributed
    layer: one more than its step layer's, and at least a sequence's 2)."""
    if isinstance(layer, TimeDistributedLayer):
        step = INPUT_RANK.get(type(layer.layer))
        return None if step is None else step + 1
    return INPUT_RANK.get(type(layer))


def window_key(layer: LayerSpec) -> str | None:
    """The key, below the layer's, of the window a convolution or pooling layer slides over its input
    (`kernel_size`, `pool_size`; `layer.kernel_size` for a time-distributed layer's step layer); None for a layer
    without one.

    Examples
    --------
    >>> window_key(MaxPooling2DLayer(type="max_pooling2d")), window_key(DenseLayer(type="dense", units=2))
    ('pool_size', None)
    """
    if isinstance(layer, TimeDistributedLayer):
        key = window_key(layer.layer)
        return None if key is None else f"layer.{key}"
    return next((key for key in ("kernel_size", "pool_size") if key in type(layer).model_fields), None)


def windowed(sizes: list[int | None], window: int | tuple[int, ...], strides: int | tuple[int, ...] | None,
             padding: str) -> list[int | None]:
    """The sizes a convolution or pooling window gives along axes of `sizes`, as Keras computes them: ``(n - k) //
    s + 1`` without padding, ``ceil(n / s)`` with (`same`, `causal`); None where the size is not known. A size of 0
    or less is a window larger than its input, which Keras refuses when it builds the layer
    (:meth:`kerasflow.tasks.config.schema.ModelSpec.check_shapes` refuses it first).

    Examples
    --------
    >>> windowed([28, 28], 3, 1, "valid"), windowed([5, 4], 2, None, "valid"), windowed([7], 3, 2, "same")
    ([26, 26], [2, 2], [4])
    >>> windowed([3, 3], 5, 1, "valid"), windowed([3, 3], 5, 1, "same")
    ([-1, -1], [3, 3])
    """
    def each(value: int | tuple[int, ...]) -> tuple[int, ...]:
        return value if isinstance(value, tuple) else (value,) * len(sizes)

    return [None if n is None else math.ceil(n / s) if padding != "valid" else (n - k) // s + 1
            for n, k, s in zip(sizes, each(window), each(window if strides is None else strides))]


def output_shape(layer: LayerSpec, shape: list[int | None]) -> list[int | None]:
    """The axes (besides the batch's) of `layer`'s output for an input of axes `shape`, None where the data decides
    a size (an embedding's or a pretrained base's input)."""
    if isinstance(layer, Conv1DLayer):
        return [*windowed(shape[:1], layer.kernel_size, 1, layer.padding), layer.filters]
    if isinstance(layer, (Conv2DLayer, SeparableConv2DLayer)):
        return [*windowed(shape[:2], layer.kernel_size, layer.strides, layer.padding), layer.filters]
    if isinstance(layer, MaxPooling1DLayer):
        return [*windowed(shape[:1], layer.pool_size, None, "valid"), shape[-1]]
    if isinstance(layer, (MaxPooling2DLayer, AveragePooling2DLayer)):
        return [*windowed(shape[:2], layer.pool_size, layer.strides, layer.padding), shape[-1]]
    if isinstance(layer, ReshapeLayer):
        return list(layer.target_shape)
    if isinstance(layer, DenseLayer):
        return [*shape[:-1], layer.units]
    if isinstance(layer, TimeDistributedLayer):  # the step layer on each step's axes
        return [shape[0], *output_shape(layer.layer, shape[1:])]
    if isinstance(layer, RepeatVectorLayer):
        return [layer.n, *shape]
    if isinstance(layer, RECURRENT_LAYERS):
        recurrent = layer.layer if isinstance(layer, BidirectionalLayer) else layer
        both = isinstance(layer, BidirectionalLayer) and layer.merge_mode == "concat"
        units = recurrent.units * (2 if both else 1)
        return [shape[0], units] if recurrent.return_sequences else [units]
    if isinstance(layer, FlattenLayer):
        return [math.prod(shape) if None not in shape else None]
    if isinstance(layer, (GlobalAveragePooling1DLayer, GlobalMaxPooling1DLayer, GlobalAveragePooling2DLayer,
                          GlobalMaxPooling2DLayer)):
        return shape[-1:]
    if isinstance(layer, PretrainedLayer):
        return [None] if layer.pooling else [None] * 3
    if isinstance(layer, ConvLSTM2DLayer):  # the last step's feature maps, or every step's
        maps = [*windowed(shape[1:3], layer.kernel_size, layer.strides, layer.padding), layer.filters]
        return [shape[0], *maps] if layer.return_sequences else maps
    if isinstance(layer, PASS_THROUGH_LAYERS):
        return shape
    if isinstance(layer, EmbeddingLayer):  # a vector a token of the row
        return [shape[0], layer.output_dim]
    raise TypeError(f"no output shape for a {layer.type} layer")
