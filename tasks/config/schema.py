"""The typed, validated form of ``params.yaml``: one spec object, built once, passed everywhere.

Every mistake is reported with the exact key DVC would use for it (``experiments.iris_mlp.train.epochs``)
so that the message can be pasted into ``dvc exp run -S`` or found in the file.
"""

from __future__ import annotations

import difflib
import math
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from kerasflow.tasks.config.backend import Backend
from kerasflow.tasks.config.errors import ParamsError

Task = Literal["binary", "multiclass", "regression"]

# Which losses make sense for which task: a loss that does not fit the task trains silently to nonsense.
LOSSES_BY_TASK: dict[str, tuple[str, ...]] = {
    "binary": ("binary_crossentropy", "binary_focal_crossentropy", "hinge", "squared_hinge"),
    "multiclass": ("sparse_categorical_crossentropy", "categorical_crossentropy", "categorical_focal_crossentropy"),
    "regression": ("mean_squared_error", "mean_absolute_error", "huber", "log_cosh", "mean_squared_logarithmic_error"),
}
LOSS_ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error", "msle": "mean_squared_logarithmic_error"}
DEFAULT_LOSS = {"binary": "binary_crossentropy", "multiclass": "sparse_categorical_crossentropy",
                "regression": "mean_squared_error"}
METRICS_BY_TASK: dict[str, tuple[str, ...]] = {
    "binary": ("accuracy",),
    "multiclass": ("accuracy",),
    "regression": ("mse", "rmse", "mae"),
}



class _At(ValueError):
    """A validator's complaint about one key below the section it checks (`train.loss` from the experiment).

    Pydantic places a model validator's error on the whole section; :func:`_describe` appends `key`, so the
    message still names the exact key as DVC spells it.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class _Strict(BaseModel):
    # Unknown keys are errors: a misspelt `epoch:` must not silently fall back to a default.
    model_config = ConfigDict(extra="forbid", frozen=True)
    # Where the section sits in the params file and which data file its experiment reads, set once the file is
    # validated: checks made later against the data (splits, preprocessing) still name the key the user edits.
    _where: str = PrivateAttr(default="")
    _data: str = PrivateAttr(default="")

    def key(self, name: str) -> str:
        """`name`'s full key, `params.yaml:experiments.iris.evaluate.n_splits`, or `name` for a spec built in code.

        Examples
        --------
        >>> EvaluateSpec().key("n_splits")
        'n_splits'
        """
        return f"{self._where}.{name}" if self._where else name

    @property
    def located(self) -> bool:
        """Whether the section came from a params file (and :meth:`key` gives its full key)."""
        return bool(self._where)

    @property
    def data_file(self) -> str:
        """The data file of the experiment this section belongs to ("" for a spec built in code)."""
        return self._data

    def _locate(self, where: str, data: str) -> None:
        """Record this section's key prefix and data file, and its subsections' (layers included)."""
        self._where, self._data = where, data
        for name in type(self).model_fields:
            value = getattr(self, name)
            items = enumerate(value) if isinstance(value, list) else [(None, value)]
            for index, item in items:
                if isinstance(item, _Strict):
                    item._locate(f"{where}.{name}" + ("" if index is None else f"[{index}]"), data)


def _keras_names(kind: str) -> list[str]:
    """The string identifiers Keras accepts for `kind`, to list them when a name is wrong."""
    import keras

    module = getattr(keras, kind)
    skip = {"get", "serialize", "deserialize", "Optimizer", "Loss", "Initializer", "LossScaleOptimizer"}
    names = set()
    for name in dir(module):
        if name.startswith("_") or name in skip:
            continue
        if kind == "optimizers" and name[0].isupper():
            names.add(name.lower())  # Keras looks optimizers up by lower-cased class name: "adamw", "rmsprop"
        elif kind == "initializers" and name[0].isupper():
            names.add(_snake(name))
        elif kind in ("activations", "losses") and name[0].islower():
            names.add(name)
    return sorted(names)


def _snake(name: str) -> str:
    out = [name[0].lower()]
    for prev, ch in zip(name, name[1:]):
        out.append(("_" + ch.lower()) if ch.isupper() and prev.islower() else ch.lower())
    return "".join(out)


def _check_keras_name(kind: str, value: str) -> str:
    """Resolve `value` the way Keras will at build time, so a typo fails before anything runs."""
    import keras

    getter = getattr(keras, kind).get
    try:
        getter(value)
    except (ValueError, TypeError):
        allowed = _keras_names(kind)
        hint = difflib.get_close_matches(value, allowed, n=1)
        suggestion = f" Did you mean {hint[0]!r}?" if hint else ""
        singular = {"losses": "loss"}.get(kind, kind[:-1])
        raise ValueError(f"unknown {singular} {value!r}.{suggestion} Allowed: {', '.join(allowed)}") from None
    return value


def _activation(value: str) -> str:
    return _check_keras_name("activations", value)


def _initializer(value: str) -> str:
    return _check_keras_name("initializers", value)


class DatasetSpec(_Strict):
    """Where the rows come from and what is predicted."""

    file: Path
    target: str | int = Field(description="target column: its name, or its 0-based index when header is false")
    header: bool = True
    task: Task


class TextSpec(_Strict):
    """A text column as integer token sequences: Keras' `Tokenizer(num_words, oov_token)` then `pad_sequences`.

    Words are what TextVectorization's default standardisation leaves (punctuation stripped, split on
    whitespace); the vocabulary is fitted on each fold's training rows only (see ``tasks/data/text.py``).
    """

    column: str | int = Field(description="the text column: its name, or its 0-based index when header is false")
    num_words: int = Field(ge=3, description="token ids run from 0 to num_words - 1: 0 pads, 1 stands for any word "
                                             "outside the vocabulary, and the num_words - 2 most frequent words of the "
                                             "training rows get 2, 3, ... (an embedding's input_dim)")
    maxlen: PositiveInt = Field(description="every text becomes exactly `maxlen` token ids")
    padding: Literal["pre", "post"] = Field(default="pre", description="pad short texts before or after their words")
    truncating: Literal["pre", "post"] = Field(default="pre", description="cut long texts' first or last words")
    lowercase: bool = True


class PreprocessSpec(_Strict):
    """Transformations fitted on each fold's training rows only."""

    scale: Literal["none", "standard", "minmax"] = "none"
    categorical: Literal["none", "onehot", "ordinal"] = "none"
    impute: Literal["none", "mean", "median", "most_frequent"] = "none"
    lookback: PositiveInt | None = Field(
        default=None, description="forecast the target series from its `lookback` previous values (the rows "
                                  "become windows; the file's other columns are not used)")
    scale_target: bool = Field(
        default=False, description="regression: train on the target scaled like the features; predictions "
                                   "are scaled back inside the model, so every score is in the data's units")
    text: TextSpec | None = Field(
        default=None, description="the rows are one text column (and the target): its words become token ids")

    @model_validator(mode="after")
    def _text_alone(self) -> "PreprocessSpec":
        # Token ids are categories, not magnitudes: scaling or imputing them would silently corrupt them.
        if self.text is not None:
            others = ("scale", "categorical", "impute", "lookback", "scale_target")
            clashing = {key: getattr(self, key) for key in others
                        if getattr(self, key) != type(self).model_fields[key].default}
            if clashing:
                raise _At(next(iter(clashing)), f"`text` is the rows' only input and makes token ids: "
                          f"{', '.join(clashing)} cannot be used with it. Received: {clashing}")
        return self


class DenseLayer(_Strict):
    type: Literal["dense"]
    units: PositiveInt
    activation: str = "linear"
    initializer: str = "glorot_uniform"

    _check_activation = field_validator("activation")(_activation)
    _check_initializer = field_validator("initializer")(_initializer)


class DropoutLayer(_Strict):
    type: Literal["dropout"]
    rate: float = Field(ge=0.0, lt=1.0)


class Conv2DLayer(_Strict):
    type: Literal["conv2d"]
    filters: PositiveInt
    kernel_size: PositiveInt | tuple[PositiveInt, PositiveInt]
    activation: str = "relu"
    initializer: str = "glorot_uniform"
    padding: Literal["valid", "same"] = "valid"

    _check_activation = field_validator("activation")(_activation)
    _check_initializer = field_validator("initializer")(_initializer)


class MaxPooling2DLayer(_Strict):
    type: Literal["max_pooling2d"]
    pool_size: PositiveInt | tuple[PositiveInt, PositiveInt] = 2


class FlattenLayer(_Strict):
    type: Literal["flatten"]


class ReshapeLayer(_Strict):
    type: Literal["reshape"]
    target_shape: tuple[PositiveInt, ...] = Field(min_length=1)


class Conv1DLayer(_Strict):
    type: Literal["conv1d"]
    filters: PositiveInt
    kernel_size: PositiveInt
    activation: str = "relu"
    initializer: str = "glorot_uniform"
    padding: Literal["valid", "same", "causal"] = "valid"

    _check_activation = field_validator("activation")(_activation)
    _check_initializer = field_validator("initializer")(_initializer)


class MaxPooling1DLayer(_Strict):
    type: Literal["max_pooling1d"]
    pool_size: PositiveInt = 2


class GlobalMaxPooling1DLayer(_Strict):
    type: Literal["global_max_pooling1d"]


class GlobalAveragePooling1DLayer(_Strict):
    type: Literal["global_average_pooling1d"]


class LSTMLayer(_Strict):
    type: Literal["lstm"]
    units: PositiveInt
    return_sequences: bool = False
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    recurrent_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    stateful: bool = Field(default=False, description="carry the state from one row to the next; reset each epoch")


class EmbeddingLayer(_Strict):
    type: Literal["embedding"]
    input_dim: PositiveInt | None = Field(default=None, description="the number of token ids; None takes "
                                                                     "preprocess.text.num_words")
    output_dim: PositiveInt


LayerSpec = Annotated[
    Union[DenseLayer, DropoutLayer, Conv2DLayer, MaxPooling2DLayer, FlattenLayer, ReshapeLayer, LSTMLayer,
          EmbeddingLayer, Conv1DLayer, MaxPooling1DLayer, GlobalMaxPooling1DLayer, GlobalAveragePooling1DLayer],
    Field(discriminator="type"),
]
STACKABLE_LAYERS = (DenseLayer, DropoutLayer)
SEQUENCE_LAYERS = (LSTMLayer, Conv1DLayer, MaxPooling1DLayer, GlobalMaxPooling1DLayer, GlobalAveragePooling1DLayer)
"""Layers that take a sequence, `(batch, steps, features)`: what an LSTM before them must return."""


class ModelSpec(_Strict):
    """A Keras ``Sequential`` model, layer by layer; the input shape comes from the data."""

    layers: list[LayerSpec] = Field(min_length=1)
    # Set by the experiment holding this model from its preprocess.text, not read from the file: a sweep over
    # `preprocess.text.num_words` then resizes an embedding that gives no input_dim of its own.
    _num_words: int | None = PrivateAttr(default=None)

    @property
    def num_words(self) -> int | None:
        """The token ids' range when the experiment reads text: an embedding's default `input_dim`."""
        return self._num_words

    @model_validator(mode="after")
    def _lstm_feeds_sequences(self) -> "ModelSpec":
        # Keras would only fail when the model is built, after the data is loaded, with a message about ndim.
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, LSTMLayer) or layer.return_sequences:
                continue
            j, following = next(((j, later) for j, later in enumerate(self.layers[i + 1:], start=i + 1)
                                 if not isinstance(later, DropoutLayer)), (None, None))
            if isinstance(following, SEQUENCE_LAYERS):
                raise _At(f"layers[{i}].return_sequences", f"layers[{i}] (lstm) feeds layers[{j}] "
                          f"({following.type}), which takes a sequence: set `return_sequences: true` on "
                          f"layers[{i}]. Received: false")
        return self

    @property
    def stackable(self) -> bool:
        """Whether k copies of this model can train as one stacked program (see ``tasks/training/stacked.py``)."""
        return all(isinstance(layer, STACKABLE_LAYERS) for layer in self.layers)

    @property
    def stateful(self) -> bool:
        return any(isinstance(layer, LSTMLayer) and layer.stateful for layer in self.layers)


class TrainSpec(_Strict):
    optimizer: str = "adam"
    learning_rate: float | None = Field(default=None, gt=0, description="None keeps the optimizer's default")
    loss: str | None = Field(default=None, description="None picks the task's usual loss")
    epochs: PositiveInt
    batch_size: PositiveInt
    seed: int = 0

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, value: str) -> str:
        return _check_keras_name("optimizers", value)

    @field_validator("loss")
    @classmethod
    def _canonical_loss(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = LOSS_ALIASES.get(value, value)
        return _check_keras_name("losses", value)


class EvaluateSpec(_Strict):
    """How the model is scored: never on rows it (or its preprocessing) was fitted on."""

    method: Literal["kfold", "holdout", "timeseries"] = "kfold"
    n_splits: int = Field(default=10, ge=2)
    n_repeats: PositiveInt = 1
    shuffle: bool = True
    stratify: bool = False
    test_size: float = Field(default=0.2, gt=0.0, lt=1.0)
    seed: int = 0
    metric: str | None = Field(default=None, description="None picks accuracy (classification) or mse")
    stack_folds: bool = Field(default=True, description="train the folds of a Dense model as one program")
    refit: bool = Field(default=True, description="retrain on all rows and save the model")

    @model_validator(mode="after")
    def _consistent(self) -> "EvaluateSpec":
        # As scikit-learn's KFold does, refuse settings that would silently do nothing.
        if self.method == "timeseries" and self.shuffle:
            raise _At("shuffle", "must be false for method 'timeseries': time order is the point. Received: true "
                      "(the default; write `shuffle: false`)")
        if self.n_repeats > 1 and not self.shuffle:
            raise _At("n_repeats", f"> 1 needs `shuffle: true`, or every repeat is the same. "
                      f"Received: n_repeats={self.n_repeats}, shuffle=false")
        if self.method == "timeseries" and self.stratify:
            raise _At("stratify", "cannot be used with method 'timeseries'. Received: true")
        return self


class ExperimentSpec(_Strict):
    """One experiment: data, preprocessing, model, training and evaluation."""

    dataset: DatasetSpec
    preprocess: PreprocessSpec = PreprocessSpec()
    model: ModelSpec
    train: TrainSpec
    evaluate: EvaluateSpec = EvaluateSpec()

    @property
    def loss(self) -> str:
        return self.train.loss or DEFAULT_LOSS[self.dataset.task]

    @property
    def metric(self) -> str:
        return self.evaluate.metric or METRICS_BY_TASK[self.dataset.task][0]

    @property
    def higher_is_better(self) -> bool:
        return self.metric == "accuracy"

    def with_overrides(self, overrides: dict[str, Any]) -> "ExperimentSpec":
        """A validated copy with dotted keys replaced: `{"train.epochs": 5, "model.layers[0].units": 8}`.

        Two keys reach several layers, as the books' grids do: `model.widths` sets the hidden Dense layers'
        widths (a list: one Dense per width, each like the first hidden Dense layer), leaving the output layer
        alone; `model.initializer` sets the kernel initializer of every layer that has one.
        """
        raw = self.model_dump(mode="json", exclude_unset=False)
        for key, value in overrides.items():
            if key == "model.widths":
                raw["model"]["layers"] = _with_widths(raw["model"]["layers"], value)
                continue
            if key == "model.initializer":
                for layer in raw["model"]["layers"]:
                    if "initializer" in layer:
                        layer["initializer"] = value
                continue
            *parents, last = _split_key(key)
            node: Any = raw
            for part in parents:
                node = node[part]
            if isinstance(node, dict) and last not in node:
                raise KeyError(f"no key {key!r} in the experiment")
            node[last] = value
        changed = ExperimentSpec.model_validate(raw)
        if self._where:
            changed._locate(self._where, str(changed.dataset.file))
        return changed

    @model_validator(mode="after")
    def _fits_task(self) -> "ExperimentSpec":
        task = self.dataset.task
        if self.train.loss is not None and self.train.loss not in LOSSES_BY_TASK[task]:
            raise _At("train.loss", f"does not fit task {task!r} (dataset.task). Allowed: "
                      f"{', '.join(LOSSES_BY_TASK[task])}. Received: {self.train.loss!r}")
        if self.evaluate.metric is not None and self.evaluate.metric not in METRICS_BY_TASK[task]:
            raise _At("evaluate.metric", f"does not fit task {task!r} (dataset.task). Allowed: "
                      f"{', '.join(METRICS_BY_TASK[task])}. Received: {self.evaluate.metric!r}")
        if self.evaluate.stratify and task == "regression":
            raise _At("evaluate.stratify", "needs a classification task; dataset.task is 'regression'. "
                      "Received: true")
        if self.preprocess.lookback is not None:
            if task != "regression":
                raise _At("preprocess.lookback", f"forecasts a numeric series: it needs task 'regression'. "
                          f"Received: lookback {self.preprocess.lookback} with task {task!r}")
            if self.evaluate.shuffle or self.evaluate.method == "kfold":
                # Windows overlap: a shuffled or k-fold split trains on rows holding the test rows' values.
                raise _At("preprocess.lookback", "needs a time-ordered evaluation: evaluate.method 'timeseries', "
                          "or 'holdout' with evaluate.shuffle false. Received: method "
                          f"{self.evaluate.method!r}, shuffle {self.evaluate.shuffle}")
        if self.preprocess.scale_target and (task != "regression" or self.preprocess.scale == "none"):
            raise _At("preprocess.scale_target", "needs task 'regression' and a `scale` (standard or minmax) "
                      f"to apply to the target. Received: task {task!r}, scale {self.preprocess.scale!r}")
        self._check_text()
        if self.model.stateful:
            # State flows from each row to the next: rows must come one at a time and in time order.
            if self.train.batch_size != 1:
                raise _At("train.batch_size", f"a stateful LSTM needs batch_size 1. "
                          f"Received: {self.train.batch_size}")
            if self.evaluate.shuffle:
                raise _At("evaluate.shuffle", "a stateful LSTM needs time-ordered rows: set evaluate.shuffle false "
                          "(method 'timeseries', or 'holdout' for a chronological split). Received: true")
        return self

    def _check_text(self) -> None:
        """A text column needs a layout that names it and a model that starts from its token ids."""
        text = self.preprocess.text
        embeddings = [(i, layer) for i, layer in enumerate(self.model.layers) if isinstance(layer, EmbeddingLayer)]
        if text is None:
            unsized = [i for i, layer in embeddings if layer.input_dim is None]
            if unsized:
                raise _At(f"model.layers[{unsized[0]}].input_dim", "is required: only preprocess.text (its "
                          "num_words) can size an embedding that gives none. Received: none")
            return
        if self.dataset.header and not isinstance(text.column, str):
            raise _At("preprocess.text.column", f"must be the column's name when the file "
                      f"has a header row (dataset.header true). Received: {text.column!r}")
        if not self.dataset.header and not isinstance(text.column, int):
            raise _At("preprocess.text.column", f"with `header: false` it must be a 0-based "
                      f"column index. Received: {text.column!r}")
        if text.column == self.dataset.target:
            raise _At("preprocess.text.column", f"names the same column as dataset.target; the target cannot be "
                      f"the input too. Received: {text.column!r}")
        if not isinstance(self.model.layers[0], EmbeddingLayer):
            raise _At("model.layers[0].type", f"preprocess.text gives token ids, which are categories, not "
                      f"magnitudes: model.layers[0] must be an embedding. Received: {self.model.layers[0].type!r}")
        for i, layer in embeddings:
            if layer.input_dim is not None and layer.input_dim < text.num_words:
                raise _At(f"model.layers[{i}].input_dim", f"must be >= "
                          f"preprocess.text.num_words ({text.num_words}), the number of token ids, or be left out "
                          f"to take it. Received: {layer.input_dim}")
        self.model._num_words = text.num_words


Distribution = Literal["grid", "choice", "uniform", "loguniform", "randint"]


class SearchSpec(_Strict):
    """A Ray Tune sweep over one experiment: the space, the algorithm, and what each trial may use.

    Each key of `space` is a path into the experiment (`train.optimizer`, `model.layers[0].units`) or
    `model.widths`, which rewrites the hidden Dense layers' widths (`[[16], [30], [16, 8]]`); each value is
    one distribution, `{grid: [...]}`, `{choice: [...]}`, `{uniform: [low, high]}`, `{loguniform: [low, high]}`
    or `{randint: [low, high]}`.
    """

    space: dict[str, dict[Distribution, list]] = Field(min_length=1)
    algorithm: Literal["grid", "random", "optuna"] = "grid"
    num_samples: PositiveInt = Field(default=1, description="trials drawn (random, optuna); grid: repeats")
    seed: int = 0
    scheduler: Literal["fifo", "asha"] = "fifo"
    grace_period: PositiveInt = Field(default=5, description="asha: epochs before a trial may be stopped")
    scoring: Literal["holdout", "kfold"] = Field(default="kfold", description="kfold: the experiment's folds")
    test_size: float = Field(default=0.2, gt=0.0, lt=1.0, description="holdout scoring's held-out share")
    max_concurrent_trials: PositiveInt | None = None
    cpu: float = Field(default=1.0, gt=0.0)
    gpu: float = Field(default=0.0, ge=0.0)
    keep_checkpoints: PositiveInt = 2
    checkpoint_every: PositiveInt | None = Field(default=None, description="epochs; None: at the end only")
    max_failures: int = Field(default=2, ge=0, description="retries of a trial whose process dies")
    shared_storage: bool = Field(default=False, description="the storage path is shared by every node")
    stack_configs: bool = Field(default=True, description="grid configs that differ only in initializers train as "
                                                          "one stacked program per group (tasks/tune.stacked_groups)")

    @field_validator("space")
    @classmethod
    def _one_distribution_each(cls, space: dict) -> dict:
        for key, dist in space.items():
            if len(dist) != 1:
                raise _At(key, f"must have exactly one distribution, one of {', '.join(get_args(Distribution))}. "
                          f"Received: {sorted(dist) or 'none'}")
            (kind, values), = dist.items()
            if not values:
                raise _At(f"{key}.{kind}", f"is empty: it needs at least one value. "
                          f"Received: {values!r}")
            if kind in ("uniform", "loguniform", "randint"):
                if len(values) != 2 or not all(isinstance(v, (int, float)) for v in values) or values[0] >= values[1]:
                    raise _At(f"{key}.{kind}", f"must be [low, high] with low < high. Received: {values}")
                if kind == "loguniform" and values[0] <= 0:
                    raise _At(f"{key}.{kind}", f"needs low > 0. Received: {values}")
        return space

    @model_validator(mode="after")
    def _grid_only_with_grid(self) -> "SearchSpec":
        kinds = {kind for dist in self.space.values() for kind in dist}
        if self.algorithm == "grid" and kinds - {"grid", "choice"}:
            raise _At("algorithm", f"'grid' takes only grid/choice values; use algorithm 'random' for "
                      f"{sorted(kinds - {'grid', 'choice'})}. Received: 'grid'")
        if self.algorithm == "optuna" and "grid" in kinds:
            raise _At("algorithm", "'optuna' samples its own points: use choice instead of grid. "
                      "Received: 'optuna'")
        if self.gpu > 1 and self.gpu != int(self.gpu):
            raise _At("gpu", f"above 1 must be a whole number. Received: {self.gpu}")
        return self


class Params(_Strict):
    """The whole of ``params.yaml``."""

    backend: Backend = Field(default="tensorflow", description="the Keras backend every experiment trains on; "
                                                                "an explicit KERAS_BACKEND wins (tasks/config/backend.py)")
    experiments: dict[str, ExperimentSpec] = Field(min_length=1)
    sweeps: dict[str, SearchSpec] = Field(description="keyed by experiment name; {} for none")

    @model_validator(mode="before")
    @classmethod
    def _sweeps_present(cls, data: Any) -> Any:
        if isinstance(data, dict) and "sweeps" not in data:
            # dvc.yaml's tune stage iterates over this key: without it DVC cannot even read the pipeline.
            raise ValueError("`sweeps:` is required (dvc.yaml's tune stage iterates over it); "
                             "write `sweeps: {}` when no experiment is swept")
        return data

    @model_validator(mode="after")
    def _sweeps_name_experiments(self) -> "Params":
        unknown = [name for name in self.sweeps if name not in self.experiments]
        if unknown:
            hint = difflib.get_close_matches(unknown[0], self.experiments, n=1)
            raise _At(f"sweeps.{unknown[0]}", f"sweeps {unknown} name no experiment"
                      + (f"; did you mean {hint[0]!r}?" if hint else "") + f" Defined: {', '.join(self.experiments)}")
        for name, sweep in self.sweeps.items():
            experiment = self.experiments[name]
            for key, dist in sweep.space.items():
                # Try every listed value, and both ends of a range, now: a bad key or value (`sgdd` as the second
                # of two optimizers) fails before any trial starts, not in the trial that draws it.
                (kind, values), = dist.items()
                samples = _extremes(kind, values)
                for sample in samples:
                    try:
                        experiment.with_overrides({key: sample})
                    except ValidationError as exc:
                        error = exc.errors()[0]
                        problem = error["msg"].removeprefix("Value error, ")
                        raise _At(f"sweeps.{name}.space.{key}", f"{problem}. Tried: {sample!r}") from None
                    except (KeyError, IndexError, TypeError, ValueError) as exc:
                        problem = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc  # str() would quote
                        raise _At(f"sweeps.{name}.space.{key}", f"{problem}. Tried: {sample!r}") from None
        return self

    def select(self, names: list[str] | None, source: str = "params.yaml") -> dict[str, ExperimentSpec]:
        """The named experiments (all of them when `names` is empty), refusing unknown names."""
        if not names:
            return dict(self.experiments)
        unknown = [n for n in names if n not in self.experiments]
        if unknown:
            hints = [difflib.get_close_matches(n, self.experiments, n=1) for n in unknown]
            said = "; ".join(f"{n!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for n, h in zip(unknown, hints))
            raise ParamsError(f"{source}:experiments: unknown experiment {said}. "
                              f"Defined: {', '.join(self.experiments)}")
        return {n: self.experiments[n] for n in names}


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate `path`; raise :class:`ParamsError` naming every bad key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
    return parse_params(raw, source=str(path))


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's error on one line: what it expected and where (`line 3, column 14`)."""
    mark = getattr(exc, "problem_mark", None)
    problem = " ".join(filter(None, (getattr(exc, "context", None), getattr(exc, "problem", None)))) or str(exc)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return " ".join(problem.split()) + where


def parse_params(raw: object, source: str = "params.yaml") -> Params:
    """Validate an already-parsed mapping; errors are reported against `source`."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping with an `experiments:` key, got {type(raw).__name__}")
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError("\n".join(_describe(error, raw, source) for error in exc.errors())) from None
    for name, experiment in params.experiments.items():
        experiment._locate(f"{source}:experiments.{name}", str(experiment.dataset.file))
    for name, sweep in params.sweeps.items():
        sweep._locate(f"{source}:sweeps.{name}", str(params.experiments[name].dataset.file))
    return params


def _describe(error: dict, raw: dict, source: str) -> str:
    """One line per problem: `params.yaml:experiments.x.train.epochs: <what is wrong>. Received: <value>`."""
    loc = _key_path(error["loc"], raw)
    message = error["msg"].removeprefix("Value error, ")
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, _At):
        return f"{source}:{'.'.join(filter(None, (loc, cause.key)))}: {cause}"
    if error["type"] == "union_tag_invalid":
        # The layer's `type:` is what is wrong, not the whole layer.
        received = (error.get("ctx") or {}).get("tag")
        return f"{source}:{loc}.type: {message}. Received: {received!r}"
    if not loc:
        return f"{source}: {message}"
    if error["type"] == "extra_forbidden":
        parent, _, bad = loc.rpartition(".")
        allowed = _allowed_keys(error["loc"][:-1])
        hint = difflib.get_close_matches(bad, allowed, n=1)
        message = f"unknown key {bad!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
        if allowed:
            message += f" Allowed here: {', '.join(allowed)}"
        return f"{source}:{loc}: {message}"
    received = error.get("input")
    # A whole section echoed back would bury the problem; an empty one is the problem.
    hidden = error["type"] == "missing" or (isinstance(received, dict) and received)
    shown = "" if hidden else f". Received: {received!r}"
    return f"{source}:{loc}: {message}{shown}"


def _key_path(loc: tuple, raw: dict) -> str:
    """Render pydantic's location as the YAML key path, dropping union tags like `dense`."""
    parts: list[str] = []
    node: object = raw
    for item in loc:
        if isinstance(item, int):
            parts[-1] = f"{parts[-1]}[{item}]" if parts else f"[{item}]"
            node = node[item] if isinstance(node, list) and item < len(node) else None
        elif item == "[key]":
            continue  # pydantic's marker for "the key itself is wrong", already named by the previous part
        elif isinstance(node, dict) and item in node:
            parts.append(str(item))
            node = node[item]
        elif isinstance(node, dict) and node.get("type") == item:
            continue  # the discriminator's tag, not a key of the file
        else:
            parts.append(str(item))
            node = None
    return ".".join(parts)


def _allowed_keys(loc: tuple) -> list[str]:
    """The keys accepted at `loc`, found by walking the schema's types along pydantic's location."""
    target: object = Params
    for item in loc:
        target = _optional_model(target)
        origin, args = get_origin(target), get_args(target)
        if isinstance(target, type) and issubclass(target, BaseModel):
            field = target.model_fields.get(item)
            if field is None:
                return []
            target = field.annotation
        elif origin is dict:
            target = args[1]
        elif origin is list:
            target = args[0]
        elif origin is Annotated:  # the layer union: pydantic puts the `type` tag in the location
            members = get_args(args[0])
            target = next((m for m in members if get_args(m.model_fields["type"].annotation) == (item,)), None)
        else:
            return []
    target = _optional_model(target)
    if isinstance(target, type) and issubclass(target, BaseModel):
        return sorted(target.model_fields)
    return []


def _optional_model(annotation: object) -> object:
    """`TextSpec | None` -> `TextSpec`: an optional section's keys are the section's own."""
    if get_origin(annotation) in (Union, types.UnionType):
        models = [arg for arg in get_args(annotation) if isinstance(arg, type) and issubclass(arg, BaseModel)]
        if len(models) == 1 and set(get_args(annotation)) <= {models[0], type(None)}:
            return models[0]
    return annotation


def _extremes(kind: Distribution, values: list) -> list:
    """The values a distribution can give that are worth validating: all of a list, the ends of a range.

    Ray Tune's ranges exclude their upper end, so the largest value that can be drawn is tried instead.

    Examples
    --------
    >>> _extremes("randint", [1, 5]), _extremes("uniform", [0.0, 1.0])[1] < 1.0
    ([1, 4], True)
    """
    if kind in ("grid", "choice"):
        return list(values)
    low, high = values
    if kind == "randint":
        return [int(low), int(high) - 1]
    return [float(low), math.nextafter(float(high), float(low))]


def _split_key(key: str) -> list[str | int]:
    """`'model.layers[0].units'` -> `['model', 'layers', 0, 'units']`."""
    parts: list[str | int] = []
    for piece in key.split("."):
        name, _, rest = piece.partition("[")
        if name:
            parts.append(name)
        while rest:
            index, _, rest = rest.partition("]")
            parts.append(int(index))
            rest = rest.removeprefix("[")
    return parts


def _with_widths(layers: list[dict], widths: list[int]) -> list[dict]:
    """Replace the hidden Dense layers (all but the last Dense) with one Dense per width."""
    dense = [i for i, layer in enumerate(layers) if layer["type"] == "dense"]
    if len(dense) < 2:
        raise ValueError("model.widths needs a model with a hidden Dense layer and an output Dense layer")
    if not isinstance(widths, list) or not all(isinstance(w, int) and w > 0 for w in widths):
        raise ValueError(f"model.widths must be a list of positive integers. Received: {widths!r}")
    template = layers[dense[0]]
    hidden = [{**template, "units": width} for width in widths]
    return layers[: dense[0]] + hidden + layers[dense[-2] + 1:]
