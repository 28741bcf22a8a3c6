"""The typed, validated form of ``params.yaml``: one spec object, built once, passed everywhere.

Every mistake is reported with the exact key DVC would use for it (``experiments.iris_mlp.train.epochs``)
so that the message can be pasted into ``dvc exp run -S`` or found in the file.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from kerasflow.tasks.config.backend import DEFAULT_BACKEND, Backend
from kerasflow.tasks.config.errors import ParamsError
from kerasflow.tasks.config.keras_names import (
    LEGACY_OPTIMIZER_ARGUMENTS,
    check_configured,
    check_name,
    checking,
    without_keras,
)
from kerasflow.tasks.config.layers import (
    PASS_THROUGH_LAYERS,
    SEQUENCE_READERS,
    STACKABLE_LAYERS,
    BidirectionalLayer,
    ConvLSTM2DLayer,
    EmbeddingLayer,
    LayerSpec,
    LSTMLayer,
    PretrainedLayer,
    ReshapeLayer,
    TimeDistributedLayer,
    input_rank,
    output_shape,
    window_key,
)
from kerasflow.tasks.config.messages import describe_all, yaml_problem
from kerasflow.tasks.config.overrides import apply_overrides, extremes
from kerasflow.tasks.config.search import SearchSpec
from kerasflow.tasks.config.section import AtKey, Configured, Count, Section, Seed

Task = Literal["binary", "multiclass", "multilabel", "regression", "next_token"]
CLASS_TASKS = ("binary", "multiclass")
"""The tasks of one class a row."""
STRATIFIED_TASKS = (*CLASS_TASKS, "multilabel")
"""The tasks whose folds can be stratified: by each row's class, or iteratively by its labels."""
SEVERAL_TARGETS = ("multilabel", "regression")
"""The tasks whose `dataset.target` may list several columns, one output unit each."""

# Which losses make sense for which task: a loss that does not fit the task trains silently to nonsense.
LOSSES_BY_TASK: dict[str, tuple[str, ...]] = {
    "binary": ("binary_crossentropy", "binary_focal_crossentropy", "hinge", "squared_hinge"),
    "multiclass": ("sparse_categorical_crossentropy", "categorical_crossentropy", "categorical_focal_crossentropy"),
    "multilabel": ("binary_crossentropy", "binary_focal_crossentropy"),
    "regression": ("mean_squared_error", "mean_absolute_error", "huber", "log_cosh", "mean_squared_logarithmic_error"),
    "next_token": ("sparse_categorical_crossentropy",),
}
TRAINED_LOSSES = tuple(sorted({loss for losses in LOSSES_BY_TASK.values() for loss in losses}))
"""The losses of every task, the ones a `train.loss` may name."""
LOSS_ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error", "msle": "mean_squared_logarithmic_error"}
DEFAULT_LOSS = {"binary": "binary_crossentropy", "multiclass": "sparse_categorical_crossentropy",
                "multilabel": "binary_crossentropy", "regression": "mean_squared_error",
                "next_token": "sparse_categorical_crossentropy"}
METRICS_BY_TASK: dict[str, tuple[str, ...]] = {
    "binary": ("accuracy", "precision", "recall", "f1", "auc", "pr_auc", "precision_macro", "recall_macro", "f1_macro"),
    "multiclass": ("accuracy", "precision_macro", "recall_macro", "f1_macro", "auc", "pr_auc"),
    "multilabel": ("accuracy", "precision", "recall", "f1", "auc", "pr_auc", "precision_macro", "recall_macro",
                   "f1_macro"),
    "regression": ("mse", "rmse", "mae", "mape"),
    "next_token": ("accuracy", "perplexity"),
}


class DatasetSpec(Section):
    """Where the rows come from and what is predicted."""

    file: Path = Field(description="a CSV; a folder of class subfolders of images or text files, each subfolder a "
                                   "class (target: label), as Keras' image_dataset_from_directory reads; or a text "
                                   "file (next_token)")
    target: str | int | list[str | int] | None = Field(
        default=None, description="target column: its name, or its 0-based index when header is false; a list of "
                                  "them for a regression predicting several columns at once, or a multilabel "
                                  "task's 0/1 label columns, one output unit each (none for next_token: a text file)")
    header: bool = True
    task: Task
    image_size: tuple[Count, Count] | None = Field(default=None, description="a folder of images: each resized to "
                                                   "[height, width] (when left out, Keras' 256 x 256)")
    color_mode: Literal["grayscale", "rgb", "rgba"] | None = Field(default=None, description="a folder of images: "
                                                                   "1, 3 or 4 channels a pixel (when left out, rgb)")

    @field_validator("target")
    @classmethod
    def _one_listed_target(cls, target: str | int | list[str | int] | None) -> str | int | list[str | int] | None:
        """A list of one column is that column: one way to write each target."""
        return target[0] if isinstance(target, list) and len(target) == 1 else target

    @property
    def targets(self) -> list[str | int]:
        """The target column(s), as a list: several for a multi-output regression or a multilabel task."""
        if self.target is None:
            return []
        return list(self.target) if isinstance(self.target, list) else [self.target]

    @property
    def target_names(self) -> list[str]:
        """The target column(s) as a saved model and predictions.csv name them: names, or 0-based indices without
        a header row."""
        return [str(target) for target in self.targets]

    @model_validator(mode="after")
    def _target_unless_text(self) -> "DatasetSpec":
        if self.task == "next_token" and self.target is not None:
            raise AtKey("target", "a next_token task predicts each token of the text file from those before it: "
                        f"leave target out. Received: {self.target!r}")
        if self.task != "next_token" and self.target in (None, []):
            raise AtKey("target", f"is required: the column task {self.task!r} predicts. Received: none")
        if isinstance(self.target, list) and self.task not in SEVERAL_TARGETS:
            raise AtKey("target", f"several target columns, one output unit each, are a regression's or a "
                        f"multilabel task's; task {self.task!r} predicts one column (its classes). Received: "
                        f"{self.target!r}")
        if self.task == "multilabel" and not isinstance(self.target, list):
            raise AtKey("target", "task 'multilabel' predicts whether each of several labels applies: list two "
                        "or more 0/1 columns, e.g. [sports, politics] (one column is task 'binary'). Received: "
                        f"{self.target!r}")
        if isinstance(self.target, list):
            repeated = sorted({str(t) for t in self.target if self.target.count(t) > 1})
            if repeated:
                raise AtKey("target", f"names column(s) {repeated} more than once; list each target column once. "
                            f"Received: {self.target!r}")
        if self.header and any(isinstance(target, int) for target in self.targets):
            # An index would name the target in the results and the saved model, where predict looks for it.
            raise AtKey("target", f"must be the column's name when the file has a header row (dataset.header true); "
                        f"a 0-based index is for a file without one. Received: {self.target!r}")
        return self


class TokensSpec(Section):
    """A text file as a sequence of tokens, each predicted from the `window` before it (the books' text generation).

    The vocabulary is fitted on the training part of the text only (the held-out tail is scored with it).
    """

    level: Literal["char", "word"] = Field(default="char", description="characters, or words and punctuation marks")
    window: Count = Field(default=40, description="tokens a prediction reads")
    num_words: int = Field(ge=2, description="token ids run from 0 to num_words - 1: 0 stands for any token outside "
                                            "the vocabulary, the num_words - 1 most frequent tokens of the training "
                                            "part get 1, 2, ... (the last Dense layer's units; an embedding's "
                                            "input_dim)")
    lowercase: bool = True


class TextSpec(Section):
    """A text column as the model's input, as Keras' `TextVectorization` makes it (`output_mode`): integer token
    sequences (Keras' `Tokenizer(num_words, oov_token)` then `pad_sequences`), or one vector of `num_words` values
    per text, a bag of its words (and of its runs of up to `ngrams` words).

    Words are what TextVectorization's default standardisation leaves (punctuation stripped, split on
    whitespace); the vocabulary (and tf_idf's document frequencies) is fitted on each fold's training rows only
    (see ``tasks/data/text.py``).
    """

    column: str | int = Field(description="the text column: its name, or its 0-based index when header is false")
    num_words: int = Field(ge=3, description="token ids run from 0 to num_words - 1: 0 pads, 1 stands for any word "
                                             "outside the vocabulary, and the num_words - 2 most frequent words of the "
                                             "training rows get 2, 3, ... (an embedding's input_dim; a bag of words' "
                                             "length)")
    output_mode: Literal["int", "multi_hot", "count", "tf_idf"] = Field(
        default="int", description="int: `maxlen` token ids per text, for an embedding; multi_hot: a vector of "
                                   "num_words values, 1 where the text has that token id (the books' "
                                   "vectorize_sequences); count: how often it has it; tf_idf: that count times the "
                                   "token's inverse document frequency in the training rows")
    ngrams: Count = Field(default=1, description="the bag's tokens are the words and every run of 2 .. ngrams "
                                                 "words (2: the books' bigrams); output_mode int takes words only")
    maxlen: Count | None = Field(default=None, description="output_mode int: every text becomes exactly `maxlen` "
                                                           "token ids")
    padding: Literal["pre", "post"] = Field(default="pre", description="pad short texts before or after their words")
    truncating: Literal["pre", "post"] = Field(default="pre", description="cut long texts' first or last words")
    lowercase: bool = True

    @property
    def bag(self) -> bool:
        """Each text is one vector of `num_words` values (multi_hot, count, tf_idf), not a sequence of ids."""
        return self.output_mode != "int"

    @model_validator(mode="after")
    def _sequence_settings_with_int_only(self) -> "TextSpec":
        if not self.bag:
            if self.maxlen is None:
                raise AtKey("maxlen", "is required with output_mode int: every text becomes `maxlen` token ids "
                            "(e.g. 500). Received: none")
            if self.ngrams != 1:
                raise AtKey("ngrams", "makes a bag's tokens: output_mode int gives words only; set output_mode "
                            f"multi_hot, count or tf_idf. Received: {self.ngrams}")
            return self
        given = [key for key in ("maxlen", "padding", "truncating") if getattr(self, key) != _default(self, key)]
        if given:
            raise AtKey(given[0], f"shapes sequences of token ids (output_mode int); output_mode {self.output_mode} "
                        f"gives one vector of num_words values per text: remove it. Received: "
                        f"{getattr(self, given[0])!r}")
        return self


class AugmentSpec(Section):
    """An image experiment's training images, transformed as the books' ImageDataGenerator does, by Keras' layers.

    The random transformations (Keras' RandomFlip, RandomRotation, RandomTranslation, RandomZoom, seeded from
    train.seed) change every training batch and leave held-out scoring and predictions alone. The featurewise
    statistics (per channel) and ZCA whitening are fitted on each fold's training images only and kept in the
    model's weights.
    """

    rotation: float = Field(default=0.0, ge=0.0, le=1.0, description="the largest turn, as a fraction of a full "
                                                                     "turn, either way (RandomRotation's factor)")
    shift: float = Field(default=0.0, ge=0.0, lt=1.0, description="the largest shift, as a fraction of the height "
                                                                 "and of the width, either way")
    flip: Literal["none", "horizontal", "vertical", "horizontal_and_vertical"] = "none"
    zoom: float = Field(default=0.0, ge=0.0, lt=1.0, description="the largest zoom in or out, as a fraction")
    featurewise_center: bool = Field(default=False, description="subtract each channel's mean over the fold's "
                                                                "training images")
    featurewise_std_normalization: bool = Field(default=False, description="divide by each channel's standard "
                                                                           "deviation over them")
    zca_whitening: bool = Field(default=False, description="decorrelate the pixels (after centring them) with the "
                                                           "training images' ZCA matrix")
    zca_epsilon: float = Field(default=1e-6, gt=0.0)

    @property
    def random(self) -> bool:
        """Whether any transformation draws at random (the report then shows some augmented images)."""
        return bool(self.rotation or self.shift or self.zoom or self.flip != "none")

    @property
    def featurewise(self) -> bool:
        """Whether statistics of the training images are fitted (the model then holds its standardisation)."""
        return self.featurewise_center or self.featurewise_std_normalization or self.zca_whitening


class PreprocessSpec(Section):
    """Transformations fitted on each fold's training rows only."""

    scale: Literal["none", "standard", "minmax"] = "none"
    categorical: Literal["none", "onehot", "ordinal"] = "none"
    impute: Literal["none", "mean", "median", "most_frequent"] = "none"
    lookback: Count | None = Field(
        default=None, description="forecast the target series from its `lookback` previous steps (the rows become "
                                  "windows; the file's other columns are not used unless lookback_columns names them)")
    lookback_columns: list[str] | Literal["all"] = Field(
        default_factory=list, description="a multivariate series: the other columns whose values at the window's "
                                          "steps are inputs too (\"all\": every column besides the target)")
    horizon: Count = Field(default=1, description="forecast the target this many steps after the window's last")
    steps_out: Count = Field(
        default=1, description="forecast this many consecutive steps from the horizon on, as one vector (the "
                               "model's last Dense layer has one unit a step, of each target): a multi-step "
                               "forecast")
    sampling_rate: Count = Field(
        default=1, description="a window reads every sampling_rate-th row: its `lookback` steps are sampling_rate "
                               "rows apart (Keras' timeseries_dataset_from_array; the books' hourly samples of "
                               "10-minute weather rows); horizon still counts rows")
    scale_target: bool = Field(
        default=False, description="regression: train on the target scaled like the features (by the training "
                                   "rows), the loss taken in scaled units; a fixed rescaling inside the model gives "
                                   "its predictions, and every score, in the data's units")
    text: TextSpec | None = Field(
        default=None, description="the rows are one text column (and the target): its words become token ids, or "
                                  "a bag of words")
    augment: AugmentSpec | None = Field(
        default=None, description="image experiments: random transformations of the training images, and "
                                  "featurewise standardisation; inside the model, after its reshape to an image")
    tokens: TokensSpec | None = Field(
        default=None, description="task next_token: how the text file becomes tokens and windows of them")

    @property
    def window_span(self) -> int:
        """The rows from a window's first step to its last, both read: (lookback - 1) * sampling_rate + 1."""
        return (self.lookback - 1) * self.sampling_rate + 1

    @model_validator(mode="after")
    def _text_alone(self) -> "PreprocessSpec":
        # Token ids are categories, not magnitudes: scaling or imputing them would silently corrupt them.
        if self.text is not None:
            others = ("scale", "categorical", "impute", "lookback", "scale_target", "lookback_columns", "horizon",
                      "steps_out")
            clashing = {key: getattr(self, key) for key in others if getattr(self, key) != _default(self, key)}
            if clashing:
                raise AtKey(next(iter(clashing)), f"`text` is the rows' only input and makes token ids or bags: "
                          f"{', '.join(clashing)} cannot be used with it. Received: {clashing}")
        if self.lookback is None:
            given = [key for key in ("lookback_columns", "horizon", "sampling_rate", "steps_out")
                     if getattr(self, key) != _default(self, key)]
            if given:
                raise AtKey(given[0], f"shapes a series' look-back windows: it needs preprocess.lookback. Received: "
                            f"{getattr(self, given[0])!r} without a lookback")
        return self


def _default(section: Section, key: str) -> Any:
    """What `key` of `section` is when params.yaml leaves it out."""
    return type(section).model_fields[key].get_default(call_default_factory=True)


RANK_NAMES = {1: "a vector of features per row", 2: "a sequence per row (steps, features)",
              3: "an image per row (height, width, channels)",
              4: "a sequence of images per row (frames, height, width, channels)"}
RANK_HINTS = {1: "; flatten it first (a flatten layer)",
              2: "; put an embedding, a reshape with target_shape [steps, features], or a recurrent layer with "
                 "return_sequences true before it",
              3: "; put a reshape with target_shape [height, width, channels] (or a conv2d) before it",
              4: "; put a reshape with target_shape [frames, height, width, channels] before it"}
STEP_NAMES = {3: "a sequence of sequences per row (subsequences, steps, features)", 4: RANK_NAMES[4]}
"""What a time-distributed layer takes, by its rank, where its step layer takes a sequence or an image."""
STEP_HINTS = {3: "; put a reshape with target_shape [subsequences, steps, features] before it", 4: RANK_HINTS[4]}


def rank_name(rank: int) -> str:
    """What an input of `rank` axes besides the batch's is, in words."""
    return RANK_NAMES.get(rank, f"{rank}-D")


def keeps_steps(layer: LayerSpec) -> bool:
    """Whether `layer` gives an output a step of its input's sequence: a time-distributed layer, or a conv_lstm2d
    with `return_sequences`."""
    return isinstance(layer, TimeDistributedLayer) or (isinstance(layer, ConvLSTM2DLayer) and layer.return_sequences)


def sizes_text(sizes: int | tuple[int, ...] | list[int | None]) -> str:
    """A window's size or an input's axes as a message writes them: ``5``, ``3 x 3 x 4`` (``?`` where the data
    decides the size).

    Examples
    --------
    >>> sizes_text(5), sizes_text((5, 3)), sizes_text([None, 3, 4])
    ('5', '5 x 3', '? x 3 x 4')
    """
    return str(sizes) if isinstance(sizes, int) else " x ".join("?" if n is None else str(n) for n in sizes)


def layer_name(layer: LayerSpec) -> str:
    """A layer's type as params.yaml writes it, a time-distributed one with its step layer's."""
    return f"time_distributed {layer.layer.type}" if isinstance(layer, TimeDistributedLayer) else layer.type


class ModelSpec(Section):
    """A Keras ``Sequential`` model, layer by layer; the input shape comes from the data."""

    layers: list[LayerSpec] = Field(min_length=1)
    # Set by the experiment holding this model from its preprocess.text, not read from the file: a sweep over
    # `preprocess.text.num_words` then resizes an embedding that gives no input_dim of its own.
    _num_words: int | None = PrivateAttr(default=None)
    # Likewise from its preprocess.augment: the model holds the augmentation layers.
    _augment: AugmentSpec | None = PrivateAttr(default=None)

    @property
    def num_words(self) -> int | None:
        """The token ids' range when the experiment reads text: an embedding's default `input_dim`."""
        return self._num_words

    @property
    def augment(self) -> AugmentSpec | None:
        """The experiment's preprocess.augment: layers the model holds right after its first image layer
        (:attr:`image_at`)."""
        return self._augment

    @property
    def image_at(self) -> int | None:
        """The index of the first layer that makes each row an image (a reshape to height, width, channels)."""
        return next((i for i, layer in enumerate(self.layers)
                     if isinstance(layer, ReshapeLayer) and len(layer.target_shape) == 3), None)

    def check_shapes(self) -> None:
        """Refuse a layer that cannot take its input: Keras would only fail when the model is built, after the data
        is loaded, with a message about ndim. `rank` counts the axes besides the batch's: a row of features (the
        model's input) has 1, a sequence 2, an image (or a sequence of sequences) 3, a sequence of images 4; a
        time-distributed layer takes one axis more than its step layer. Where the sizes are known (after a reshape), a
        convolution or pooling window larger than its input is refused too: Keras would fail when it builds the layer.
        Raises :class:`AtKey` below the model's key."""
        shape: list[int | None] = [None]  # the axes besides the batch's; None where the data decides the size
        source = None  # the last layer that set the rank
        for i, layer in enumerate(self.layers):
            rank = len(shape)
            needed = input_rank(layer)
            if isinstance(layer, TimeDistributedLayer) and needed is None and rank < 2:
                needed = 2  # its step layer takes any input: the steps' axis is the one it needs
            if needed is not None and rank != needed:
                names, hints = (STEP_NAMES, STEP_HINTS) if isinstance(layer, TimeDistributedLayer) and needed > 2 \
                    else (RANK_NAMES, RANK_HINTS)
                if isinstance(source, tuple):
                    j, before = source
                    if isinstance(before, SEQUENCE_READERS) and not before.return_sequences and needed == rank + 1:
                        key = "layer.return_sequences" if isinstance(before, BidirectionalLayer) else "return_sequences"
                        raise AtKey(f"layers[{j}].{key}", f"layers[{j}] ({before.type}) feeds layers[{i}] "
                                    f"({layer_name(layer)}), which takes a sequence: set `return_sequences: true` on "
                                    f"layers[{j}]. Received: false")
                    if rank == needed + 1 and keeps_steps(before):
                        raise AtKey(f"layers[{i}].type", f"layers[{i}] ({layer_name(layer)}) takes {names[needed]}, "
                                    f"but layers[{j}] ({layer_name(before)}) gives each step {rank - 1} axes: flatten "
                                    f"each step first, with a {{type: time_distributed, layer: {{type: flatten}}}} "
                                    f"before layers[{i}]")
                raise AtKey(f"layers[{i}].type", f"layers[{i}] ({layer_name(layer)}) takes {names[needed]}, but its "
                            f"input is {rank_name(rank)}{hints[needed]}")
            given, shape = shape, output_shape(layer, shape)
            if any(size is not None and size <= 0 for size in shape):
                windowing = layer.layer if isinstance(layer, TimeDistributedLayer) else layer
                key = window_key(layer)  # only a window makes a size 0 or less
                window = getattr(windowing, key.rsplit(".", 1)[-1])
                padding = ", or set `padding: same`" if "padding" in type(windowing).model_fields else ""
                raise AtKey(f"layers[{i}].{key}", f"layers[{i}] ({layer_name(layer)}) slides a window of "
                            f"{sizes_text(window)} over an input of {sizes_text(given)}, and a window larger than its "
                            f"input gives no output: make it smaller{padding}. Received: "
                            f"{list(window) if isinstance(window, tuple) else window}")
            if not isinstance(layer, PASS_THROUGH_LAYERS):
                source = (i, layer)
        rank = len(shape)
        if rank != 1:  # the targets are one value, or one vector, a row
            last = len(self.layers) - 1
            raise AtKey(f"layers[{last}].type", f"the model ends in {rank_name(rank)}, "
                        f"but predicts one value or vector a row: end it with a flatten (of a time_distributed "
                        f"layer's steps, of a conv_lstm2d's maps), a global pooling, or a recurrent layer without "
                        f"return_sequences. Received: {layer_name(self.layers[last])}")

    @property
    def stackable(self) -> bool:
        """Whether k copies of this model can train as one stacked program (see ``tasks/training/stacked.py``): Dense
        and Dropout layers, without an activity penalty (the zero rows padding a shorter slot would add to it)."""
        return all(isinstance(layer, STACKABLE_LAYERS) and getattr(layer, "activity_regularizer", None) is None
                   for layer in self.layers)

    @property
    def stateful(self) -> bool:
        return any(isinstance(layer, LSTMLayer) and layer.stateful for layer in self.layers)

    @property
    def pretrained(self) -> bool:
        """Whether a layer is a `keras.applications` base, which only Keras can check against its input and weights
        file: the command builds such a model before any flow starts."""
        return any(isinstance(layer, PretrainedLayer) for layer in self.layers)


class LossSpec(Configured):
    """A loss with arguments, as the books construct one: ``{name: categorical_crossentropy, label_smoothing: 0.1}``,
    ``{name: huber, delta: 2.0}``, ``{name: binary_focal_crossentropy, gamma: 2.0}``. Any argument of that Keras
    loss is allowed but those kerasflow sets (``from_logits``: its models end in their activation)."""


class OptimizerSpec(Configured):
    """An optimizer with arguments, as the books construct one: ``{name: sgd, learning_rate: 0.1, momentum: 0.8,
    nesterov: true}``. Any argument of that Keras optimizer is allowed, and the books' Keras 1/2 ``lr`` and
    ``decay`` are read as they meant (:data:`LEGACY_OPTIMIZER_ARGUMENTS`)."""

    @property
    def arguments(self) -> dict[str, Any]:
        """The Keras 3 arguments: ``lr`` named ``learning_rate``, without ``decay`` (a schedule: see `decay`)."""
        extra = self.model_extra or {}
        return {("learning_rate" if key == "lr" else key): value for key, value in extra.items() if key != "decay"}

    @property
    def decay(self) -> float:
        """Keras 1/2's per-step decay of the learning rate; 0 for none."""
        return float((self.model_extra or {}).get("decay", 0.0))


class InverseTimeSchedule(Section):
    """``learning_rate / (1 + decay_rate * t)`` (Keras' InverseTimeDecay): `t` is the batches trained over `every`
    (per: step), or the whole multiples of `every` epochs trained (per: epoch, the rate changing at epoch ends)."""

    type: Literal["inverse_time"]
    decay_rate: float = Field(gt=0)
    every: Count = Field(default=1, description="the batches or epochs `t` counts as one")
    per: Literal["step", "epoch"] = "step"


class ExponentialSchedule(Section):
    """``learning_rate * decay_rate ** t`` (Keras' ExponentialDecay), `t` as for :class:`InverseTimeSchedule`."""

    type: Literal["exponential"]
    decay_rate: float = Field(gt=0, lt=1)
    every: Count = 1
    per: Literal["step", "epoch"] = "epoch"


class StepSchedule(Section):
    """The books' step decay: the rate times `factor` after every `every` epochs (epochs 1..every at the first
    rate, the next `every` at rate * factor, ...)."""

    type: Literal["step"]
    factor: float = Field(gt=0, lt=1)
    every: Count


class PiecewiseSchedule(Section):
    """Fixed rates for spans of epochs (Keras' PiecewiseConstantDecay, as the books give it epochs times the steps
    an epoch): `values[0]` until epoch `boundaries[0]` has ended, `values[1]` until `boundaries[1]`, ..., the last
    value after the last boundary. The rates are the values, so `learning_rate` is not given with them."""

    type: Literal["piecewise"]
    boundaries: list[Count] = Field(min_length=1, description="epochs, rising: the last epoch of each span")
    values: list[Annotated[float, Field(gt=0)]] = Field(min_length=2, description=(
        "the rate of each span: one more than boundaries"))

    @model_validator(mode="after")
    def _spans(self) -> "PiecewiseSchedule":
        if self.boundaries != sorted(set(self.boundaries)):
            raise AtKey("boundaries", f"must rise, each epoch once. Received: {self.boundaries}")
        if len(self.values) != len(self.boundaries) + 1:
            raise AtKey("values", f"needs one rate more than boundaries ({len(self.boundaries)}): one for each span, "
                        f"the last after the last boundary. Received: {len(self.values)} values")
        return self


class CosineSchedule(Section):
    """Cosine decay over the whole training, from the rate to ``alpha`` times it (Keras' CosineDecay)."""

    type: Literal["cosine"]
    alpha: float = Field(default=0.0, ge=0, lt=1)


class ReduceOnPlateauSchedule(Section):
    """The rate times `factor` when `monitor` has not improved by `min_delta` for `patience` epochs (Keras'
    ReduceLROnPlateau); `monitor` is ``loss``, ``val_loss``, the metric, or ``val_`` + the metric (on
    `train.validation_split`'s share of the rows each model trains on)."""

    type: Literal["reduce_on_plateau"]
    monitor: str = "val_loss"
    factor: float = Field(default=0.1, gt=0, lt=1)
    patience: int = Field(default=10, ge=0)
    min_delta: float = Field(default=0.0001, ge=0)
    min_lr: float = Field(default=0.0, ge=0)


RISING = tuple(dict.fromkeys(METRICS_BY_TASK["binary"] + METRICS_BY_TASK["multiclass"]))
"""The scores that improve as they rise: every classification score; losses, errors and perplexity improve as they
fall."""


def monitor_mode(monitor: str) -> Literal["min", "max"]:
    """Whether a logged score (`loss`, `val_accuracy`...) improves as it falls or as it rises (:data:`RISING`).

    Examples
    --------
    >>> monitor_mode("val_accuracy"), monitor_mode("val_loss"), monitor_mode("rmse"), monitor_mode("val_recall")
    ('max', 'min', 'min', 'max')
    """
    return "max" if monitor.removeprefix("val_") in RISING else "min"


class EarlyStoppingSpec(Section):
    """Keras' EarlyStopping: a model stops training once `monitor` has not improved by `min_delta` for `patience`
    epochs (counted from `start_from_epoch`); with `restore_best_weights` it ends with its best epoch's weights.
    `monitor` is as reduce_on_plateau's: a ``val_`` score is of `train.validation_split`'s share of the rows each
    model trains on, never of the rows a fold is scored on."""

    monitor: str = "val_loss"
    patience: int = Field(default=0, ge=0)
    min_delta: float = Field(default=0.0, ge=0)
    restore_best_weights: bool = False
    start_from_epoch: int = Field(default=0, ge=0)


LRScheduleSpec = Annotated[Union[InverseTimeSchedule, ExponentialSchedule, StepSchedule, PiecewiseSchedule,
                                 CosineSchedule, ReduceOnPlateauSchedule], Field(discriminator="type")]


COUPLING_ARGUMENTS = ("clipnorm", "global_clipnorm")
"""Optimizer arguments that scale a variable's gradient by its norm: over a stacked kernel that norm would mix the
slots, so a model trained with them is not stacked."""

COUPLING_OPTIMIZERS = ("adafactor", "muon")
"""Optimizers whose update of a variable depends on the whole variable (Adafactor's RMS clipping and relative step
take its RMS, Muon orthogonalises it): over a stacked kernel they would mix the slots, so a model trained with them
is not stacked."""


class TrainSpec(Section):
    optimizer: str | OptimizerSpec = Field(default="adam", description="a Keras optimizer's name, or {name: ..., "
                                                                         "<argument>: ...}")
    learning_rate: float | None = Field(default=None, gt=0, description="None keeps the optimizer's default")
    loss: str | LossSpec | None = Field(default=None, description="a Keras loss's name, or {name: ..., <argument>: "
                                                                 "...}; None picks the task's usual loss")
    lr_schedule: LRScheduleSpec | None = Field(default=None, description="how the learning rate changes as it trains")
    early_stopping: EarlyStoppingSpec | None = None
    checkpoint: Literal["last", "best"] = Field(default="last", description=(
        "best: the refit keeps its best epoch's weights, by early_stopping's monitor (else val_loss) on its "
        "validation split, as the books' ModelCheckpoint(save_best_only=True); last: its last epoch's"))
    validation_split: float | None = Field(default=None, gt=0, lt=1, description=(
        "the share of the rows a model trains on held out, as Keras' validation_split (the training part rounded "
        "down): the refit's, and each fold's where early stopping or reduce_on_plateau follows a val_ score: what "
        "those val_ scores are measured on, never a fold's held-out rows. The last rows where the evaluation keeps "
        "time order (shuffle false), as Keras'; else drawn with evaluate.seed, stratified where the evaluation is. "
        "The preprocessing is fitted on the other rows"))
    init_from: str | None = Field(default=None, min_length=1, description=(
        "a saved model folder (results/<experiment>/model): the model starts from its weights and reuses its fitted "
        "preprocessing; only experiments under `continued:` take it"))
    class_weight: Literal["balanced"] | dict[str | int | float | bool, float] | None = Field(
        default=None, description=(
            "how much each class's training rows weigh in the loss, as Keras' fit(class_weight=...) weighs them: "
            "{label: weight}, keyed by the target's labels (not Keras' class indices; labels left out weigh 1), or "
            "balanced: n_rows / (n_classes * rows of the class), counted on each fold's training rows"))
    epochs: Count
    batch_size: Count
    seed: Seed = 0

    @field_validator("optimizer", mode="before")
    @classmethod
    def _known_optimizer(cls, value: object) -> object:
        return check_configured("optimizers", value, LEGACY_OPTIMIZER_ARGUMENTS)

    @field_validator("class_weight", mode="before")
    @classmethod
    def _class_weight(cls, value: object) -> object:
        """One message for each way it can be wrong, not one per member of the union."""
        if value is None or value == "balanced":
            return value
        if not isinstance(value, dict) or not value:
            raise ValueError("is balanced or {label: weight, ...}")
        for label, weight in value.items():
            # Positive and finite in float32, as the sample weights that carry it are (a weight of 0 marks padding).
            if isinstance(weight, bool) or not isinstance(weight, int | float) or not 1e-30 <= weight <= 1e30:
                raise ValueError(f"the weight of label {label!r} must be a number from 1e-30 to 1e30. "
                                 f"Received: {weight!r}")
        return value

    @model_validator(mode="after")
    def _one_learning_rate(self) -> "TrainSpec":
        given = {} if isinstance(self.optimizer, str) else self.optimizer.arguments
        if self.learning_rate is not None and "learning_rate" in given:
            raise AtKey("learning_rate", "is given twice, here and in train.optimizer; keep one. Received: "
                        f"{self.learning_rate} and {given['learning_rate']}")
        if isinstance(self.lr_schedule, PiecewiseSchedule) and (self.learning_rate is not None or
                                                                 "learning_rate" in given):
            raise AtKey("learning_rate", "is given twice: the piecewise schedule's values are the rates, the first "
                        "until its first boundary; keep those")
        if self.lr_schedule is not None and self.decay:
            raise AtKey("lr_schedule", "and train.optimizer.decay both change the learning rate: decay is Keras "
                        "1/2's inverse-time schedule (lr_schedule: {type: inverse_time, decay_rate: ...}); keep one")
        return self

    @property
    def decay(self) -> float:
        """The books' Keras 1/2 `decay` of the optimizer; 0 for none."""
        return 0.0 if isinstance(self.optimizer, str) else self.optimizer.decay

    @property
    def scheduled(self) -> bool:
        """Whether the learning rate changes as it trains: then each epoch's rate is recorded in the history."""
        return self.lr_schedule is not None or self.decay > 0

    @property
    def optimizer_name(self) -> str:
        return self.optimizer if isinstance(self.optimizer, str) else self.optimizer.name

    @property
    def optimizer_arguments(self) -> dict[str, Any]:
        """The optimizer's Keras 3 arguments, `train.learning_rate` included (not the books' `decay`)."""
        arguments = {} if isinstance(self.optimizer, str) else self.optimizer.arguments
        if self.learning_rate is not None:
            arguments["learning_rate"] = self.learning_rate
        return arguments

    @property
    def stackable(self) -> bool:
        """Whether models trained this way can be stacked: no gradient clipping by norm (:data:`COUPLING_ARGUMENTS`),
        no optimizer that updates a variable from all of it (:data:`COUPLING_OPTIMIZERS`) and no rate that follows a
        fold's own scores (reduce_on_plateau): the slots share their optimizer's variables."""
        return not any(arg in self.optimizer_arguments for arg in COUPLING_ARGUMENTS) \
            and self.optimizer_name.lower() not in COUPLING_OPTIMIZERS \
            and not isinstance(self.lr_schedule, ReduceOnPlateauSchedule)

    @property
    def monitors(self) -> dict[str, str]:
        """The scores the training's callbacks follow, by the key that names each (`train.early_stopping.monitor`)."""
        found = {}
        if isinstance(self.lr_schedule, ReduceOnPlateauSchedule):
            found["train.lr_schedule.monitor"] = self.lr_schedule.monitor
        if self.early_stopping is not None:
            found["train.early_stopping.monitor"] = self.early_stopping.monitor
        if self.checkpoint == "best":
            found["train.checkpoint"] = self.best_monitor
        return found

    @property
    def validates(self) -> bool:
        """Whether a callback of every model's training (each fold's and the refit's) follows a `val_` score: then
        each trains on all but `validation_split`'s share of its rows and scores those each epoch, never the
        rows a fold is scored on, which would choose its epoch or rate by its own test."""
        return any(monitor.startswith("val_") for key, monitor in self.monitors.items() if key != "train.checkpoint")

    @property
    def best_monitor(self) -> str:
        """What `checkpoint: best` keeps the best epoch by."""
        return self.early_stopping.monitor if self.early_stopping is not None else "val_loss"

    @field_validator("checkpoint", mode="before")
    @classmethod
    def _checkpoint_kind(cls, value: object) -> object:
        if value not in ("last", "best"):  # the books' ModelCheckpoint(monitor=..., save_best_only=True) included
            raise ValueError("must be 'best' or 'last'; best keeps the refit's best epoch by "
                             "train.early_stopping.monitor (val_loss without early stopping), as the books' "
                             "ModelCheckpoint(save_best_only=True) by that monitor")
        return value

    @field_validator("loss", mode="before")
    @classmethod
    def _known_loss(cls, value: object) -> object:
        if value is None:
            return None
        if isinstance(value, str):
            return check_name("losses", LOSS_ALIASES.get(value, value))
        if isinstance(value, dict) and isinstance(value.get("name"), str):
            name = LOSS_ALIASES.get(value["name"], value["name"])
            if name not in TRAINED_LOSSES:  # Keras' other losses take no part here: refused by name, arguments unread
                try:
                    check_name("losses", name)
                except ValueError as exc:
                    raise AtKey("name", str(exc)) from None
                raise AtKey("name", f"is not a loss kerasflow trains with. Allowed: {', '.join(TRAINED_LOSSES)}. "
                                    f"Received: {name!r}")
            value = {**value, "name": name}
        return check_configured("losses", value)

    @property
    def loss_name(self) -> str | None:
        return self.loss if isinstance(self.loss, str | None) else self.loss.name


class EvaluateSpec(Section):
    """How the model is scored: never on rows it (or its preprocessing) was fitted on."""

    method: Literal["kfold", "holdout", "timeseries"] = "kfold"
    n_splits: int = Field(default=10, ge=2)
    n_repeats: Count = 1
    shuffle: bool = True
    stratify: bool = False
    test_size: float = Field(default=0.2, gt=0.0, lt=1.0)
    seed: Seed = 0
    metric: str | None = Field(default=None, description=(
        "None picks accuracy (classification) or mse; a binary task may be scored by precision, recall or f1 of "
        "the class its labels sort last, or by auc (ROC) or pr_auc (precision-recall), a classification by "
        "precision_macro, recall_macro or f1_macro (the mean over the classes found, as scikit-learn's); a "
        "multiclass task's auc and pr_auc are the mean of each class's curve against the others; a multilabel "
        "task's accuracy, precision, recall and f1 count every label of every row (Keras' on the label columns), "
        "its auc and pr_auc are the mean of each label's curve, its precision_macro, recall_macro and f1_macro the "
        "mean of each label's score"))
    stack_folds: bool = Field(default=True, description="train the folds of a Dense model as one program")
    refit: bool = Field(default=True, description="retrain on all rows and save the model")
    parallel: Literal["auto", "none", "ray"] = Field(
        default="auto", description="folds (and refit) of a model that cannot stack as Ray tasks: 'ray' always, "
                                    "'auto' when RAY_ADDRESS names a cluster of several nodes or a GPU, 'none' one "
                                    "after another here")
    cpu: float = Field(default=1.0, gt=0.0, description="CPUs each fold's (and the refit's) Ray task asks for")
    gpu: float = Field(default=0.0, ge=0.0, description="GPUs each fold's (and the refit's) Ray task asks for "
                                                        "(fractions share one)")

    @model_validator(mode="before")
    @classmethod
    def _time_order_by_default(cls, raw: object) -> object:
        """`shuffle` unwritten is false for method 'timeseries' (its folds follow time), true for the others."""
        if isinstance(raw, dict) and raw.get("method") == "timeseries" and "shuffle" not in raw:
            return {**raw, "shuffle": False}
        return raw

    @model_validator(mode="after")
    def _consistent(self) -> "EvaluateSpec":
        # As scikit-learn's KFold does, refuse settings that would silently do nothing.
        if self.method == "timeseries" and self.shuffle:
            raise AtKey("shuffle", "must be false for method 'timeseries': time order is the point. Received: true")
        if self.n_repeats > 1 and not self.shuffle:
            raise AtKey("n_repeats", f"> 1 needs `shuffle: true`, or every repeat is the same. "
                      f"Received: n_repeats={self.n_repeats}, shuffle=false")
        if self.method == "timeseries" and self.stratify:
            raise AtKey("stratify", "cannot be used with method 'timeseries'. Received: true")
        if self.method == "holdout" and self.stratify and not self.shuffle:
            raise AtKey("shuffle", "must be true for a stratified hold-out: the held-out rows are drawn from each "
                        "class (scikit-learn's train_test_split). Received: false")
        if self.gpu > 1 and self.gpu != int(self.gpu):
            raise AtKey("gpu", f"above 1 must be a whole number. Received: {self.gpu}")
        return self

    @property
    def n_folds(self) -> int:
        """The models this evaluation trains and scores: one per fold of every repeat, one for a hold-out split."""
        return 1 if self.method == "holdout" else self.n_splits * self.n_repeats


class ExperimentSpec(Section):
    """One experiment: data, preprocessing, model, training and evaluation."""

    dataset: DatasetSpec
    preprocess: PreprocessSpec = PreprocessSpec()
    model: ModelSpec
    train: TrainSpec
    evaluate: EvaluateSpec = EvaluateSpec()

    @property
    def loss(self) -> str:
        """The loss's name (its arguments: `loss_arguments`)."""
        return self.train.loss_name or DEFAULT_LOSS[self.dataset.task]

    @property
    def loss_arguments(self) -> dict[str, Any]:
        """The loss's arguments besides the targets and predictions (`train.loss: {name: ..., <argument>: ...}`)."""
        return {} if isinstance(self.train.loss, str | None) else self.train.loss.arguments

    @property
    def metric(self) -> str:
        return self.evaluate.metric or METRICS_BY_TASK[self.dataset.task][0]

    @property
    def higher_is_better(self) -> bool:
        return monitor_mode(self.metric) == "max"

    def with_overrides(self, overrides: dict[str, Any]) -> "ExperimentSpec":
        """A validated copy with dotted keys replaced: `{"train.epochs": 5, "model.layers[0].units": 8}`.

        Two keys reach several layers, as the books' grids do: `model.widths` sets the hidden Dense layers'
        widths (a list: one Dense per width, each like the first hidden Dense layer), leaving the output layer
        alone; `model.initializer` sets the kernel initializer of every layer that has one.
        """
        raw = apply_overrides(self.model_dump(mode="json", exclude_unset=False), overrides)
        # A default that follows another key follows its override too: `shuffle`, unwritten, is a timeseries
        # evaluation's false and any other's true (EvaluateSpec), not the filled-in value of the method overridden.
        if "shuffle" not in self.evaluate.model_fields_set and not any(
                key in ("evaluate", "evaluate.shuffle") for key in overrides):
            raw["evaluate"].pop("shuffle", None)
        changed = ExperimentSpec.model_validate(raw)
        if self._where:
            changed.locate(self._where, str(changed.dataset.file), changed.dataset.header)
        return changed

    @model_validator(mode="after")
    def _fits_task(self) -> "ExperimentSpec":
        task = self.dataset.task
        loss = self.train.loss_name
        # Without Keras (load_params' first pass) an unknown loss got past its name check: the second pass names it.
        known = checking() or loss in TRAINED_LOSSES
        if loss is not None and loss not in LOSSES_BY_TASK[task] and known:
            raise AtKey("train.loss", f"does not fit task {task!r} (dataset.task). Allowed: "
                      f"{', '.join(LOSSES_BY_TASK[task])}. Received: {loss!r}")
        if self.evaluate.metric is not None and self.evaluate.metric not in METRICS_BY_TASK[task]:
            raise AtKey("evaluate.metric", f"does not fit task {task!r} (dataset.task). Allowed: "
                      f"{', '.join(METRICS_BY_TASK[task])}. Received: {self.evaluate.metric!r}")
        if self.evaluate.stratify and task not in STRATIFIED_TASKS:
            raise AtKey("evaluate.stratify", f"needs the classes of a binary or multiclass task, or the labels of a "
                        f"multilabel one, to stratify by; dataset.task is {task!r}. Received: true")
        if self.evaluate.stratify and task == "multilabel" and not self.evaluate.shuffle:
            raise AtKey("evaluate.shuffle", "must be true to stratify a multilabel task: iterative stratification "
                        "deals the rows out in a seeded random order (evaluate.seed). Received: false")
        if self.preprocess.lookback is not None:
            if task != "regression":
                raise AtKey("preprocess.lookback", f"forecasts a numeric series: it needs task 'regression'. "
                          f"Received: lookback {self.preprocess.lookback} with task {task!r}")
            if self.evaluate.shuffle or self.evaluate.method == "kfold":
                # Windows overlap: a shuffled or k-fold split trains on rows holding the test rows' values.
                raise AtKey("preprocess.lookback", "needs a time-ordered evaluation: evaluate.method 'timeseries', "
                          "or 'holdout' with evaluate.shuffle false. Received: method "
                          f"{self.evaluate.method!r}, shuffle {self.evaluate.shuffle}")
        if self.train.class_weight is not None and task not in ("binary", "multiclass"):
            raise AtKey("train.class_weight", f"weighs the rows of each class: it needs task 'binary' or "
                        f"'multiclass'. Received: task {task!r}")
        if self.preprocess.steps_out > 1 and self.model.stateful:
            raise AtKey("preprocess.steps_out", "a stateful LSTM reads every window in time order, but a multi-step "
                        "forecast leaves out the training windows whose targets are held out: use a stateless model "
                        f"or steps_out 1. Received: {self.preprocess.steps_out}")
        if self.preprocess.scale_target and (task != "regression" or self.preprocess.scale == "none"):
            raise AtKey("preprocess.scale_target", "needs task 'regression' and a `scale` (standard or minmax) "
                      f"to apply to the target. Received: task {task!r}, scale {self.preprocess.scale!r}")
        if self.preprocess.scale_target and self.loss == "mean_squared_logarithmic_error":
            raise AtKey("preprocess.scale_target", "takes the loss in scaled units, where targets and predictions "
                        "fall below 0, and mean_squared_logarithmic_error clips those to 0 (no gradient): train it "
                        "in the data's units (scale_target false), or with another loss")
        logged = ("loss", "val_loss", self.metric, f"val_{self.metric}")
        for key, monitor in self.train.monitors.items():
            if monitor not in logged:
                hint = difflib.get_close_matches(monitor, logged, n=1)
                raise AtKey(key, "names no score this experiment logs" + (
                    f"; did you mean {hint[0]!r}?" if hint else "") + f" Allowed: {', '.join(logged)}. "
                    f"Received: {monitor!r}")
            if monitor.startswith("val_") and self.train.validation_split is None and (
                    key != "train.checkpoint" or self.evaluate.refit):
                raise AtKey("train.validation_split", f"is required: {key} follows {monitor!r}, measured on a share "
                            f"of the rows each model trains on (each fold's and the refit's; e.g. 0.2), never "
                            f"on the rows a fold is scored on. Received: none")
        self._check_tokens()
        self._check_text()
        if self.preprocess.augment is not None:
            if self.model.image_at is None:
                raise AtKey("preprocess.augment", "transforms images: the model must make each row one with a "
                            "reshape to [height, width, channels] (e.g. {type: reshape, target_shape: [32, 32, 3]}) "
                            "as its first image layer. Received: no such reshape in model.layers")
            if self.preprocess.augment.featurewise and self.model.image_at != 0:
                raise AtKey("preprocess.augment", "featurewise statistics are the input images': the reshape to "
                            "[height, width, channels] must be model.layers[0]. Received: it is "
                            f"model.layers[{self.model.image_at}]")
            self.model._augment = self.preprocess.augment
        try:
            self.model.check_shapes()
        except AtKey as problem:  # named from the experiment: after the text check, which knows why
            raise AtKey(f"model.{problem.key}", str(problem)) from None
        if self.model.stateful:
            # State flows from each row to the next: rows must come one at a time and in time order.
            if self.train.batch_size != 1:
                raise AtKey("train.batch_size", f"a stateful LSTM needs batch_size 1. "
                          f"Received: {self.train.batch_size}")
            if self.evaluate.shuffle:
                raise AtKey("evaluate.shuffle", "a stateful LSTM needs time-ordered rows: set evaluate.shuffle false "
                          "(method 'timeseries', or 'holdout' for a chronological split). Received: true")
        return self

    def _check_tokens(self) -> None:
        """Next-token prediction reads windows of token ids from a text file and scores the held-out tail."""
        tokens, evaluate = self.preprocess.tokens, self.evaluate
        if (tokens is None) != (self.dataset.task != "next_token"):
            raise AtKey("preprocess.tokens", "goes with task next_token, and next_token needs it (e.g. {level: char, "
                        f"window: 40, num_words: 60}}). Received: task {self.dataset.task!r}, tokens "
                        f"{'none' if tokens is None else 'given'}")
        if tokens is None:
            return
        if evaluate.method != "holdout" or evaluate.shuffle:
            raise AtKey("evaluate.method", "next_token scores the held-out tail of the text: method 'holdout' with "
                        f"shuffle false. Received: method {evaluate.method!r}, shuffle {evaluate.shuffle}")
        if not isinstance(self.model.layers[0], EmbeddingLayer):
            raise AtKey("model.layers[0].type", "next_token reads token ids, which are categories, not magnitudes: "
                        f"model.layers[0] must be an embedding. Received: {self.model.layers[0].type!r}")
        self.model._num_words = tokens.num_words

    def _check_text(self) -> None:
        """A text column needs a layout that names it and a model that starts from its token ids, or, as a bag of
        words, from a vector."""
        text = self.preprocess.text
        embeddings = [(i, layer) for i, layer in enumerate(self.model.layers) if isinstance(layer, EmbeddingLayer)]
        for i, layer in embeddings:
            if layer.weights is not None and (i != 0 or text is None):
                raise AtKey(f"model.layers[{i}].weights", "gives the words of preprocess.text their vectors: only "
                            "model.layers[0], an embedding reading a text column's token ids, can take it. Received: "
                            f"{layer.weights!r} on model.layers[{i}]"
                            + ("" if text is not None else ", and no preprocess.text"))
        if text is None and self.preprocess.tokens is not None:
            return
        if text is None:
            unsized = [i for i, layer in embeddings if layer.input_dim is None]
            if unsized:
                raise AtKey(f"model.layers[{unsized[0]}].input_dim", "is required: only preprocess.text (its "
                          "num_words) can size an embedding that gives none. Received: none")
            return
        if self.dataset.header and not isinstance(text.column, str):
            raise AtKey("preprocess.text.column", f"must be the column's name when the file "
                      f"has a header row (dataset.header true). Received: {text.column!r}")
        if not self.dataset.header and not isinstance(text.column, int):
            raise AtKey("preprocess.text.column", f"with `header: false` it must be a 0-based "
                      f"column index. Received: {text.column!r}")
        if text.column in self.dataset.targets:
            raise AtKey("preprocess.text.column", f"names the same column as dataset.target; the target cannot be "
                      f"the input too. Received: {text.column!r}")
        if text.bag:
            if embeddings:
                raise AtKey(f"model.layers[{embeddings[0][0]}].type", f"preprocess.text.output_mode "
                            f"{text.output_mode} gives each text as one vector of num_words values, not token ids: "
                            f"start the model with a dense layer (the books' Dense(16, activation='relu')), or set "
                            f"output_mode int for an embedding. Received: 'embedding'")
            return
        if not isinstance(self.model.layers[0], EmbeddingLayer):
            raise AtKey("model.layers[0].type", f"preprocess.text gives token ids, which are categories, not "
                      f"magnitudes: model.layers[0] must be an embedding (or set preprocess.text.output_mode "
                      f"multi_hot for a bag of words). Received: {self.model.layers[0].type!r}")
        for i, layer in embeddings:
            if layer.input_dim is not None and layer.input_dim < text.num_words:
                raise AtKey(f"model.layers[{i}].input_dim", f"must be >= "
                          f"preprocess.text.num_words ({text.num_words}), the number of token ids, or be left out "
                          f"to take it. Received: {layer.input_dim}")
        self.model._num_words = text.num_words


def experiment_key(spec: ExperimentSpec, name: str, key: str) -> str:
    """`key` of experiment `name` as errors name it: where params.yaml holds it, or under `experiments.<name>` for a
    spec built in code."""
    return spec.key(key) if spec.located else f"experiments.{name}.{key}"


EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
"""What an experiment's name may be: it becomes a folder (`results/<name>`) and a DVC stage (`evaluate@<name>`)."""


class TrackingSpec(Section):
    """Where runs are tracked besides ``results/`` (tasks/outputs/mlflow_runs.py)."""

    mlflow: str | None = Field(default=None, description="an MLflow tracking URI (http://host:5000, sqlite:///...); "
                                                         "an explicit MLFLOW_TRACKING_URI wins")
    tensorboard: str | None = Field(default=None, min_length=1, description=(
        "a folder for TensorBoard: every fold's epochs logged there as they train (tensorboard --logdir <folder>), "
        "each run and sweep in a folder of its own"))


class Params(Section):
    """The whole of ``params.yaml``."""

    backend: Backend = Field(default=DEFAULT_BACKEND, description="the Keras backend every experiment trains on; "
                                                                "an explicit KERAS_BACKEND wins")
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    experiments: dict[str, ExperimentSpec] = Field(min_length=1)
    continued: dict[str, ExperimentSpec] = Field(default_factory=dict, description=(
        "experiments that start from a saved model (train.init_from), each its own DVC stage (continue@<name>) "
        "depending on that folder; {} for none (required in the params.yaml dvc.yaml reads)"))
    sweeps: dict[str, SearchSpec] = Field(default_factory=dict, description=(
        "keyed by experiment name; {} for none (required in the params.yaml dvc.yaml reads)"))
    _notes: list[str] = PrivateAttr(default_factory=list)

    @property
    def notes(self) -> list[str]:
        """What the file still says in a deprecated form, one line each (the command prints them)."""
        return self._notes

    @property
    def every_experiment(self) -> dict[str, ExperimentSpec]:
        """`experiments`, then `continued`: the order they run in when a command names none, so that a continued
        experiment can start from a model an experiment of the same command writes."""
        return {**self.experiments, **self.continued}

    @field_validator("experiments", "continued")
    @classmethod
    def _names_stay_inside_the_project(cls, experiments: dict[str, ExperimentSpec]) -> dict[str, ExperimentSpec]:
        for name in experiments:
            if not EXPERIMENT_NAME.fullmatch(name) or ".." in name:
                raise AtKey(name, "an experiment's name becomes a folder (results/<name>) and a DVC stage "
                            "(evaluate@<name>): use letters, digits, '_', '-' and '.', starting with a letter or "
                            f"digit, without '..'. Received: {name!r}")
        return experiments

    @model_validator(mode="before")
    @classmethod
    def _sections_present(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict) and (info.context or {}).get(DVC_READS):
            # dvc.yaml's tune and continue stages iterate over these keys: without them DVC cannot read the pipeline.
            # Both named at once when both are missing, as in a user's first file. Another file (`--params`) may
            # leave them out: no DVC stage reads it.
            missing = [(key, stage) for key, stage in (("sweeps", "tune"), ("continued", "continue"))
                       if key not in data]
            if len(missing) == 1:
                (key, stage), = missing
                raise ValueError(f"`{key}:` is required (dvc.yaml's {stage} stage iterates over it); "
                                 f"write `{key}: {{}}` when there is none")
            if missing:
                raise ValueError("`sweeps:` and `continued:` are required (dvc.yaml's tune and continue stages "
                                 "iterate over them); write `sweeps: {}` and `continued: {}` when there are none")
        return data

    @model_validator(mode="after")
    def _init_from_only_where_dvc_tracks_it(self) -> "Params":
        twice = [name for name in self.continued if name in self.experiments]
        if twice:
            raise AtKey(f"continued.{twice[0]}", "names an experiment of `experiments:` too; each name is one "
                        "folder results/<name>: rename one")
        for name, experiment in self.experiments.items():
            if experiment.train.init_from is not None:
                raise AtKey(f"experiments.{name}.train.init_from", "an experiment that starts from a saved model "
                            "goes under `continued:`, whose DVC stage (continue@<name>) depends on the model folder "
                            "(DVC cannot give only some items of evaluate's foreach a dependency). Received: "
                            f"{experiment.train.init_from!r}")
        for name, experiment in self.continued.items():
            if experiment.train.init_from is None:
                raise AtKey(f"continued.{name}.train.init_from", "is required: a continued experiment starts from "
                            "a saved model folder, e.g. results/<experiment>/model (else put it under "
                            "`experiments:`). Received: none")
        return self

    @model_validator(mode="after")
    def _sweeps_name_experiments(self) -> "Params":
        continued = [name for name in self.sweeps if name in self.continued]
        if continued:
            raise AtKey(f"sweeps.{continued[0]}", "names a continued experiment; sweeps tune the experiments of "
                        f"`experiments:` only. Defined: {', '.join(self.experiments)}")
        unknown = [name for name in self.sweeps if name not in self.experiments]
        if unknown:
            hint = difflib.get_close_matches(unknown[0], self.experiments, n=1)
            raise AtKey(f"sweeps.{unknown[0]}", f"sweeps {unknown} name no experiment"
                      + (f"; did you mean {hint[0]!r}?" if hint else "") + f" Defined: {', '.join(self.experiments)}")
        for name, sweep in self.sweeps.items():
            experiment = self.experiments[name]
            if experiment.dataset.task == "next_token" and sweep.scoring == "holdout":
                raise AtKey(f"sweeps.{name}.scoring", "a next_token experiment scores on its text's held-out tail, "
                            "as its evaluate section splits it: use scoring 'kfold' (its own split). Received: "
                            "'holdout'")
            for key, dist in sweep.space.items():
                if key.split(".")[0] == "dataset":
                    raise AtKey(f"sweeps.{name}.space.{key}", "a sweep reads the experiment's data once, for all its "
                                "trials: it sweeps model, train, preprocess and evaluate keys; compare data sets as "
                                f"experiments of their own (kerasflow compare). Received: {dist!r}")
                # Try every listed value, and both ends of a range, now: a bad key or value (`sgdd` as the second
                # of two optimizers) fails before any trial starts, not in the trial that draws it.
                (kind, values), = dist.items()
                samples = extremes(kind, values)
                for sample in samples:
                    problem = _override_problem(experiment, {key: sample})
                    if problem is not None:
                        raise AtKey(f"sweeps.{name}.space.{key}", f"{problem}. Tried: {sample!r}")
            _check_joint_configs(name, experiment, sweep)
            longest = sweep.max_epochs(experiment.train.epochs)
            if sweep.scheduler == "asha" and sweep.grace_period > longest:
                raise AtKey(f"sweeps.{name}.grace_period", f"is more epochs than any trial trains ({longest}): ASHA "
                            f"would stop none. Received: {sweep.grace_period}")
        return self

    def select(self, names: list[str] | None, source: str = "params.yaml") -> dict[str, ExperimentSpec]:
        """The named experiments, of `experiments:` or `continued:` (all of them, in :attr:`every_experiment`'s
        order, when `names` is empty), refusing unknown names."""
        every = self.every_experiment
        if not names:
            return every
        unknown = [n for n in names if n not in every]
        if unknown:
            hints = [difflib.get_close_matches(n, every, n=1) for n in unknown]
            said = "; ".join(f"{n!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for n, h in zip(unknown, hints))
            raise ParamsError(f"{source}:experiments: unknown experiment {said}. Defined: {', '.join(every)}")
        return {n: every[n] for n in names}


JOINT_CHECKS = 64
"""A sweep's configs tried together when parsing params, at most: each a validated copy of its experiment
(about 3 ms), every command pays them."""


def _check_joint_configs(name: str, experiment: ExperimentSpec, sweep: SearchSpec) -> None:
    """Refuse a sweep whose keys each pass alone but not together (`train.learning_rate` swept beside an optimizer
    that sets one, `model.widths` beside a hidden layer's `units`), naming the first config that fails: every
    combination of the listed values and of the ranges' ends, where there are at most :data:`JOINT_CHECKS`."""
    values = {key: extremes(*next(iter(dist.items()))) for key, dist in sweep.space.items()}
    if len(values) < 2 or math.prod(map(len, values.values())) > JOINT_CHECKS:
        return
    for combination in itertools.product(*values.values()):
        config = dict(zip(values, combination))
        problem = _override_problem(experiment, config)
        if problem is not None:
            raise AtKey(f"sweeps.{name}.space", f"its keys fail together: {problem}. Tried: {config}")


def _override_problem(experiment: ExperimentSpec, overrides: dict[str, Any]) -> object | None:
    """Why `experiment` with `overrides` (dotted keys) is not a valid experiment, or None where it is. A problem
    found at another key than those overridden (the `train.validation_split` that a swept early stopping needs)
    names that key."""
    try:
        experiment.with_overrides(overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        message = error["msg"].removeprefix("Value error, ")
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, AtKey):
            where = ".".join([*map(str, error["loc"]), cause.key])
            return message if where in overrides else f"{where}: {message}"
        return message
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        return exc.args[0] if isinstance(exc, KeyError) and exc.args else exc  # str() of a KeyError would quote
    return None


def load_params(path: str | Path = "params.yaml", check_keras_names: bool = True) -> Params:
    """Read and validate `path`; raise :class:`ParamsError` naming every bad key.

    A first pass checks everything but the names and arguments only Keras can check, without importing it: a bad
    key is reported in a fraction of a second, not after Keras' import. The second checks those too; with
    `check_keras_names` False (a command that builds no model) it is skipped."""
    path = Path(path)
    raw = read_yaml(path)
    with without_keras():
        first = parse_params(raw, source=str(path))
    return parse_params(raw, source=str(path)) if check_keras_names else first


def read_yaml(path: Path) -> Any:
    """The YAML document in `path`; a file that is not there, not readable, not UTF-8 or not YAML is refused in
    one line (:class:`ParamsError`) naming it."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise ParamsError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8") from None
    except OSError as exc:  # a folder, or a file this user may not read
        raise ParamsError(f"{path}: cannot be read ({exc.strerror or exc}); expected a YAML file") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {yaml_problem(exc)}") from None


DVC_READS = "dvc_reads"
"""The validation context's key that says the file is a `params.yaml`, the file dvc.yaml's stages read."""


def parse_params(raw: object, source: str = "params.yaml") -> Params:
    """Validate an already-parsed mapping; errors are reported against `source`. A `source` named params.yaml must
    hold `sweeps:` and `continued:` (dvc.yaml iterates over them); other files may leave them out."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping with an `experiments:` key, got {type(raw).__name__}")
    try:
        params = Params.model_validate(raw, context={DVC_READS: Path(source).name == "params.yaml"})
    except ValidationError as exc:
        raise ParamsError(describe_all(exc.errors(), raw, source, Params)) from None
    for section in ("experiments", "continued"):
        for name, experiment in getattr(params, section).items():
            experiment.locate(f"{source}:{section}.{name}", str(experiment.dataset.file), experiment.dataset.header)
    for name, experiment in params.every_experiment.items():
        optimizer = experiment.train.optimizer
        given = (optimizer.model_extra or {}) if isinstance(optimizer, OptimizerSpec) else {}
        for legacy, meaning in LEGACY_OPTIMIZER_ARGUMENTS.items():
            if given.get(legacy):  # a decay of 0 is none: nothing to translate
                params.notes.append(f"{experiment.key('train.optimizer')}.{legacy}: {meaning}")
    for name, sweep in params.sweeps.items():
        dataset = params.experiments[name].dataset
        sweep.locate(f"{source}:sweeps.{name}", str(dataset.file), dataset.header)
        dotted = [key for key in raw["sweeps"][name]["space"] if "." in str(key)]
        if dotted:
            params.notes.append(f"{source}:sweeps.{name}.space: dotted keys ({', '.join(map(str, dotted))}) are "
                                f"deprecated; nest them as params.yaml nests its sections (space: {{train: "
                                f"{{batch_size: {{grid: [10, 20]}}}}}}), which `dvc exp run -S` can address")
    return params


