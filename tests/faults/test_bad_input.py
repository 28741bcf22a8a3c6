"""Bad input, table-driven, through the real `kerasflow` command: exit status 2, one message, nothing written.

Each case edits the tiny project (params.yaml, a data file, a model's input rows), runs the console script as a
user would, and checks that

- the exit status is 2, stdout is empty and stderr is exactly one line, `kerasflow: error: ...` (no traceback);
- the line names the file and key (`params.yaml:experiments.iris.train.epochs`) or the file and column, echoes
  what was received and says what is allowed;
- nothing under the project changed: no file created, changed or deleted, the previous results and report
  included (a snapshot of every file, hidden ones too, before and after).

One case of each kind (params, search space, data, predict, cluster resources) runs the installed console script in
a fresh process, as a user runs it (stderr as the terminal gets it, so a traceback Prefect or Ray printed would be
seen); the others call `kerasflow.flows.cli.main` in this process, which is what the console script runs, without
~5 s of imports each. `KERASFLOW_BAD_INPUT_ALL=1` runs every case through the command. The in-process checks of
the validators, finer, are in tests/test_spec.py and tests/test_data.py.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import make_project, run_cli, run_in_process, tiny_params

from faults.support import Snapshot, changes, snapshot

IRIS_COLUMNS = "sepal_length, sepal_width, petal_length, petal_width, species"
IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
PREDICT = ("predict", "--model", "results/iris/model", "--input", "data/new.csv", "--output", "out/pred.csv")


@dataclass(frozen=True)
class Bad:
    """One bad input: how to make it, the command that must refuse it, and what its message must contain."""

    id: str
    expected: tuple[str, ...]
    edit: Callable[[dict], object] = lambda raw: None
    """Changes the tiny params (`experiments.iris`, `experiments.diabetes`, `sweeps`) in place."""
    files: dict[str, str] = field(default_factory=dict)
    """Files to write into the project first (path -> content)."""
    argv: tuple[str, ...] = ("run", "iris")
    prepare: Callable[[Path], object] = lambda project: None
    """Anything else the project needs first (a binary file), given the project's folder."""


def iris(section: str, **values) -> Callable[[dict], None]:
    return lambda raw: raw["experiments"]["iris"][section].update(values)


def iris_layer(index: int, **values) -> Callable[[dict], None]:
    return lambda raw: raw["experiments"]["iris"]["model"]["layers"][index].update(values)


def sweep(**values) -> Callable[[dict], None]:
    return lambda raw: raw.update(sweeps={"iris": values})


def mine(dataset: dict | None = None, units: int = 1, **sections) -> Callable[[dict], None]:
    """A user's experiment `mine` on `data/mine.csv` (target `y`, binary unless `dataset` says otherwise), its last
    layer of `units` units activated as the task's: sigmoid for one class or for labels, softmax for classes,
    linear for a regression."""
    task = (dataset or {}).get("task", "binary")
    activation = {"regression": "linear", "multilabel": "sigmoid"}.get(task, "sigmoid" if units == 1 else "softmax")

    def edit(raw: dict) -> None:
        raw["experiments"]["mine"] = {
            "dataset": {"file": "data/mine.csv", "target": "y", "task": "binary", **(dataset or {})},
            "model": {"layers": [{"type": "dense", "units": 4, "activation": "relu"},
                                 {"type": "dense", "units": units, "activation": activation}]},
            "train": {"epochs": 1, "batch_size": 4, "seed": 1},
            "evaluate": {"n_splits": 2, "seed": 1},
            **sections,
        }
    return edit


def more(layers: list | None = None, **dataset) -> Callable[[dict], None]:
    """A continued experiment `more`: the iris experiment, trained on from the saved iris model (with `layers` and
    `dataset` changes)."""
    def edit(raw: dict) -> None:
        experiment = json.loads(json.dumps(raw["experiments"]["iris"]))
        experiment["train"]["init_from"] = "results/iris/model"
        experiment["dataset"].update(dataset)
        if layers is not None:
            experiment["model"]["layers"] = layers
        raw["continued"]["more"] = experiment
    return edit


def image(pretrained: dict, side: int = 32) -> Callable[[dict], None]:
    """An experiment `img` on `data/img.csv` (:func:`images`): its rows reshaped to side x side x 3, a
    `pretrained` base, its feature maps flattened, a sigmoid unit."""
    def edit(raw: dict) -> None:
        raw["experiments"]["img"] = {
            "dataset": {"file": "data/img.csv", "target": "y", "task": "binary"},
            "model": {"layers": [{"type": "reshape", "target_shape": [side, side, 3]},
                                 {"type": "pretrained", "name": "vgg16", **pretrained}, {"type": "flatten"},
                                 {"type": "dense", "units": 1, "activation": "sigmoid"}]},
            "train": {"epochs": 1, "batch_size": 4, "seed": 1},
            "evaluate": {"n_splits": 2, "seed": 1},
        }
    return edit


def images(side: int = 32, rows: int = 6) -> str:
    """A CSV of `rows` side x side x 3 images, one pixel a column, then the class `y` (0/1)."""
    pixels = side * side * 3
    lines = [",".join([f"p{i}" for i in range(pixels)] + ["y"])]
    lines += [",".join([str((r * 7 + i) % 256) for i in range(pixels)] + [str(r % 2)]) for r in range(rows)]
    return "\n".join(lines) + "\n"


def other_base_weights(project: Path) -> None:
    """weights/mobilenet.weights.h5: a MobileNetV2 base's weights, the wrong file for a VGG16 base."""
    import keras

    (project / "weights").mkdir()
    keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3)).save_weights(
        project / "weights/mobilenet.weights.h5")


WITH_WORD_VECTORS = {
    "preprocess": {"text": {"column": "review", "num_words": 10, "maxlen": 4}},
    "model": {"layers": [{"type": "embedding", "output_dim": 4, "weights": "weights/glove.txt", "trainable": False},
                         {"type": "flatten"}, {"type": "dense", "units": 1, "activation": "sigmoid"}]}}
"""The sections of an experiment `mine` whose embedding starts from GloVe's vectors in weights/glove.txt."""
REVIEWS = "review,y\n" + "".join(f"{'a good film' if i % 2 else 'a dull plot'},{i % 2}\n" for i in range(8))


NOTES = {"data/notes/pos/1.txt": "a good film", "data/notes/neg/1.txt": "a dull plot"}
"""A folder of texts in two class subfolders."""


def two_classes_of_images(folder: Path) -> None:
    """Two PNG images in each of `folder`'s class subfolders cats/ and dogs/."""
    from PIL import Image

    for label in ("cats", "dogs"):
        (folder / label).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (6, 5), (40 * i, 90, 200)).save(folder / label / f"{i}.png")


def rows(labels: str, extra: str = "") -> str:
    """A small numeric CSV `a,b,y`, one row per character of `labels` (the class of that row); with `extra`, a
    text column of that name holding 'red'."""
    lines = [f"a,b{',' + extra if extra else ''},y"]
    for i, label in enumerate(labels):
        lines.append(f"{i}.5,{i % 3}.0{',red' if extra else ''},{label}")
    return "\n".join(lines) + "\n"


CASES = [
    # --- params.yaml (issue item 1) -------------------------------------------------------------------------------
    Bad("unknown-key-suggests-closest", (
        "params.yaml:experiments.iris.train.epoch: unknown key 'epoch'; did you mean 'epochs'?",
        "Allowed here: batch_size, checkpoint, class_weight, early_stopping, epochs, init_from, learning_rate, loss, "
        "lr_schedule, optimizer, seed, validation_split"), iris("train", epoch=3)),
    Bad("wrong-type", ("params.yaml:experiments.iris.train.epochs: Input should be a valid integer",
                       "Received: 'many'"), iris("train", epochs="many")),
    Bad("zero-epochs", ("params.yaml:experiments.iris.train.epochs: Input should be greater than 0", "Received: 0"),
        iris("train", epochs=0)),
    Bad("negative-epochs", ("params.yaml:experiments.iris.train.epochs: Input should be greater than 0",
                            "Received: -3"), iris("train", epochs=-3)),
    Bad("zero-batch-size", ("params.yaml:experiments.iris.train.batch_size: Input should be greater than 0",
                            "Received: 0"), iris("train", batch_size=0)),
    Bad("negative-batch-size", ("params.yaml:experiments.iris.train.batch_size: Input should be greater than 0",
                                "Received: -5"), iris("train", batch_size=-5)),
    Bad("unknown-optimizer", ("params.yaml:experiments.iris.train.optimizer: unknown optimizer 'adamm'",
                              "Did you mean 'adam'?", "Allowed: adadelta", "rmsprop", "Received: 'adamm'"),
        iris("train", optimizer="adamm")),
    Bad("unknown-optimizer-argument", (
        "params.yaml:experiments.iris.train.optimizer.momentun: sgd takes no argument 'momentun'; did you mean "
        "'momentum'? Allowed: learning_rate, momentum, nesterov",),
        iris("train", optimizer={"name": "sgd", "momentun": 0.9})),
    Bad("optimizer-argument-keras-refuses", (
        "params.yaml:experiments.iris.train.optimizer: Keras' sgd refuses the arguments {'momentum': 1.5}",
        "`momentum` must be a float between [0, 1]"), iris("train", optimizer={"name": "sgd", "momentum": 1.5})),
    Bad("optimizer-moving-average", (
        "params.yaml:experiments.iris.train.optimizer.use_ema: must be false: Keras copies the moving averages into "
        "the model at the end of each fit, after kerasflow has scored the fold's predictions", "Received: true"),
        iris("train", optimizer={"name": "adam", "use_ema": True})),
    Bad("optimizer-moving-average-setting", (
        "params.yaml:experiments.iris.train.optimizer.ema_momentum: sets the moving averages of use_ema: true, which "
        "is refused: Keras copies the moving averages", "Received: 0.9"),
        iris("train", optimizer={"name": "adam", "ema_momentum": 0.9})),
    Bad("optimizer-argument-given-a-list", (
        "params.yaml:experiments.iris.train.optimizer.beta_1: must be a number, not a list: a list is taken only by a "
        "constraint's axis and a categorical focal loss's alpha. Received: [0.9]",),
        iris("train", optimizer={"name": "adam", "beta_1": [0.9]})),
    Bad("optimizer-decay-not-a-number", (
        "params.yaml:experiments.iris.train.optimizer.decay: must be a finite number >= 0. Received: nan",),
        iris("train", optimizer={"name": "sgd", "decay": float("nan")})),
    Bad("learning-rate-infinite", (
        "params.yaml:experiments.iris.train.learning_rate: Input should be a finite number. Received: inf",),
        iris("train", learning_rate=float("inf"))),
    Bad("optimizer-lr-not-a-number", (
        "params.yaml:experiments.iris.train.optimizer.lr: must be a finite number. Received: nan",),
        iris("train", optimizer={"name": "sgd", "lr": float("nan")}, learning_rate=None)),
    Bad("label-smoothing-above-1", (
        "params.yaml:experiments.iris.train.loss.label_smoothing: must be from 0 to 1: the share of each target "
        "spread evenly over the classes. Received: 2",),
        iris("train", loss={"name": "categorical_crossentropy", "label_smoothing": 2})),
    Bad("constraint-on-a-layer-without-weights", (
        "params.yaml:experiments.iris.model.layers[1].kernel_constraint: unknown key 'kernel_constraint'",
        "Allowed here: rate, type"), lambda raw: raw["experiments"]["iris"]["model"]["layers"].insert(
            1, {"type": "dropout", "rate": 0.2, "kernel_constraint": "max_norm"})),
    Bad("unknown-constraint", ("params.yaml:experiments.iris.model.layers[0].kernel_constraint.name: unknown "
                               "constraint 'maxnorm'. Did you mean 'max_norm'? Allowed: max_norm, non_neg",),
        iris_layer(0, kernel_constraint={"name": "maxnorm", "max_value": 3})),
    Bad("unknown-regularizer-argument", (
        "params.yaml:experiments.iris.model.layers[0].kernel_regularizer.l3: l2 takes no argument 'l3'. Allowed: "
        "l2",), iris_layer(0, kernel_regularizer={"name": "l2", "l3": 0.01})),
    Bad("pooling-without-an-image", (
        "params.yaml:experiments.iris.model.layers[0].type: layers[0] (average_pooling2d) takes an image per row",
        "put a reshape with target_shape [height, width, channels]"),
        lambda raw: raw["experiments"]["iris"]["model"]["layers"].insert(0, {"type": "average_pooling2d"})),
    Bad("conv-window-larger-than-its-input", (
        "params.yaml:experiments.mine.model.layers[3].kernel_size: layers[3] (conv2d) slides a window of 5 over an "
        "input of 3 x 3 x 4, and a window larger than its input gives no output: make it smaller, or set `padding: "
        "same`. Received: 5",),
        mine(model={"layers": [{"type": "reshape", "target_shape": [8, 8, 3]},
                               {"type": "conv2d", "filters": 4, "kernel_size": 3, "activation": "relu"},
                               {"type": "max_pooling2d", "pool_size": 2},
                               {"type": "conv2d", "filters": 4, "kernel_size": 5, "activation": "relu"},
                               {"type": "flatten"}, {"type": "dense", "units": 1, "activation": "sigmoid"}]}),
        files={"data/mine.csv": images(8)}, argv=("run", "mine")),
    Bad("schedule-every-zero-epochs", (
        "params.yaml:experiments.iris.train.lr_schedule.every: Input should be greater than 0", "Received: 0"),
        iris("train", lr_schedule={"type": "step", "factor": 0.5, "every": 0})),
    Bad("plateau-monitors-an-unlogged-score", (
        "params.yaml:experiments.iris.train.lr_schedule.monitor: names no score this experiment logs; did you mean "
        "'val_accuracy'? Allowed: loss, val_loss, accuracy, val_accuracy. Received: 'val_acc'",),
        iris("train", lr_schedule={"type": "reduce_on_plateau", "monitor": "val_acc"})),
    Bad("decay-and-a-schedule", ("params.yaml:experiments.iris.train.lr_schedule: and train.optimizer.decay both",),
        iris("train", optimizer={"name": "sgd", "decay": 0.01}, lr_schedule={"type": "cosine"})),
    Bad("negative-patience", ("params.yaml:experiments.iris.train.early_stopping.patience: Input should be greater "
                              "than or equal to 0", "Received: -1"),
        iris("train", early_stopping={"patience": -1})),
    Bad("early-stopping-on-val-without-a-validation-split", (
        "params.yaml:experiments.iris.train.validation_split: is required: train.early_stopping.monitor follows "
        "'val_loss'",), iris("train", early_stopping={"monitor": "val_loss", "patience": 2})),
    Bad("checkpoint-best-without-a-validation-split", (
        "params.yaml:experiments.iris.train.validation_split: is required: train.checkpoint follows 'val_loss'",),
        iris("train", checkpoint="best")),
    Bad("unknown-activation", ("params.yaml:experiments.iris.model.layers[0].activation: unknown activation 'relux'",
                               "Did you mean 'relu'?", "Allowed: celu", "Received: 'relux'"),
        iris_layer(0, activation="relux")),
    Bad("unknown-initializer", ("params.yaml:experiments.iris.model.layers[1].initializer: unknown initializer "
                                "'glorot_unifrom'", "Did you mean 'glorot_uniform'?", "Allowed: glorot_normal"),
        iris_layer(1, initializer="glorot_unifrom")),
    Bad("initializer-that-needs-arguments", ("params.yaml:experiments.iris.model.layers[1].initializer: unknown "
                                             "initializer 'constant'", "Allowed: glorot_normal"),
        iris_layer(1, initializer="constant")),
    Bad("unknown-loss", ("params.yaml:experiments.iris.train.loss: unknown loss 'sparse_categorical_crossentropi'",
                         "Did you mean 'sparse_categorical_crossentropy'?", "Allowed: binary_crossentropy"),
        iris("train", loss="sparse_categorical_crossentropi")),
    Bad("loss-does-not-fit-task", (
        "params.yaml:experiments.iris.train.loss: does not fit task 'multiclass' (dataset.task)",
        "Allowed: sparse_categorical_crossentropy, categorical_crossentropy, categorical_focal_crossentropy",
        "Received: 'mean_squared_error'"), iris("train", loss="mse")),
    Bad("metric-does-not-fit-task", ("params.yaml:experiments.iris.evaluate.metric: does not fit task 'multiclass'",
                                     "Allowed: accuracy", "Received: 'rmse'"), iris("evaluate", metric="rmse")),
    Bad("unknown-layer-type", ("params.yaml:experiments.iris.model.layers[0].type:", "'dense', 'dropout'",
                               "Received: 'dense3d'"), iris_layer(0, type="dense3d")),
    Bad("k-below-2", ("params.yaml:experiments.iris.evaluate.n_splits: Input should be greater than or equal to 2",
                      "Received: 1"), iris("evaluate", n_splits=1)),
    Bad("k-above-rows", ("params.yaml:experiments.iris.evaluate.n_splits: must be between 2 and 150 for method "
                         "'kfold' on the 150 rows of data/iris.csv. Received: 151",),
        iris("evaluate", n_splits=151, stratify=False)),
    Bad("missing-required-key", ("params.yaml:experiments.iris.dataset.task: Field required",),
        lambda raw: raw["experiments"]["iris"]["dataset"].pop("task")),
    Bad("no-sweeps-or-continued-section", (
        "params.yaml: `sweeps:` and `continued:` are required (dvc.yaml's tune and continue stages iterate over "
        "them); write `sweeps: {}` and `continued: {}` when there are none",),
        lambda raw: [raw.pop("sweeps", None), raw.pop("continued", None)]),
    Bad("unknown-experiment", ("params.yaml:experiments: unknown experiment 'irsi' (did you mean 'iris'?). "
                               "Defined: iris, diabetes",), argv=("run", "irsi")),
    Bad("empty-search-space", ("params.yaml:sweeps.iris.space: Dictionary should have at least 1 item", "Received: {}"),
        sweep(space={}), argv=("tune", "iris")),
    Bad("resume-with-nothing-saved", ("sweeps.iris: nothing to resume at", "run without --resume first"),
        sweep(space={"train": {"epochs": {"grid": [1, 2]}}}), argv=("tune", "iris", "--resume")),
    # Ray's tuner.pkl names the sweep's objects by module and name: this one, a name no kerasflow has.
    Bad("resume-of-another-versions-sweep", ("sweeps.iris: the sweep at", "was saved by another version of kerasflow "
                                             "and cannot be resumed by this one", "run without --resume"),
        sweep(space={"train": {"epochs": {"grid": [1, 2]}}}), argv=("tune", "iris", "--resume"),
        files={"results/iris/tune/ray/sweep/tuner.pkl": "ckerasflow.flows.gone\nTrialProgress\n."}),
    Bad("unknown-distribution", ("params.yaml:sweeps.iris.space.train.epochs.gridd: Input should be 'grid', "
                                 "'choice', 'uniform', 'loguniform' or 'randint'", "Received: 'gridd'"),
        sweep(space={"train": {"epochs": {"gridd": [1, 2]}}}), argv=("tune", "iris")),
    Bad("inverted-range", ("params.yaml:sweeps.iris.space.train.learning_rate.loguniform: must be two numbers, [low, "
                           "high] with low < high. Received: [0.1, 0.001]",),
        sweep(space={"train": {"learning_rate": {"loguniform": [0.1, 0.001]}}}, algorithm="random"),
        argv=("tune", "iris")),
    Bad("search-key-not-in-experiment", ("params.yaml:sweeps.iris.space.train.epochz: no key 'train.epochz' in the "
                                         "experiment (did you mean 'epochs'?). Tried: 1",),
        sweep(space={"train": {"epochz": {"grid": [1, 2]}}}), argv=("tune", "iris")),
    Bad("search-value-invalid", ("params.yaml:sweeps.iris.space.train.optimizer: unknown optimizer 'sgdd'",
                                 "Did you mean 'sgd'?", "Tried: 'sgdd'"),
        sweep(space={"train": {"optimizer": {"grid": ["adam", "sgdd"]}}}), argv=("tune", "iris")),
    Bad("sweep-asks-for-more-than-any-node", ("sweeps.iris: each trial asks for cpu=1, gpu=1 but no node of the "
                                              "cluster has that much",),
        sweep(space={"train": {"epochs": {"grid": [1, 2]}}}, gpu=1), argv=("tune", "iris")),
    Bad("fold-tasks-ask-for-more-than-any-node", ("params.yaml:experiments.iris.evaluate.cpu=1, "
                                                  "params.yaml:experiments.iris.evaluate.gpu=1: each fold's Ray task "
                                                  "asks for that much but no node of the cluster has it",),
        iris("evaluate", stack_folds=False, parallel="ray", gpu=1)),
    Bad("nested-below-2-outer-folds", ("--nested 1: expected at least 2 outer folds",),
        sweep(space={"train": {"epochs": {"grid": [1, 2]}}}), argv=("tune", "iris", "--nested", "1")),
    Bad("nested-more-than-rows", ("--nested 1000: expected at most 150 outer folds, one a row of data/iris.csv's "
                                  "150",),
        sweep(space={"train": {"epochs": {"grid": [1, 2]}}}), argv=("tune", "iris", "--nested", "1000")),
    Bad("nested-class-too-small", ("--nested 60: stratified outer folds need at least 60 rows of every class; too "
                                   "few in {", "Allowed: --nested up to 50"),
        sweep(space={"train": {"epochs": {"grid": [1, 2]}}}), argv=("tune", "iris", "--nested", "60")),
    Bad("nested-inner-folds-too-many", ("--nested 3: outer fold 0's sweep has 100 rows, too few for its inner folds "
                                        "(params.yaml:experiments.iris.evaluate.n_splits: stratified 40-fold needs at "
                                        "least 40 rows of every class",),
        lambda raw: (iris("evaluate", n_splits=40, stratify=True)(raw),
                     sweep(space={"train": {"epochs": {"grid": [1, 2]}}})(raw)),
        argv=("tune", "iris", "--nested", "3")),
    Bad("nested-with-resume", ("--nested and --resume: a nested sweep runs whole",),
        sweep(space={"train": {"epochs": {"grid": [1, 2]}}}), argv=("tune", "iris", "--nested", "3", "--resume")),
    Bad("nested-on-series-windows", ("params.yaml:experiments.diabetes.preprocess.lookback: --nested needs "
                                     "independent rows, and a series' windows overlap their neighbours",),
        lambda raw: (raw["experiments"]["diabetes"]["preprocess"].update(lookback=3),
                     raw["experiments"]["diabetes"]["evaluate"].update(method="timeseries", shuffle=False),
                     raw["sweeps"].update(diabetes={"space": {"train": {"epochs": {"grid": [1, 2]}}}})),
        argv=("tune", "diabetes", "--nested", "3")),
    Bad("params-not-yaml", ("params.yaml: not valid YAML: while parsing a flow sequence expected ',' or ']', but got "
                            "'<stream end>' at line 2, column 1",), files={"params.yaml": "experiments: [unclosed\n"}),
    Bad("params-file-missing", ("nowhere.yaml: file not found",), argv=("--params", "nowhere.yaml", "run")),
    Bad("params-file-a-folder", ("conf: cannot be read (Is a directory); expected a YAML file",),
        argv=("--params", "conf", "run"), prepare=lambda project: (project / "conf").mkdir()),
    Bad("params-not-utf8", ("params.yaml: not UTF-8 text (byte 5: invalid continuation byte); save it as UTF-8",),
        prepare=lambda project: (project / "params.yaml").write_bytes(
            "# café\n".encode("latin-1") + (project / "params.yaml").read_bytes())),
    # --- data (issue item 2) --------------------------------------------------------------------------------------
    Bad("data-file-missing", ("data/mine.csv: file not found (params.yaml:experiments.mine.dataset.file)",),
        mine(), argv=("run", "mine")),
    Bad("data-file-empty", ("data/mine.csv: the file is empty (params.yaml:experiments.mine.dataset.file)",),
        mine(), files={"data/mine.csv": ""}, argv=("run", "mine")),
    Bad("data-header-only", ("data/mine.csv: the file has no data rows, only a header row "
                             "(params.yaml:experiments.mine.dataset.file)",),
        mine(), files={"data/mine.csv": "a,b,y\n"}, argv=("run", "mine")),
    Bad("target-column-absent", ("data/iris.csv: target column 'variety' not found "
                                 "(params.yaml:experiments.iris.dataset.target)", f"Columns found: {IRIS_COLUMNS}"),
        iris("dataset", target="variety")),
    Bad("non-numeric-feature-without-encoding", (
        "data/mine.csv: non-numeric feature columns ['colour'] (e.g. 'red' in 'colour') need an encoding",
        "preprocess.categorical is 'none' (params.yaml:experiments.mine.preprocess.categorical)",
        "Allowed: 'onehot' or 'ordinal'"), mine(), files={"data/mine.csv": rows("01" * 4, extra="colour")},
        argv=("run", "mine")),
    Bad("missing-values-without-imputation", (
        "data/mine.csv: feature column(s) ['b'] have missing values (file lines [4])",
        "preprocess.impute is 'none' (params.yaml:experiments.mine.preprocess.impute)",
        "Allowed: 'mean', 'median' or 'most_frequent'"),
        mine(), files={"data/mine.csv": rows("01" * 4).replace("2.5,2.0,0", "2.5,,0")}, argv=("run", "mine")),
    Bad("missing-values-header-less", (
        "data/mine.csv: feature column(s) ['1'] have missing values (file lines [2])",),
        mine({"header": False, "target": 2}),
        files={"data/mine.csv": rows("01" * 4).split("\n", 1)[1].replace("1.5,1.0,1", "1.5,,1")}, argv=("run", "mine")),
    Bad("imputing-a-column-with-no-value", (
        "data/mine.csv: feature column(s) ['b'] have no value in the rows the preprocessing is fitted on",
        "preprocess.impute 'median' (params.yaml:experiments.mine.preprocess.impute) has nothing to fill them from"),
        mine(preprocess={"impute": "median"}), files={"data/mine.csv": "a,b,y\n" + "".join(
            f"{i}.5,,{i % 2}\n" for i in range(8))}, argv=("run", "mine")),
    Bad("missing-target", ("data/mine.csv: target column 'y' has missing values (file lines [4]); every row needs a "
                           "target (params.yaml:experiments.mine.dataset.target)",),
        mine(), files={"data/mine.csv": rows("01" * 4).replace("2.5,2.0,0", "2.5,2.0,")}, argv=("run", "mine")),
    Bad("single-class", ("data/mine.csv: target column 'y' has a single class (1); task 'binary' "
                         "(params.yaml:experiments.mine.dataset.task) needs at least two",),
        mine(), files={"data/mine.csv": rows("1" * 8)}, argv=("run", "mine")),
    Bad("binary-with-three-classes", ("data/mine.csv: task 'binary' (params.yaml:experiments.mine.dataset.task) "
                                      "needs exactly 2 classes in 'y'; found 3: ['0', '1', '2']",),
        mine(), files={"data/mine.csv": rows("012" * 3)}, argv=("run", "mine")),
    Bad("target-column-listed-twice", ("params.yaml:experiments.mine.dataset.target: names column(s) ['y'] more "
                                       "than once; list each target column once. Received: ['y', 'b', 'y']",),
        mine({"target": ["y", "b", "y"], "task": "regression"}, units=3), argv=("run", "mine")),
    Bad("label-neither-0-nor-1", (
        "data/mine.csv: task 'multilabel' (params.yaml:experiments.mine.dataset.task) needs each target column to hold "
        "0 (the label does not apply) or 1 (it does); column 'z' holds 2 (file line 4)",),
        mine({"target": ["y", "z"], "task": "multilabel"}, units=2),
        files={"data/mine.csv": "a,b,y,z\n" + "".join(f"{i}.5,{i % 3},{i % 2},{2 if i == 2 else 1 - i % 2}\n"
                                                       for i in range(8))}, argv=("run", "mine")),
    Bad("class-smaller-than-stratified-folds", (
        "params.yaml:experiments.mine.evaluate.n_splits: stratified 3-fold needs at least 3 rows of every class; "
        "too few in {'1': 2}", "of data/mine.csv", "Allowed: n_splits up to 2, or stratify: false",
        "Received: n_splits: 3"),
        mine(evaluate={"n_splits": 3, "stratify": True, "seed": 1}), files={"data/mine.csv": rows("00001000010")},
        argv=("run", "mine")),
    Bad("ragged-csv", ("data/mine.csv: file line 3 holds 4 field(s) where the header names 3; every row needs one "
                       "value per column (separator: commas",),
        mine(), files={"data/mine.csv": "a,b,y\n1,2,0\n3,4,1,9\n5,6,0\n"}, argv=("run", "mine")),
    # A file the system cannot read, for root too: /proc/self/mem read from its start is an I/O error.
    Bad("unreadable-csv", ("data/mine.csv: cannot be read (Input/output error) "
                           "(params.yaml:experiments.mine.dataset.file)",),
        mine(), argv=("run", "mine"), prepare=lambda project: (project / "data/mine.csv").symlink_to("/proc/self/mem")),
    Bad("non-numeric-regression-target", ("data/mine.csv: task 'regression' "
                                          "(params.yaml:experiments.mine.dataset.task) "
                                          "needs a numeric target; column 'y' holds 'low' (file line 2)",),
        mine({"task": "regression"}), files={"data/mine.csv": "a,b,y\n1,2,low\n3,4,high\n5,6,low\n"},
        argv=("run", "mine")),
    Bad("target-index-out-of-range", ("data/mine.csv: target index 7 (params.yaml:experiments.mine.dataset.target) "
                                      "is out of range; the file has 3 columns: use 0 to 2",),
        mine({"header": False, "target": 7}), files={"data/mine.csv": "1,2,0\n3,4,1\n5,6,0\n7,8,1\n"},
        argv=("run", "mine")),
    # --- ambiguous or non-finite tables: refused, never read one way silently ----------------------------------
    Bad("duplicate-column-name", ("data/mine.csv: column name 'a' appears 2 times in the header row (0-based "
                                  "columns [0, 1]); every column needs its own name "
                                  "(params.yaml:experiments.mine.dataset.file)",),
        mine(), files={"data/mine.csv": rows("01" * 4).replace("a,b,y", "a,a,y")}, argv=("run", "mine")),
    Bad("empty-column-name", ("data/mine.csv: the header row has an empty column name (0-based column 1 of 3)",),
        mine(), files={"data/mine.csv": rows("01" * 4).replace("a,b,y", "a,,y")}, argv=("run", "mine")),
    Bad("header-repeated-in-data", ("data/mine.csv: file line(s) [5] repeat the header row inside the data",),
        mine(), files={"data/mine.csv": rows("01" * 4).replace("2.5,2.0,0\n", "2.5,2.0,0\na,b,y\n")},
        argv=("run", "mine")),
    Bad("numbers-mixed-with-text", ("data/mine.csv: column 'a' mixes numbers (such as '0.5') with text: 'three' at "
                                    "file line(s) [4]; a numeric column holds numbers only",),
        mine(), files={"data/mine.csv": rows("01" * 4).replace("2.5,2.0,0", "three,2.0,0")}, argv=("run", "mine")),
    Bad("infinite-feature", ("data/mine.csv: column 'b' holds inf at file line(s) [4]: infinite or beyond "
                             "±3.403e+38, the float32 range Keras trains in",),
        mine(), files={"data/mine.csv": rows("01" * 4).replace("2.5,2.0,0", "2.5,inf,0")}, argv=("run", "mine")),
    Bad("feature-beyond-float32", ("data/mine.csv: column 'a' holds 1e+39 at file line(s) [5]: infinite or beyond "
                                   "±3.403e+38",),
        mine(), files={"data/mine.csv": rows("01" * 4).replace("3.5,0.0,1", "1e39,0.0,1")}, argv=("run", "mine")),
    Bad("infinite-series-value", ("data/mine.csv: column 'y' holds -inf at file line(s) [3]",),
        mine({"task": "regression"}, preprocess={"lookback": 2},
             evaluate={"method": "holdout", "shuffle": False, "test_size": 0.3}),
        files={"data/mine.csv": "y\n1.0\n-inf\n3.0\n4.0\n5.0\n6.0\n7.0\n8.0\n"}, argv=("run", "mine")),
    Bad("decimal-commas", ("data/mine.csv: column 'a' holds numbers with a decimal comma ('0,5' at file line 2); "
                           "kerasflow reads '.' as the decimal point",),
        mine(), files={"data/mine.csv": "a;b;y\n0,5;1;0\n1,5;2;1\n2,5;3;0\n3,5;4;1\n"}, argv=("run", "mine")),
    Bad("decimal-commas-without-a-header", ("data/mine.csv: column '0' holds numbers with a decimal comma ('0,5' at "
                                            "file line 1)",),
        mine({"header": False, "target": 2}), files={"data/mine.csv": "0,5;1;0\n1,5;2;1\n2,5;3;0\n3,5;4;1\n"},
        argv=("run", "mine")),
    Bad("experiment-name-leaves-the-project", ("params.yaml:experiments.../escape: an experiment's name becomes a "
                                               "folder (results/<name>)", "Received: '../escape'"),
        lambda raw: raw["experiments"].update({"../escape": raw["experiments"]["iris"]}), argv=("run", "iris")),
    # --- predict: new rows for a saved model (issue item 2) -------------------------------------------------------
    Bad("compare-experiments-not-run", (
        "kerasflow: error: results/iris/metrics.json: not found; run the experiment first (kerasflow run iris)",),
        argv=("compare", "iris", "diabetes")),
    Bad("compare-metrics-with-conflict-markers", (
        "kerasflow: error: results/iris/metrics.json: cannot be read as the JSON kerasflow wrote (Expecting value: "
        "line 1 column 1 (char 0)); restore it (`dvc checkout`, git) or rerun the command that writes it",),
        files={"results/iris/metrics.json": '<<<<<<< HEAD\n{"accuracy": {"mean": 0.9}}\n=======\n',
               "results/iris/run.json": "{}\n"},
        argv=("compare", "iris", "diabetes")),
    Bad("report-over-a-record-with-conflict-markers", (
        "kerasflow: error: results/iris/metrics.json: cannot be read as the JSON kerasflow wrote",),
        files={"results/iris/metrics.json": '<<<<<<< HEAD\n{"accuracy": {"mean": 0.9}}\n=======\n',
               "results/iris/run.json": "{}\n"},
        argv=("report",)),
    Bad("mlflow-uri-with-a-bad-port", (
        "params.yaml:tracking.mlflow: no MLflow server answers at http://127.0.0.1:abc (nonnumeric port: 'abc')",),
        lambda raw: raw.update(tracking={"mlflow": "http://127.0.0.1:abc"})),
    Bad("tensorboard-under-no-users-home", (
        "params.yaml:tracking.tensorboard: cannot make the folder ~no_such_user_kf/tb (",),
        lambda raw: raw.update(tracking={"tensorboard": "~no_such_user_kf/tb"})),
    Bad("mlflow-uri-unreadable", (
        "params.yaml:tracking.mlflow: no MLflow server answers at http://[::1 (Invalid IPv6 URL)",),
        lambda raw: raw.update(tracking={"mlflow": "http://[::1"})),
    Bad("compare-an-experiment-with-itself", (
        "kerasflow: error: compare: expected two different experiments, received 'iris' twice",),
        argv=("compare", "iris", "iris")),
    # --- series --------------------------------------------------------------------------------------------------
    Bad("horizon-beyond-the-held-out-part", (
        "data/diabetes.csv: params.yaml:experiments.diabetes.preprocess.horizon=200 steps reach past a held-out part "
        "of 80 rows",), lambda raw: (raw["experiments"]["diabetes"]["preprocess"].update(lookback=3, horizon=200),
                                     raw["experiments"]["diabetes"]["evaluate"].update(method="holdout", shuffle=False,
                                                                                       test_size=0.33)),
        argv=("run", "diabetes")),
    Bad("lookback-column-not-in-the-file", (
        "data/diabetes.csv: params.yaml:experiments.diabetes.preprocess.lookback_columns names column(s) "
        "['temperature'] the file does not have besides the target",),
        lambda raw: (raw["experiments"]["diabetes"]["preprocess"].update(lookback=3, lookback_columns=["temperature"]),
                     raw["experiments"]["diabetes"]["evaluate"].update(method="timeseries", shuffle=False)),
        argv=("run", "diabetes")),
    # --- text generation ---------------------------------------------------------------------------------------
    Bad("text-shorter-than-two-windows", (
        "data/story.txt: 16 char tokens; a window of 40 (params.yaml:experiments.story.preprocess.tokens.window) and "
        "its next token are 41, needed in the training part and in the held-out tail: at least 82",),
        lambda raw: raw["experiments"].update(story={
            "dataset": {"file": "data/story.txt", "task": "next_token"},
            "preprocess": {"tokens": {"level": "char", "window": 40, "num_words": 20}},
            "model": {"layers": [{"type": "embedding", "output_dim": 8}, {"type": "lstm", "units": 8},
                                 {"type": "dense", "units": 20, "activation": "softmax"}]},
            "train": {"epochs": 1, "batch_size": 8},
            "evaluate": {"method": "holdout", "shuffle": False}}),
        files={"data/story.txt": "once upon a time"}, argv=("run", "story")),
    Bad("generate-from-a-tabular-model", (
        "results/iris/model: a 'multiclass' model; generate needs one trained with task next_token",),
        argv=("generate", "--model", "results/iris/model", "--prompt", "hello", "--length", "5")),
    # --- continued training (train.init_from) ---------------------------------------------------------------------
    Bad("init-from-outside-continued", ("params.yaml:experiments.iris.train.init_from: an experiment that starts from "
                                        "a saved model goes under `continued:`",), iris("train", init_from="x/model")),
    Bad("init-from-missing-folder", ("params.yaml:continued.more.train.init_from: results/nowhere: model folder "
                                     "not found",),
        lambda raw: (more()(raw), raw["continued"]["more"]["train"].update(init_from="results/nowhere")),
        argv=("run", "more")),
    Bad("init-from-a-model-cut-short", ("params.yaml:continued.more.train.init_from: results/iris/model/model.keras: "
                                        "cannot load the model (",),
        more(), argv=("run", "more"), prepare=lambda project: (project / "results/iris/model/model.keras").write_bytes(
            (project / "results/iris/model/model.keras").read_bytes()[:200])),
    Bad("init-from-other-layer-shapes", (
        "params.yaml:continued.more.model.layers and the model in results/iris/model differ at layers[0] (Dense): "
        "weights of shapes [(4, 5), (5,)] here, [(4, 6), (6,)] there",),
        more([{"type": "dense", "units": 5, "activation": "relu"},
              {"type": "dense", "units": 3, "activation": "softmax"}]), argv=("run", "more")),
    Bad("init-from-other-columns", (
        "data/more.csv: its feature columns differ from those the preprocessing of results/iris/model "
        "(params.yaml:continued.more.train.init_from) was fitted on: missing ['petal_width'], extra ['petal_w']",),
        more(file="data/more.csv"), argv=("run", "more"),
        files={"data/more.csv": "sepal_length,sepal_width,petal_length,petal_w,species\n"
                                + "".join(f"5.{i},3.5,1.4,0.2,{s}\n" for i, s in
                                          enumerate(["setosa", "versicolor", "virginica"] * 3))}),
    Bad("augment-without-images", ("params.yaml:experiments.iris.preprocess.augment: transforms images: the model "
                                   "must make each row one with a reshape",),
        iris("preprocess", augment={"zoom": 0.1})),
    # --- pretrained bases --------------------------------------------------------------------------------------------
    Bad("pretrained-imagenet-downloads", ("params.yaml:experiments.img.model.layers[1].weights: 'imagenet' would "
                                          "download the weights at run time",),
        image({"weights": "imagenet"}), files={"data/img.csv": images()}, argv=("run", "img")),
    Bad("pretrained-input-too-small", (
        "params.yaml:experiments.img.model.layers[1].name: vgg16 cannot take the images the layers before it give, "
        "of shape (28, 28, 3): Input size must be at least 32x32",),
        image({"weights": None}, side=28), files={"data/img.csv": images(28)}, argv=("run", "img")),
    Bad("pretrained-weights-file-missing", (
        "params.yaml:experiments.img.model.layers[1].weights: weights/vgg16_notop.weights.h5: file not found; save "
        "the base's weights once where they can be downloaded",),
        image({"weights": "weights/vgg16_notop.weights.h5"}), files={"data/img.csv": images()}, argv=("run", "img")),
    Bad("pretrained-weights-of-another-architecture", (
        "params.yaml:experiments.img.model.layers[1].weights: weights/mobilenet.weights.h5 does not hold the weights "
        "of vgg16 without its top",),
        image({"weights": "weights/mobilenet.weights.h5"}), files={"data/img.csv": images()}, argv=("run", "img"),
        prepare=other_base_weights),
    Bad("pretrained-unknown-trainable-from", (
        "params.yaml:experiments.img.model.layers[1].trainable_from: vgg16 has no layer 'block5_conv9'; did you "
        "mean 'block5_conv3'?", "Its layers: block1_conv1 ... block5_pool"),
        image({"weights": None, "trainable_from": "block5_conv9"}), files={"data/img.csv": images()},
        argv=("run", "img")),
    Bad("word-vectors-file-missing", (
        "params.yaml:experiments.mine.model.layers[0].weights: weights/glove.txt: file not found; save the word "
        "vectors (e.g. GloVe's glove.6B.100d.txt) there once",), mine(**WITH_WORD_VECTORS),
        files={"data/mine.csv": REVIEWS}, argv=("run", "mine")),
    Bad("word-vectors-of-another-width", (
        "params.yaml:experiments.mine.model.layers[0].weights: weights/glove.txt holds vectors of 2 numbers, but the "
        "embedding's output_dim is 4: make them equal",), mine(**WITH_WORD_VECTORS),
        files={"data/mine.csv": REVIEWS, "weights/glove.txt": "good 1 2\nbad 3 4\n"}, argv=("run", "mine")),
    Bad("class-weight-of-a-label-not-in-the-target", (
        "data/iris.csv: params.yaml:experiments.iris.train.class_weight names label(s) 'virginca' the target does not "
        "have (keys are the target's labels", "Labels found: 'setosa', 'versicolor', 'virginica'"),
        iris("train", class_weight={"virginca": 2.0})),
    Bad("class-weight-on-a-regression", (
        "params.yaml:experiments.diabetes.train.class_weight: weighs the rows of each class: it needs task 'binary' "
        "or 'multiclass'. Received: task 'regression'",),
        lambda raw: raw["experiments"]["diabetes"]["train"].update(class_weight="balanced")),
    Bad("predict-missing-column", ("data/new.csv: missing column(s) ['petal_width']",
                                   f"expected the feature columns {IRIS_FEATURES}"),
        files={"data/new.csv": "sepal_length,sepal_width,petal_length\n5.1,3.5,1.4\n"}, argv=PREDICT),
    Bad("predict-extra-column", ("data/new.csv: unexpected column(s) ['colour']",
                                 f"expected the feature columns {IRIS_FEATURES}"),
        files={"data/new.csv": "sepal_length,sepal_width,petal_length,petal_width,colour\n5.1,3.5,1.4,0.2,red\n"},
        argv=PREDICT),
    Bad("predict-non-numeric-value", ("data/new.csv: column 'petal_width' must be numeric, as in training; found "
                                      "'wide' (file line 3)",),
        files={"data/new.csv": "sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n5,3,1,wide\n"},
        argv=PREDICT),
    Bad("predict-infinite-value", ("data/new.csv: column 'petal_length' holds inf at file line(s) [3]",),
        files={"data/new.csv": "sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n5,3,inf,1\n"},
        argv=PREDICT),
    # --- folders of class subfolders ---------------------------------------------------------------------------------
    Bad("folder-target-not-label", ("data/notes: a folder's rows take their class from their subfolder, as the column "
                                    "'label': set dataset.target (params.yaml:experiments.mine.dataset.target) to "
                                    "'label'. Received: 'y'",),
        mine({"file": "data/notes"}), files=NOTES, argv=("run", "mine")),
    Bad("folder-of-texts-without-preprocess-text", (
        "data/notes: non-numeric feature columns ['text'] (e.g. 'a good film' in 'text') need an encoding",
        "; or, to read 'text' as text, preprocess.text: {column: text}"),
        mine({"file": "data/notes", "target": "label"}), files=NOTES, argv=("run", "mine")),
    Bad("folder-of-images-and-texts", ("data/notes: holds both image files (.bmp, .gif, .jpeg, .jpg, .png), as "
                                       "pos/2.png, and text files (.txt), as neg/1.txt, in its class subfolders "
                                       "(params.yaml:experiments.mine.dataset.file); a folder's rows are all images "
                                       "or all texts: move the others out",),
        mine({"file": "data/notes", "target": "label"}), files={**NOTES, "data/notes/pos/2.png": "x"},
        argv=("run", "mine")),
    Bad("folder-without-class-files", ("data/notes: no image files (.bmp, .gif, .jpeg, .jpg, .png) or text files "
                                       "(.txt) in class subfolders (params.yaml:experiments.mine.dataset.file); "
                                       "expected one subfolder a class",),
        mine({"file": "data/notes", "target": "label"}), files={"data/notes/1.txt": "a text beside no subfolder"},
        argv=("run", "mine")),
    Bad("folder-image-unreadable", ("data/pics/cats/1.png: cannot be read as an image (UnidentifiedImageError",),
        mine({"file": "data/pics", "target": "label", "image_size": [4, 4]}),
        files={"data/pics/cats/1.png": "not a PNG", "data/pics/dogs/1.png": "nor this"}, argv=("run", "mine")),
    Bad("folder-for-a-regression", ("data/notes: a folder of class subfolders is read for a classification; task "
                                    "'regression' (params.yaml:experiments.mine.dataset.task) needs a CSV. Allowed: "
                                    "binary, multiclass",),
        mine({"file": "data/notes", "target": "label", "task": "regression"}), files=NOTES, argv=("run", "mine")),
    Bad("folder-images-of-another-size-than-the-reshape", (
        "data/pics: images of 4 x 4 x 1 (params.yaml:experiments.mine.dataset.image_size, params.yaml:experiments."
        "mine.dataset.color_mode) are 16 values, and model.layers[0] reshapes 48 (4 x 4 x 3; params.yaml:"
        "experiments.mine.model.layers[0].target_shape): make them equal",),
        mine({"file": "data/pics", "target": "label", "image_size": [4, 4], "color_mode": "grayscale"},
             model={"layers": [{"type": "reshape", "target_shape": [4, 4, 3]}, {"type": "flatten"},
                               {"type": "dense", "units": 1, "activation": "sigmoid"}]}),
        argv=("run", "mine"), prepare=lambda project: two_classes_of_images(project / "data/pics")),
    Bad("folder-not-found", ("data/pics: file not found (params.yaml:experiments.mine.dataset.file)",),
        mine({"file": "data/pics", "target": "label", "image_size": [4, 4]}), argv=("run", "mine")),
    Bad("dataset-file-name-too-long", ("cannot be opened (File name too long) (params.yaml:experiments.iris.dataset."
                                       "file)",),
        iris("dataset", file="data/" + "x" * 300 + ".csv")),
    Bad("folder-class-linked", ("data/pics/dogs: a link to a folder; DVC does not follow such a link, so its files "
                                "would be rows that no md5 records: move or copy the folder there",),
        mine({"file": "data/pics", "target": "label", "image_size": [4, 4]}), argv=("run", "mine"),
        prepare=lambda project: (two_classes_of_images(project / "data/elsewhere"), (project / "data/pics").mkdir(),
                                 (project / "data/elsewhere/cats").rename(project / "data/pics/cats"),
                                 (project / "data/pics/dogs").symlink_to(project / "data/elsewhere/dogs"))),
    # The refit's rows are checked with the folds', before anything is trained or written.
    Bad("refit-validation-split-leaves-no-training-row", (
        "data/iris.csv: params.yaml:experiments.iris.train.validation_split=0.995 of the refit's 150 rows leaves no "
        "training row",), iris("train", validation_split=0.995)),
    Bad("image-size-on-a-csv", ("data/iris.csv: dataset.image_size (params.yaml:experiments.iris.dataset.image_size) "
                                "is how a folder's images are read, and dataset.file (params.yaml:experiments.iris."
                                "dataset.file) holds a file, not a folder of images; leave it out",),
        iris("dataset", image_size=[8, 8])),
    Bad("predict-folder-with-a-csv-model", ("data/notes: is a folder; the model was trained on a CSV: expected a CSV "
                                            "file",),
        files=NOTES, argv=("predict", "--model", "results/iris/model", "--input", "data/notes", "--output",
                           "out/pred.csv")),
    Bad("output-file-is-a-folder", ("data: is a folder; expected a file path",), argv=("report", "--out", "data")),
    Bad("data-out-a-folder-in-a-files-place", ("fresh/wine.csv: is a folder; expected a file path",),
        argv=("data", "--out", "fresh"), prepare=lambda project: (project / "fresh/wine.csv").mkdir(parents=True)),
    Bad("report-out-name-too-long", (f"reports/{'x' * 300}.md: cannot be written (File name too long)",),
        argv=("report", "--out", f"reports/{'x' * 300}.md")),
    Bad("data-out-cannot-be-made", ("/proc/kerasflow/iris.csv: cannot be written (",),
        argv=("data", "--out", "/proc/kerasflow")),
    Bad("output-folder-is-a-file", ("params.yaml: is a file; expected a folder path",),
        argv=("run", "iris", "--results", "params.yaml")),
    Bad("default-results-is-a-file", ("results: is a file; expected a folder path",), argv=("run", "iris"),
        prepare=lambda project: (shutil.rmtree(project / "results", ignore_errors=True),
                                 (project / "results").write_text("not a folder\n"))),
    Bad("report-html-is-a-folder", ("reports/report.html: is a folder; expected a file path",),
        argv=("run", "iris", "--report", "reports/summary.md"),
        prepare=lambda project: (project / "reports/report.html").mkdir(parents=True)),
    Bad("output-under-a-file", ("params.yaml/text.txt: cannot be written: ", "params.yaml is a file, not a folder"),
        argv=("generate", "--model", "results/iris/model", "--prompt", "a", "--length", "1", "--output",
              "params.yaml/text.txt")),
    Bad("predict-missing-model", ("results/nowhere: model folder not found",),
        files={"data/new.csv": "sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n"},
        argv=("predict", "--model", "results/nowhere", "--input", "data/new.csv", "--output", "out/pred.csv")),
]


@pytest.fixture(scope="module")
def saved_iris_model(tmp_path_factory, bundled_data) -> Path:
    """An (untrained) iris model folder, written as `kerasflow run` writes one: what `predict` is given."""
    from kerasflow.tasks.config.schema import parse_params
    from kerasflow.tasks.data.preprocess import Preprocessor
    from kerasflow.tasks.data.table import load_table
    from kerasflow.tasks.outputs.results import write_model
    from kerasflow.tasks.training.evaluate import FinalModel, encode_labels
    from kerasflow.tasks.training.models import build_model

    root = tmp_path_factory.mktemp("saved")
    spec = parse_params(tiny_params()).experiments["iris"]
    table = load_table(spec.dataset, bundled_data.parent)
    labels = encode_labels(spec, table)
    preprocessor = Preprocessor.from_spec(spec.preprocess).fit(table.X)
    final = FinalModel(model=build_model(spec.model, len(IRIS_FEATURES), 1), preprocessor=preprocessor,
                       codec=labels.codec)
    return write_model(root / "model", spec, final)


def with_previous_results(project: Path, saved_iris_model: Path) -> Path:
    """`project` after an earlier successful run: results, a model and a report that must survive."""
    out = project / "results" / "iris"
    shutil.copytree(saved_iris_model, out / "model")
    (out / "metrics.json").write_text(json.dumps({"accuracy": {"mean": 0.9}}) + "\n")
    (project / "reports").mkdir()
    (project / "reports" / "summary.md").write_text("# the previous report\n")
    return project


@pytest.fixture
def previous_results(project, saved_iris_model) -> Path:
    return with_previous_results(project, saved_iris_model)


def test_the_table_has_at_least_25_distinct_bad_inputs():
    assert len({case.id for case in CASES}) == len(CASES) >= 25
    assert THROUGH_THE_COMMAND <= {case.id for case in CASES}


@dataclass(frozen=True)
class Refused:
    """What the command did with one case: exit status, its output, and the project before and after."""

    status: int
    out: str
    err: str
    before: Snapshot
    after: Snapshot


# One case of each kind runs the installed command in every run of the suite, the others `main` in this process;
# KERASFLOW_BAD_INPUT_ALL=1 (the longer run, docs/reliability.md) runs every case through the command: ~4.5 s each
# with the imports, about 3 minutes on CI's two cores.
THROUGH_THE_COMMAND = ({case.id for case in CASES} if os.environ.get("KERASFLOW_BAD_INPUT_ALL") == "1" else
                       {"unknown-key-suggests-closest", "search-value-invalid", "ragged-csv", "predict-missing-column",
                        "sweep-asks-for-more-than-any-node", "resume-with-nothing-saved",
                        "resume-of-another-versions-sweep"})


@pytest.fixture(scope="module")
def refusals(tmp_path_factory, bundled_data, saved_iris_model, configured_server, ray_server) -> dict[str, Refused]:
    """Every case, each in a project of its own with earlier results: through the installed console script in a
    fresh process (side by side, one per core), or through `kerasflow.flows.cli.main`, what that script runs, in
    this process (one at a time: it works in the current directory).

    In this process as for a user who keeps a Prefect server and a Ray running: a case refused inside a flow (a
    pretrained model's weights) records it on the run's server, and one refused for its Ray resources asks the run's
    kept Ray (`ray_server`), where a temporary server or a Ray of the case's own would cost more than the rest of the
    case. The console script's cases run on the run's Prefect server and, for the sweep's resources, on a Ray the
    command starts itself, a user's default (a sweep refused on a cluster it joined: tests/test_ray_head.py)."""
    import ray

    def prepare(case: Bad) -> tuple[Path, Snapshot]:
        project = with_previous_results(make_project(tmp_path_factory.mktemp(case.id), bundled_data),
                                        saved_iris_model)
        raw = json.loads(json.dumps(tiny_params()))  # no layer shared between the experiments: one edit, one error
        case.edit(raw)
        (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        for name, content in case.files.items():
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            (project / name).write_text(content)
        case.prepare(project)
        return project, snapshot(project)

    def command(case: Bad) -> Refused:
        project, before = prepare(case)
        result = run_cli(list(case.argv), cwd=project, env={"PREFECT_API_URL": configured_server})
        return Refused(result.returncode, result.stdout, result.stderr, before, snapshot(project))

    def in_process(case: Bad) -> Refused:
        project, before = prepare(case)
        with pytest.MonkeyPatch.context() as patch:
            for name, value in ray_server.items():
                patch.setenv(name, value)
            status, out, err = run_in_process(list(case.argv), project)
        return Refused(status, out, err, before, snapshot(project))

    try:
        found = {case.id: in_process(case) for case in CASES if case.id not in THROUGH_THE_COMMAND}
    finally:
        ray.shutdown()  # the kept Ray a case joined: later tests in this process start or join their own
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        through = [case for case in CASES if case.id in THROUGH_THE_COMMAND]
        found |= dict(zip((case.id for case in through), pool.map(command, through)))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_exits_2_with_one_clear_message_and_writes_nothing(case, refusals):
    refused = refusals[case.id]
    status, out, err = refused.status, refused.out, refused.err
    assert "Traceback" not in err + out, err[-3000:]
    assert status == 2, err[-3000:]
    assert out == ""
    # One message, not a traceback or a failed flow run's log: the check happens before anything starts.
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kerasflow: error: "), (
        f"{len(lines)} lines of stderr instead of one message (a data check made inside the Prefect flow logs the "
        f"failed task's traceback; flows/cli.py must check the data before the flow starts):\n{err[-3000:]}")
    for fragment in case.expected:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert changes(refused.before, refused.after) == {"created": [], "deleted": [], "changed": []}


@pytest.mark.slow
def test_a_bad_second_experiment_stops_the_run_before_the_first_is_written(previous_results, prefect_server):
    """`kerasflow run` checks every selected experiment's data before training any: all or nothing."""
    project = previous_results
    raw = tiny_params()
    raw["experiments"]["diabetes"]["dataset"]["target"] = "progress"
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    before = snapshot(project)

    result = run_cli(["run", "iris", "diabetes"], cwd=project, env={"PREFECT_API_URL": prefect_server})

    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [
        "kerasflow: error: data/diabetes.csv: target column 'progress' not found "
        "(params.yaml:experiments.diabetes.dataset.target); did you mean 'progression'? Columns found: "
        + ", ".join(pd.read_csv(project / "data/diabetes.csv", nrows=0).columns)]
    assert changes(before, snapshot(project)) == {"created": [], "deleted": [], "changed": []}
