"""A loss with arguments (`train.loss: {name: categorical_crossentropy, label_smoothing: 0.1}`, `{name: huber,
delta: 2.0}`): trained, logged and saved with them, as Keras' own loss class built with them computes it; bad
arguments refused by their key."""

from __future__ import annotations

import copy
import re
import shutil

import keras
import numpy as np
import pytest
from helpers import slot_scores_three_ways, tiny_params

from kerasflow.tasks.config.errors import ParamsError
from kerasflow.tasks.config.schema import parse_params
from kerasflow.tasks.data.table import load_table
from kerasflow.tasks.outputs.results import load_model, write_model
from kerasflow.tasks.training.evaluate import cross_validate, encode_labels, prepare_folds, refit
from kerasflow.tasks.training.train import fit_model

SMOOTHED = {"name": "categorical_crossentropy", "label_smoothing": 0.2}


def _spec(name: str, loss: object, **evaluate):
    raw = copy.deepcopy(tiny_params())
    raw["experiments"][name]["train"]["loss"] = loss
    raw["experiments"][name]["evaluate"].update(evaluate)
    return parse_params(raw).experiments[name]


def _keras_loss(loss: dict, truth: np.ndarray, outputs: np.ndarray) -> float:
    name = "".join(part.capitalize() for part in loss["name"].split("_"))
    arguments = {key: value for key, value in loss.items() if key != "name"}
    return float(getattr(keras.losses, name)(**arguments)(truth, outputs))


@pytest.mark.parametrize("name, loss", [("iris", SMOOTHED), ("diabetes", {"name": "huber", "delta": 30.0})],
                         ids=["label-smoothing", "huber-delta"])
def test_each_stacked_slots_loss_is_keras_own_loss_with_its_arguments(name, loss):
    """From one prediction and from the compiled per-slot loss, over slots of 70, 50 and 60 rows with padding."""
    spec, rng = _spec(name, loss), np.random.default_rng(0)
    if name == "iris":
        parts = [(rng.normal(size=(n, 4)).astype("float32"), np.eye(3, dtype="float32")[rng.integers(0, 3, n)])
                 for n in (70, 50, 60)]
    else:
        parts = [(rng.normal(size=(n, 10)).astype("float32"), rng.normal(150, 70, size=(n, 1)).astype("float32"))
                 for n in (70, 50, 60)]
    logs, compiled, predictions = slot_scores_three_ways(spec, parts)
    plain = {"name": "categorical_crossentropy"} if name == "iris" else {"name": "huber"}
    for j, (_, truth) in enumerate(parts):
        alone = _keras_loss(loss, truth, predictions[j, :len(truth)])
        assert logs[f"val_f{j}_loss"] == pytest.approx(alone, rel=1e-5)
        assert compiled[f"f{j}_loss"] == pytest.approx(alone, rel=1e-5)
        assert alone != pytest.approx(_keras_loss(plain, truth, predictions[j, :len(truth)]), rel=1e-3)


def test_a_model_trains_with_its_losss_arguments_and_keeps_them_when_saved(tmp_path, bundled_data):
    (tmp_path / "data").mkdir()
    shutil.copy(bundled_data / "iris.csv", tmp_path / "data")
    spec = _spec("iris", SMOOTHED, stack_folds=False)
    table = load_table(spec.dataset, root=tmp_path)
    labels = encode_labels(spec, table)
    folds = prepare_folds(spec, table, labels)
    fold = folds[0]
    model, trained = fit_model(spec, fold.X_train, fold.y_train, validation=(fold.X_test, fold.y_test))
    outputs = np.asarray(model.predict_on_batch(fold.X_test))
    assert trained.history["val_loss"][-1] == pytest.approx(_keras_loss(SMOOTHED, fold.y_test, outputs), rel=1e-5)
    stacked = cross_validate(spec.with_overrides({"evaluate.stack_folds": True}), folds)
    assert stacked.stacked and all(np.isfinite(fold.history["val_loss"][-1]) for fold in stacked.folds)
    final = refit(spec, table, labels)
    assert isinstance(final.model.loss, keras.losses.CategoricalCrossentropy)
    assert final.model.loss.get_config()["label_smoothing"] == pytest.approx(0.2)
    saved, _, _ = load_model(write_model(tmp_path / "model", spec, final))  # for predictions: no loss to keep
    np.testing.assert_allclose(saved.predict_on_batch(fold.X_test), final.model.predict_on_batch(fold.X_test))


@pytest.mark.parametrize("loss, message", [
    ({"name": "categorical_crossentropy", "label_smothing": 0.1},
     "train.loss.label_smothing: categorical_crossentropy takes no argument 'label_smothing'; did you mean "
     "'label_smoothing'? Allowed: label_smoothing"),
    ({"name": "categorical_crossentropy", "from_logits": True},
     "train.loss.from_logits: is set by kerasflow, not params.yaml: a model ends in its activation"),
    ({"name": "sparse_categorical_crossentropy", "label_smoothing": 0.1},
     "train.loss.label_smoothing: sparse_categorical_crossentropy takes no argument 'label_smoothing'. It takes "
     "none: give its name alone"),
    ({"name": "categorical_crossentropy", "label_smoothing": "a lot"},
     "train.loss.label_smoothing: must be a number. Received: 'a lot'"),
    ({"name": "mse"}, "train.loss: does not fit task 'multiclass' (dataset.task)"),
    ({"name": "kl_divergence"}, "train.loss.name: is not a loss kerasflow trains with. Allowed: binary_crossentropy"),
], ids=["misspelt", "from-logits", "takes-none", "not-a-number", "wrong-task", "not-trained-with"])
def test_a_losss_bad_argument_is_refused_by_its_key(loss, message):
    with pytest.raises(ParamsError, match=re.escape(f"params.yaml:experiments.iris.{message}")):
        _spec("iris", loss)


def test_lists_of_numbers_are_taken_where_keras_takes_them_and_yamls_text_numbers_are_named():
    """A focal loss's per-class alpha and a constraint's axes are lists of numbers; YAML reads 1e-3 (no dot) as
    text, which Keras would take and fail on once it trains."""
    assert _spec("iris", {"name": "categorical_focal_crossentropy", "alpha": [0.2, 0.3, 0.5]}).loss_arguments == {
        "alpha": [0.2, 0.3, 0.5]}
    raw = copy.deepcopy(tiny_params())
    raw["experiments"]["iris"]["model"]["layers"][0]["kernel_constraint"] = {"name": "max_norm", "max_value": 3,
                                                                              "axis": [0]}
    assert parse_params(raw).experiments["iris"].model.layers[0].kernel_constraint.arguments["axis"] == [0]
    raw["experiments"]["iris"]["train"]["optimizer"] = {"name": "adam", "learning_rate": "1e-3"}
    with pytest.raises(ParamsError, match=re.escape("train.optimizer.learning_rate: must be a number (YAML reads 1e-3 "
                                                    "as text: write 1.0e-03 or 0.001). Received: '1e-3'")):
        parse_params(raw)
