"""params.yaml validation: the shipped file loads, and every mistake names its key."""

from __future__ import annotations

import copy
import json
import re

import pytest
import yaml
from helpers import ROOT, tiny_params

from kerasflow.tasks.config.errors import ParamsError
from kerasflow.tasks.config.schema import ExperimentSpec, load_params, parse_params
from kerasflow.tasks.config.search import SearchSpec


def test_shipped_params_load_with_the_books_experiments():
    params = load_params(ROOT / "params.yaml")
    assert {"iris_mlp", "boston_baseline", "boston_standardized", "cancer_mlp", "digits_cnn"} <= set(
        params.experiments)
    iris = params.experiments["iris_mlp"]
    assert [layer.units for layer in iris.model.layers] == [4, 6, 3]
    assert (iris.train.epochs, iris.train.batch_size, iris.evaluate.n_splits) == (200, 5, 10)
    assert params.experiments["boston_standardized"].preprocess.scale == "standard"
    assert params.experiments["boston_baseline"].preprocess.scale == "none"
    assert params.experiments["cancer_mlp"].evaluate.stratify
    for name in ("sunspots_mlp", "sunspots_lstm", "sunspots_lstm_stateful"):
        series = params.experiments[name]
        assert series.preprocess.lookback == 3 and series.evaluate.method == "holdout"
        assert not series.evaluate.shuffle and series.evaluate.test_size == 0.33
    assert params.experiments["sunspots_lstm_stateful"].model.stateful


def _bad(mutate) -> str:
    raw = copy.deepcopy(tiny_params())
    mutate(raw["experiments"]["iris"])
    with pytest.raises(ParamsError) as info:
        parse_params(raw)
    return str(info.value)


@pytest.mark.parametrize("mutate, expected", [
    (lambda e: e["train"].update(epoch=3), ["params.yaml:experiments.iris.train.epoch", "did you mean 'epochs'"]),
    (lambda e: e["train"].update(epochs="many"), ["params.yaml:experiments.iris.train.epochs", "'many'"]),
    (lambda e: e["train"].update(epochs=0), ["experiments.iris.train.epochs", "greater than 0"]),
    (lambda e: e["train"].update(batch_size=-5), ["experiments.iris.train.batch_size", "-5"]),
    (lambda e: e["train"].update(optimizer="adamm"), ["experiments.iris.train.optimizer", "Did you mean 'adam'"]),
    (lambda e: e["model"]["layers"][0].update(activation="relux"),
     ["experiments.iris.model.layers[0].activation", "Did you mean 'relu'"]),
    (lambda e: e["model"]["layers"][0].update(unitz=3), ["experiments.iris.model.layers[0].unitz", "'units'"]),
    (lambda e: e["model"]["layers"][0].update(initializer="normall"),
     ["experiments.iris.model.layers[0].initializer", "unknown initializer 'normall'"]),
    (lambda e: e["train"].update(loss="mean_squared_error"),
     ["params.yaml:experiments.iris.train.loss: does not fit task 'multiclass'", "Allowed: sparse_categorical",
      "Received: 'mean_squared_error'"]),
    (lambda e: e["evaluate"].update(n_splits=1), ["experiments.iris.evaluate.n_splits", "1"]),
    (lambda e: e["train"].update(lr_schedule={"type": "piecewise", "boundaries": [5, 3], "values": [0.1, 0.01, 0.001]}),
     ["params.yaml:experiments.iris.train.lr_schedule.boundaries: must rise, each epoch once. Received: [5, 3]"]),
    (lambda e: e["train"].update(lr_schedule={"type": "piecewise", "boundaries": [5], "values": [0.1, 0.01, 0.001]}),
     ["params.yaml:experiments.iris.train.lr_schedule.values: needs one rate more than boundaries (1)"]),
    (lambda e: e["train"].update(learning_rate=0.1, lr_schedule={"type": "piecewise", "boundaries": [5],
                                                                 "values": [0.1, 0.01]}),
     ["params.yaml:experiments.iris.train.learning_rate: is given twice: the piecewise schedule's values are"]),
    (lambda e: e["evaluate"].update(method="timeseries", shuffle=True),
     ["params.yaml:experiments.iris.evaluate.shuffle: must be false for method 'timeseries'"]),
    (lambda e: e["evaluate"].update(method="holdout", stratify=True, shuffle=False),
     ["params.yaml:experiments.iris.evaluate.shuffle: must be true for a stratified hold-out"]),
    (lambda e: e["evaluate"].update(n_repeats=3, shuffle=False),
     ["params.yaml:experiments.iris.evaluate.n_repeats: > 1 needs `shuffle: true`"]),
    (lambda e: e["dataset"].pop("task"), ["experiments.iris.dataset.task", "Field required"]),
    (lambda e: e["dataset"].update(task="clustering"), ["experiments.iris.dataset.task", "'clustering'"]),
    (lambda e: e["model"]["layers"][0].update(type="dense3d"), ["experiments.iris.model.layers[0]", "dense3d"]),
    (lambda e: e["preprocess"].update(lookback=3),
     ["params.yaml:experiments.iris.preprocess.lookback:", "needs task 'regression'"]),
    (lambda e: e["preprocess"].update(lookback=0), ["experiments.iris.preprocess.lookback", "greater than 0"]),
    (lambda e: e["preprocess"].update(scale_target=True),
     ["params.yaml:experiments.iris.preprocess.scale_target: needs task 'regression'"]),
    (lambda e: (e["dataset"].update(task="regression"), e["evaluate"].update(stratify=False),
                e["preprocess"].update(scale_target=True),
                e["train"].update(loss="msle"), e["model"]["layers"][-1].update(units=1, activation="linear")),
     ["params.yaml:experiments.iris.preprocess.scale_target: takes the loss in scaled units",
      "mean_squared_logarithmic_error clips those to 0"]),
    (lambda e: e["model"]["layers"].__setitem__(slice(0, 0), [{"type": "reshape", "target_shape": [4, 1]},
                                                              {"type": "lstm", "units": 2, "stateful": True}]),
     ["params.yaml:experiments.iris.train.batch_size: a stateful LSTM needs batch_size 1", "Received: 16"]),
])
def test_bad_params_name_the_key(mutate, expected):
    message = _bad(mutate)
    for fragment in expected:
        assert fragment in message


def test_a_listings_other_names_point_to_their_keys_and_a_misspelt_required_key_is_one_problem():
    """Keras 1's names (the books' `init`) point to their keys, a key with no counterpart here (`input_dim`, compile's
    `metrics`) says why, and a required key misspelt is the unknown key's one problem, not also a missing key."""
    message = _bad(lambda e: e["train"].update(epoch=e["train"].pop("epochs")))
    assert message.startswith("params.yaml:experiments.iris.train.epoch: unknown key 'epoch'; did you mean 'epochs'? ")
    assert "Field required" not in message and "; params.yaml" not in message
    message = _bad(lambda e: e["model"]["layers"][0].update(init="uniform", input_dim=4))
    assert "layers[0].init: unknown key 'init'; did you mean 'initializer'? Allowed here: activation," in message
    assert "layers[0].input_dim: unknown key 'input_dim': the input's shape comes from the data. Allowed" in message
    message = _bad(lambda e: e["train"].update(metrics=["accuracy"]))
    assert "train.metrics: unknown key 'metrics': the score is evaluate.metric, and each epoch's history" in message
    message = _bad(lambda e: e["train"].update(checkpoint={"monitor": "val_accuracy", "save_best_only": True}))
    assert message == ("params.yaml:experiments.iris.train.checkpoint: must be 'best' or 'last'; best keeps the "
                       "refit's best epoch by train.early_stopping.monitor (val_loss without early stopping), as the "
                       "books' ModelCheckpoint(save_best_only=True) by that monitor")


def test_a_timeseries_evaluation_keeps_time_order_unless_told_otherwise():
    raw = copy.deepcopy(tiny_params())
    raw["experiments"]["diabetes"]["evaluate"] = {"method": "timeseries", "n_splits": 3}
    raw["experiments"]["iris"]["evaluate"] = {"method": "holdout"}
    experiments = parse_params(raw).experiments
    assert not experiments["diabetes"].evaluate.shuffle and experiments["iris"].evaluate.shuffle


def test_an_override_to_a_timeseries_evaluation_keeps_time_order_too():
    """A default that follows another key follows it when a sweep or override sets that key: `shuffle`, not
    written, is false for a config that makes the evaluation a timeseries one, and stays true for the k-fold one."""
    raw = copy.deepcopy(tiny_params())
    raw["sweeps"] = {"diabetes": {"space": {"evaluate.method": {"grid": ["kfold", "timeseries"]}}}}
    diabetes = parse_params(raw).experiments["diabetes"]
    assert diabetes.with_overrides({"evaluate.method": "timeseries"}).evaluate.shuffle is False
    assert diabetes.with_overrides({"evaluate.method": "kfold"}).evaluate.shuffle is True
    # Keys written stay as written, defaults as they were: the override changes only what it names.
    assert diabetes.with_overrides({}) == diabetes


def test_a_series_forecast_refuses_a_shuffled_or_kfold_evaluation():
    raw = copy.deepcopy(tiny_params())
    diabetes = raw["experiments"]["diabetes"]
    diabetes["preprocess"]["lookback"] = 3
    with pytest.raises(ParamsError, match="experiments.diabetes.preprocess.lookback: needs a time-ordered "
                                          "evaluation.*method 'kfold', shuffle True"):
        parse_params(raw)
    diabetes["evaluate"] = {"method": "holdout", "shuffle": False}
    assert parse_params(raw).experiments["diabetes"].preprocess.lookback == 3


def test_unknown_experiment_is_refused_with_a_suggestion():
    params = parse_params(tiny_params())
    with pytest.raises(ParamsError, match="^params.yaml:experiments: unknown experiment 'irs' \\(did you mean "
                                          "'iris'\\?\\). Defined: iris, diabetes$"):
        params.select(["irs"])
    assert list(params.select([])) == ["iris", "diabetes"]


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ParamsError, match="file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("experiments: [unclosed")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)


def test_overrides_reach_nested_keys_and_whole_layer_groups():
    spec = parse_params(tiny_params()).experiments["iris"]
    changed = spec.with_overrides({"train.epochs": 3, "model.layers[0].units": 9,
                                   "model.initializer": "he_normal"})
    assert changed.train.epochs == 3 and changed.model.layers[0].units == 9
    assert {layer.initializer for layer in changed.model.layers} == {"he_normal"}
    widened = spec.with_overrides({"model.widths": [16, 8]})
    assert [layer.units for layer in widened.model.layers] == [16, 8, 3]
    assert widened.model.layers[1].activation == "relu"  # hidden layers copy the first hidden layer
    with pytest.raises(KeyError, match="no key 'train.epochz'"):
        spec.with_overrides({"train.epochz": 3})


@pytest.mark.parametrize("sweep, expected", [
    ({"space": {"train.epochz": {"grid": [1, 2]}}}, "sweeps.iris.space.train.epochz: no key 'train.epochz'"),
    ({"space": {"train.optimizer": {"grid": ["adamm"]}}}, "unknown optimizer 'adamm'"),
    # Every listed value is tried, not just the first; a range is tried at both ends.
    ({"space": {"train.optimizer": {"grid": ["adam", "sgdd"]}}},
     "sweeps.iris.space.train.optimizer: unknown optimizer 'sgdd'. Did you mean 'sgd'?"),
    ({"space": {"train.epochs": {"randint": [0, 5]}}, "algorithm": "random"},
     "sweeps.iris.space.train.epochs: Input should be greater than 0. Tried: 0"),
    ({"space": {"train.learning_rate": {"uniform": [0.1, 0.01]}}, "algorithm": "random"},
     "sweeps.iris.space.train.learning_rate.uniform: must be two numbers, [low, high] with low < high. Received: "
     "[0.1, 0.01]"),
    ({"space": {"train.learning_rate": {"loguniform": ["1e-4", "x"]}}, "algorithm": "random"},
     "sweeps.iris.space.train.learning_rate.loguniform: must be two numbers"),
    ({"space": {"train.learning_rate": {"grid": [0.001, "1e-3", 0.01]}}},
     "sweeps.iris.space.train.learning_rate.grid: lists 0.001 more than once: list each value once"),
    ({"space": {"train.batch_size": {"choice": [8, 8, 16]}}, "algorithm": "random", "num_samples": 2},
     "sweeps.iris.space.train.batch_size.choice: lists 8 more than once: list each value once"),
    ({"space": {"train.optimizer.beta_1": {"grid": [0.8, 0.9]}}},
     "sweeps.iris.space.train.optimizer.beta_1: train.optimizer is the name 'adam', which has no 'beta_1' to set: "
     "write it as {name: adam, beta_1: <its value>}. Tried: 0.8"),
    # A swept key that needs another names that one: early stopping follows a validation split.
    ({"space": {"train.early_stopping": {"grid": [{"patience": 2}]}}},
     "sweeps.iris.space.train.early_stopping: train.validation_split: is required: train.early_stopping.monitor "
     "follows 'val_loss'"),
    ({"space": {"train.epochs": {"grid": [1, 2]}}, "num_samples": 3},
     "sweeps.iris.num_samples: repeats every grid config with the same seeds"),
    ({"space": {"train.epochs": {"choice": [1, 2]}, "train.batch_size": {"choice": [8, 16]}}, "algorithm": "random",
      "num_samples": 5}, "sweeps.iris.num_samples: draws more configs than the space's 4: a random search over "
                         "choices only draws each config once"),
    ({"space": {"train.epochs": {"grid": [4, 8]}}, "scheduler": "asha", "grace_period": 10},
     "sweeps.iris.grace_period: is more epochs than any trial trains (8): ASHA would stop none. Received: 10"),
    ({"space": {"train.learning_rate": {"uniform": [0.01, 0.1]}}},
     "sweeps.iris.algorithm: 'grid' tries every value of `grid:` lists, and train.learning_rate is drawn (uniform): "
     "write `grid:` to try each value, or use algorithm 'random'. Received: 'grid'"),
    ({"space": {"train.optimizer": {"choice": ["adam", "sgd"]}, "train.batch_size": {"grid": [10, 20]}}},
     "sweeps.iris.algorithm: 'grid' tries every value of `grid:` lists, and train.optimizer is drawn (choice)"),
    ({"space": {"train.batch_size": {"grid": [10, 20]}}, "algorithm": "random", "num_samples": 4},
     "sweeps.iris.num_samples: repeats every config of the grid lists with the same seeds"),
    ({"space": {"train.epochs": {"grid": []}}}, "sweeps.iris.space.train.epochs.grid: is empty"),
    ({"space": {"dataset.image_size": {"grid": [[8, 8], [16, 16]]}}},
     "sweeps.iris.space.dataset.image_size: a sweep reads the experiment's data once, for all its trials"),
    ({"space": {}}, "sweeps.iris.space: Dictionary should have at least 1 item after validation, not 0. Received: {}"),
    ({"space": {"train.epochs": {"gridd": [1]}}}, "sweeps.iris.space.train.epochs.gridd: Input should be 'grid'"),
    ({"space": {"train.epochs": {"grid": [1], "choice": [2]}}},
     "sweeps.iris.space.train.epochs: must have exactly one distribution"),
    ({"space": {"train.epochs": {"grid": [1]}}, "gpu": 1.5}, "sweeps.iris.gpu: above 1 must be a whole number"),
    ({"space": {"train.batchsize": {"grid": [10, 20]}}},
     "sweeps.iris.space.train.batchsize: no key 'train.batchsize' in the experiment (did you mean 'batch_size'?)"),
    ({"space": {"train.early_stopping.patience": {"grid": [2, 5]}}},
     "sweeps.iris.space.train.early_stopping.patience: train.early_stopping is not set in the experiment, so it has "
     "no 'patience' to set: write it there, or sweep it whole. Tried: 2"),
    ({"space": {"model.layers[5].units": {"grid": [4, 8]}}},
     "sweeps.iris.space.model.layers[5].units: model.layers has 2 items (model.layers[0] to [1]), no [5]"),
])
def test_bad_sweeps_are_refused_before_any_trial(sweep, expected):
    raw = tiny_params()
    raw["sweeps"] = {"iris": sweep}
    with pytest.raises(ParamsError) as info:
        parse_params(raw)
    assert expected in str(info.value)


def test_an_optimizer_argument_the_experiment_leaves_at_its_default_can_be_swept():
    """Brownlee's SGD grid of momentum: `optimizer: {name: sgd}` writes no momentum, and the sweep sets it; a name
    SGD does not take is refused naming the ones it does."""
    raw = tiny_params()
    raw["experiments"]["iris"]["train"]["optimizer"] = {"name": "sgd"}
    raw["sweeps"] = {"iris": {"space": {"train": {"optimizer": {"momentum": {"grid": [0.0, 0.9]}}}}}}
    spec = parse_params(raw).experiments["iris"]
    assert spec.with_overrides({"train.optimizer.momentum": 0.9}).train.optimizer.momentum == 0.9
    raw["sweeps"]["iris"]["space"]["train"]["optimizer"] = {"momentumm": {"grid": [0.0, 0.9]}}
    with pytest.raises(ParamsError, match="sgd takes no argument 'momentumm'; did you mean 'momentum'"):
        parse_params(raw)


def test_a_random_search_crosses_grid_lists_with_its_draws():
    """Each value of a `grid:` list gets `num_samples` draws of the rest (Ray Tune's grid_search beside sampled
    values): other configs each time, unlike a random search over grid lists alone, which is refused."""
    raw = tiny_params()
    raw["sweeps"] = {"iris": {"space": {"train": {"batch_size": {"grid": [16, 32]},
                                                  "optimizer": {"choice": ["adam", "sgd", "rmsprop"]}}},
                              "algorithm": "random", "num_samples": 2}}
    assert parse_params(raw).sweeps["iris"].num_samples == 2


def test_a_next_token_sweep_scoring_on_a_hold_out_of_its_own_is_refused():
    """A text's next tokens are scored on its held-out tail, split as the experiment's evaluate section splits it;
    a sweep's own hold-out would fit the vocabulary on other rows than its trials train on."""
    raw = tiny_params()
    raw["experiments"]["story"] = {
        "dataset": {"file": "data/corpus.txt", "task": "next_token"},
        "preprocess": {"tokens": {"level": "char", "window": 8, "num_words": 30}},
        "model": {"layers": [{"type": "embedding", "output_dim": 8}, {"type": "lstm", "units": 8},
                             {"type": "dense", "units": 30, "activation": "softmax"}]},
        "train": {"epochs": 1, "batch_size": 16, "seed": 1},
        "evaluate": {"method": "holdout", "test_size": 0.2, "shuffle": False}}
    raw["sweeps"] = {"story": {"space": {"train.epochs": {"grid": [1, 2]}}, "scoring": "holdout"}}
    with pytest.raises(ParamsError, match=r"^params.yaml:sweeps.story.scoring: a next_token experiment scores on its "
                                          r"text's held-out tail"):
        parse_params(raw)
    raw["sweeps"]["story"]["scoring"] = "kfold"
    assert parse_params(raw).sweeps["story"].scoring == "kfold"


@pytest.mark.parametrize("key", ["sweeps", "continued"])
def test_the_sweeps_and_continued_keys_are_required_because_dvc_iterates_over_them(key):
    raw = tiny_params()
    del raw[key]
    with pytest.raises(ParamsError, match=f"^params.yaml: `{key}:` is required .* write `{key}: {{}}`"):
        parse_params(raw)


def test_a_params_file_dvc_does_not_read_may_leave_out_sweeps_and_continued(tmp_path):
    raw = tiny_params()
    del raw["sweeps"], raw["continued"]
    listing = tmp_path / "listing.yaml"
    listing.write_text(yaml.safe_dump(raw, sort_keys=False))
    params = load_params(listing, check_keras_names=False)
    assert (params.sweeps, params.continued) == ({}, {})
    assert list(params.experiments) == list(raw["experiments"])
    read_by_dvc = tmp_path / "params.yaml"  # the name dvc.yaml reads, in any folder
    read_by_dvc.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=f"^{re.escape(str(read_by_dvc))}: `sweeps:` and `continued:` are required"):
        load_params(read_by_dvc, check_keras_names=False)


@pytest.mark.parametrize("key, value", [("lookback_columns", ["bmi"]), ("horizon", 3), ("sampling_rate", 6)])
def test_window_settings_need_a_lookback(key, value):
    raw = tiny_params()
    raw["experiments"]["diabetes"]["preprocess"][key] = value
    with pytest.raises(ParamsError, match=f"params.yaml:experiments.diabetes.preprocess.{key}: shapes a series' "
                                          "look-back windows: it needs preprocess.lookback"):
        parse_params(raw)


def _continued(**train) -> dict:
    raw = tiny_params()
    more = json.loads(json.dumps(raw["experiments"]["iris"]))
    more["train"].update(train)
    raw["continued"] = {"more": more}
    return raw


@pytest.mark.parametrize("edit, expected", [
    (lambda raw: raw["experiments"]["iris"]["train"].update(init_from="results/x/model"),
     "params.yaml:experiments.iris.train.init_from: an experiment that starts from a saved model goes under "
     "`continued:`"),
    (lambda raw: raw["continued"]["more"]["train"].pop("init_from"),
     "params.yaml:continued.more.train.init_from: is required"),
    (lambda raw: raw["continued"].update(iris=raw["continued"]["more"]),
     "params.yaml:continued.iris: names an experiment of `experiments:` too"),
    (lambda raw: raw["sweeps"].update(more={"space": {"train": {"epochs": {"grid": [1, 2]}}}}),
     "params.yaml:sweeps.more: names a continued experiment; sweeps tune the experiments of `experiments:` only"),
], ids=["init-from-in-experiments", "continued-without-init-from", "name-in-both", "sweep-of-a-continued"])
def test_init_from_belongs_to_continued_experiments_only(edit, expected):
    raw = _continued(init_from="results/iris/model")
    edit(raw)
    with pytest.raises(ParamsError) as info:
        parse_params(raw)
    assert expected in str(info.value)


def test_a_continued_experiment_is_selected_and_located_under_its_own_section():
    params = parse_params(_continued(init_from="results/iris/model"))
    assert list(params.select(None)) == ["iris", "diabetes", "more"]
    assert params.select(["more"])["more"].train.key("init_from") == "params.yaml:continued.more.train.init_from"


def test_a_sweep_must_name_an_experiment():
    raw = tiny_params()
    raw["sweeps"] = {"irs": {"space": {"train.epochs": {"grid": [1]}}}}
    with pytest.raises(ParamsError, match="^params.yaml:sweeps.irs: sweeps \\['irs'\\] name no experiment; "
                                          "did you mean 'iris'\\?"):
        parse_params(raw)


def _text_params() -> dict:
    """A sentiment experiment on a text column: Embedding -> Conv1D -> MaxPooling1D -> Flatten -> Dense."""
    raw = tiny_params()
    raw["experiments"] = {"reviews": {
        "dataset": {"file": "data/reviews.csv", "target": "sentiment", "task": "binary"},
        "preprocess": {"text": {"column": "review", "num_words": 1000, "maxlen": 50}},
        "model": {"layers": [{"type": "embedding", "output_dim": 16},
                             {"type": "conv1d", "filters": 8, "kernel_size": 3},
                             {"type": "max_pooling1d"},
                             {"type": "flatten"},
                             {"type": "dense", "units": 1, "activation": "sigmoid"}]},
        "train": {"epochs": 2, "batch_size": 16},
    }}
    return raw


def _bad_text(mutate) -> str:
    raw = _text_params()
    mutate(raw["experiments"]["reviews"])
    with pytest.raises(ParamsError) as info:
        parse_params(raw)
    return str(info.value)


@pytest.mark.parametrize("mutate, expected", [
    (lambda e: e["preprocess"]["text"].pop("column"), ["experiments.reviews.preprocess.text.column", "required"]),
    (lambda e: e["preprocess"]["text"].update(max_len=5),
     ["experiments.reviews.preprocess.text.max_len", "did you mean 'maxlen'"]),
    (lambda e: e["preprocess"]["text"].update(num_words=2),
     ["experiments.reviews.preprocess.text.num_words", "greater than or equal to 3", "Received: 2"]),
    (lambda e: e["preprocess"]["text"].update(maxlen=0), ["experiments.reviews.preprocess.text.maxlen", "0"]),
    (lambda e: e["preprocess"]["text"].update(padding="middle"),
     ["experiments.reviews.preprocess.text.padding", "'pre' or 'post'", "'middle'"]),
    (lambda e: e["preprocess"].update(scale="standard"),
     ["experiments.reviews.preprocess.scale:", "scale cannot be used with it", "{'scale': 'standard'}"]),
    (lambda e: e["preprocess"]["text"].update(column=0),
     ["experiments.reviews.preprocess.text.column: must be the column's name", "Received: 0"]),
    (lambda e: e["dataset"].update(header=False, target=0),
     ["preprocess.text.column: with `header: false` it must be a 0-based column index", "Received: 'review'"]),
    (lambda e: e["dataset"].update(target=0),
     ["experiments.reviews.dataset.target: must be the column's name when the file has a header row", "Received: 0"]),
    (lambda e: e["preprocess"]["text"].update(column="sentiment"),
     ["preprocess.text.column: names the same column as dataset.target", "Received: 'sentiment'"]),
    (lambda e: e["model"]["layers"].pop(0),
     ["experiments.reviews.model.layers[0].type:", "must be an embedding", "Received: 'conv1d'"]),
    (lambda e: e["model"]["layers"][0].update(input_dim=500),
     ["experiments.reviews.model.layers[0].input_dim: must be >= preprocess.text.num_words (1000)", "Received: 500"]),
    (lambda e: e["preprocess"].pop("text"), ["experiments.reviews.model.layers[0].input_dim: is required"]),
    (lambda e: e["model"]["layers"][1].update(padding="full"), ["experiments.reviews.model.layers[1].padding"]),
    (lambda e: e["model"]["layers"][2].update(pool_size=0), ["experiments.reviews.model.layers[2].pool_size"]),
    (lambda e: e["preprocess"]["text"].pop("maxlen"),
     ["experiments.reviews.preprocess.text.maxlen: is required with output_mode int", "Received: none"]),
    (lambda e: e["preprocess"]["text"].update(ngrams=2),
     ["experiments.reviews.preprocess.text.ngrams: makes a bag's tokens", "set output_mode multi_hot", "Received: 2"]),
    (lambda e: e["preprocess"]["text"].update(output_mode="multi_hot"),
     ["experiments.reviews.preprocess.text.maxlen: shapes sequences of token ids", "Received: 50"]),
    (lambda e: (e["preprocess"]["text"].update(output_mode="tf_idf"), e["preprocess"]["text"].pop("maxlen")),
     ["experiments.reviews.model.layers[0].type: preprocess.text.output_mode tf_idf gives each text as one vector",
      "start the model with a dense layer", "Received: 'embedding'"]),
    (lambda e: (e["preprocess"].pop("text"), e["model"]["layers"][0].update(input_dim=50, weights="glove.txt")),
     ["experiments.reviews.model.layers[0].weights: gives the words of preprocess.text their vectors",
      "Received: 'glove.txt' on model.layers[0], and no preprocess.text"]),
    (lambda e: e["model"]["layers"].insert(1, {"type": "embedding", "output_dim": 4, "weights": "glove.txt"}),
     ["experiments.reviews.model.layers[1].weights: gives the words of preprocess.text their vectors",
      "Received: 'glove.txt' on model.layers[1]"]),
    (lambda e: e["preprocess"]["text"].update(output_mode="one_hot"),
     ["experiments.reviews.preprocess.text.output_mode", "'int', 'multi_hot', 'count' or 'tf_idf'"]),
])
def test_bad_text_params_name_the_key(mutate, expected):
    message = _bad_text(mutate)
    for fragment in expected:
        assert fragment in message


def test_an_embedding_takes_num_words_unless_it_gives_input_dim_and_follows_a_sweep_of_it():
    spec = parse_params(_text_params()).experiments["reviews"]
    assert spec.model.layers[0].input_dim is None and spec.model.num_words == 1000
    assert spec.with_overrides({"preprocess.text.num_words": 200}).model.num_words == 200
    raw = _text_params()
    raw["sweeps"] = {"reviews": {"space": {"preprocess.text.num_words": {"grid": [200, 2000]}}}}
    assert parse_params(raw).sweeps["reviews"].space
    headerless = _text_params()
    headerless["experiments"]["reviews"]["dataset"].update(header=False, target=0)
    headerless["experiments"]["reviews"]["preprocess"]["text"]["column"] = 1
    assert parse_params(headerless).experiments["reviews"].preprocess.text.column == 1


def test_an_lstm_feeding_a_sequence_layer_must_return_sequences():
    raw = copy.deepcopy(tiny_params())
    raw["experiments"]["diabetes"]["model"]["layers"] = [
        {"type": "reshape", "target_shape": [10, 1]}, {"type": "lstm", "units": 4}, {"type": "dropout", "rate": 0.1},
        {"type": "lstm", "units": 4}, {"type": "dense", "units": 1}]
    with pytest.raises(ParamsError, match=r"model.layers\[1\].return_sequences: layers\[1\] \(lstm\) feeds "
                                          r"layers\[3\] \(lstm\), which takes a sequence: set `return_sequences: "
                                          r"true` on layers\[1\]. Received: false"):
        parse_params(raw)
    raw["experiments"]["diabetes"]["model"]["layers"][1]["return_sequences"] = True
    assert parse_params(raw).experiments["diabetes"].model.layers[1].return_sequences


@pytest.mark.parametrize("layers, expected", [
    ([{"type": "max_pooling2d"}, {"type": "dense", "units": 1}],
     r"model.layers\[0\].type: layers\[0\] \(max_pooling2d\) takes an image per row \(height, width, channels\), "
     r"but its input is a vector of features per row; put a reshape with target_shape \[height, width, channels\]"),
    ([{"type": "reshape", "target_shape": [5, 2]}, {"type": "global_average_pooling2d"}, {"type": "dense", "units": 1}],
     r"model.layers\[1\].type: layers\[1\] \(global_average_pooling2d\) takes an image per row .* but its input is a "
     r"sequence per row \(steps, features\)"),
    ([{"type": "reshape", "target_shape": [5, 2]}, {"type": "spatial_dropout2d", "rate": 0.2}, {"type": "flatten"},
      {"type": "dense", "units": 1}],
     r"model.layers\[1\].type: layers\[1\] \(spatial_dropout2d\) takes an image per row .* but its input is a "
     r"sequence per row \(steps, features\)"),
    ([{"type": "gru", "units": 2}, {"type": "dense", "units": 1}],
     r"model.layers\[0\].type: layers\[0\] \(gru\) takes a sequence per row .*; put an embedding, a reshape"),
    ([{"type": "rescaling", "scale": 0.5}, {"type": "separable_conv2d", "filters": 2, "kernel_size": 3},
      {"type": "dense", "units": 1}],
     r"model.layers\[1\].type: layers\[1\] \(separable_conv2d\) takes an image per row \(height, width, "
     r"channels\), but its input is a vector of features per row"),
    ([{"type": "reshape", "target_shape": [5, 2]},
      {"type": "bidirectional", "layer": {"type": "simple_rnn", "units": 2}},
      {"type": "batch_normalization"}, {"type": "lstm", "units": 2}, {"type": "dense", "units": 1}],
     r"model.layers\[1\].layer.return_sequences: layers\[1\] \(bidirectional\) feeds layers\[3\] \(lstm\), which "
     r"takes a sequence"),
    ([{"type": "reshape", "target_shape": [5, 2]},
      {"type": "bidirectional", "layer": {"type": "lstm", "units": 2, "stateful": True}},
      {"type": "dense", "units": 1}],
     r"model.layers\[1\].layer: Value error, a bidirectional layer cannot be stateful|model.layers\[1\].layer: a "
     r"bidirectional layer cannot be stateful"),
], ids=["pooling-a-vector", "2d-pooling-a-sequence", "2d-spatial-dropout-of-a-sequence", "rnn-on-a-vector",
        "separable-conv-on-a-vector", "bidirectional-must-return-sequences", "stateful-bidirectional"])
def test_each_layer_gets_the_input_it_takes_or_the_message_names_it(layers, expected):
    raw = copy.deepcopy(tiny_params())
    raw["experiments"]["diabetes"]["model"]["layers"] = layers
    with pytest.raises(ParamsError, match=expected):
        parse_params(raw)


def test_sections_remember_their_key_for_errors_found_later_against_the_data():
    params = parse_params(tiny_params(), source="p.yaml")
    iris = params.experiments["iris"]
    assert iris.evaluate.key("n_splits") == "p.yaml:experiments.iris.evaluate.n_splits"
    assert iris.model.layers[1].key("units") == "p.yaml:experiments.iris.model.layers[1].units"
    assert iris.preprocess.data_file == "data/iris.csv"
    # Copies made for a smoke test or a sweep trial keep it; a spec built in code has only the bare name.
    assert iris.with_overrides({"train.epochs": 2}).train.key("epochs") == "p.yaml:experiments.iris.train.epochs"
    smoke = iris.model_copy(update={"evaluate": iris.evaluate.model_copy(update={"n_splits": 2})})
    assert smoke.evaluate.key("n_splits") == "p.yaml:experiments.iris.evaluate.n_splits"
    assert not ExperimentSpec.model_validate(tiny_params()["experiments"]["iris"]).train.located


def test_a_huge_value_is_echoed_cut_short():
    """Whatever the input, the message stays one short line: the value echoed back is cut."""
    raw = tiny_params()
    raw["experiments"]["iris"]["train"]["epochs"] = "many" * 5000
    raw["experiments"]["iris"]["train"]["x" * 5000] = 1
    with pytest.raises(ParamsError) as caught:
        parse_params(raw)
    message = str(caught.value)
    problems = message.split("; ")  # two problems, in one line
    # Each problem: its key and the value cut short, plus (an unknown key) the section's dozen allowed keys.
    assert "\n" not in message and len(problems) == 2 and all(len(problem) < 700 for problem in problems)
    assert "Received: 'manymany" in problems[0] and problems[0].endswith("…")


def test_a_range_written_as_yaml_reads_1e_3_is_taken_as_numbers_and_asha_reaches_the_longest_trial():
    raw = tiny_params()
    raw["sweeps"] = {"iris": yaml.safe_load("space: {train: {learning_rate: {loguniform: [1e-4, 1e-1]}, "
                                            "epochs: {choice: [20, 60]}}}\nalgorithm: random\nscheduler: asha")}
    sweep = parse_params(raw).sweeps["iris"]
    assert sweep.space["train.learning_rate"] == {"loguniform": [0.0001, 0.1]}
    assert sweep.max_epochs(15) == 60 and SearchSpec(space={"train.seed": {"grid": [1]}}).max_epochs(15) == 15


def test_sweep_keys_that_fail_only_together_are_refused_naming_the_config():
    raw = tiny_params()
    del raw["experiments"]["iris"]["train"]["learning_rate"]
    raw["sweeps"] = {"iris": {"space": {"train.learning_rate": {"grid": [0.01, 0.1]},
                                        "train.optimizer": {"grid": ["adam", {"name": "sgd", "learning_rate": 0.1}]}}}}
    with pytest.raises(ParamsError, match=r"^params.yaml:sweeps.iris.space: its keys fail together: .*given twice.*"
                                          r"Tried: \{'train.learning_rate': 0.01, 'train.optimizer': \{'name': 'sgd', "
                                          r"'learning_rate': 0.1\}\}$"):
        parse_params(raw)
