"""Class weights (`train.class_weight`): each class's training rows weigh in the loss as Keras' fit(class_weight=...)
weighs them, fold by fold and stacked alike."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from helpers import cancer_experiment, tiny_params
from sklearn.utils.class_weight import compute_class_weight

from kerasflow.tasks.config.errors import DataError, ParamsError
from kerasflow.tasks.config.schema import parse_params
from kerasflow.tasks.data.table import load_table
from kerasflow.tasks.training.class_weights import class_weights
from kerasflow.tasks.training.evaluate import cross_validate, encode_labels, prepare_folds, refit
from kerasflow.tasks.training.models import build_model, make_optimizer
from kerasflow.tasks.training.train import encode_target, fit_model

# Iris's three classes, weighed apart: setosa's rows count three times, virginica's half.
BY_LABEL = {"setosa": 3.0, "virginica": 0.5}


def _iris_spec(class_weight, **changes):
    raw = tiny_params()
    experiment = raw["experiments"]["iris"]
    experiment["train"]["class_weight"] = class_weight
    for section, values in changes.items():
        experiment[section].update(values)
    return parse_params(raw).experiments["iris"]


def test_balanced_weights_are_scikit_learns_over_the_rows_trained_on():
    codes = np.array([0] * 30 + [1] * 5 + [2] * 12)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=codes)
    np.testing.assert_allclose(class_weights("balanced", codes, ["a", "b", "c"]), expected)
    assert class_weights({1: 4.0}, codes, [0, 1, 2]).tolist() == [1.0, 4.0, 1.0]


@pytest.mark.parametrize("class_weight, loss", [(BY_LABEL, None), ("balanced", "categorical_crossentropy")],
                         ids=["by-label-codes", "balanced-one-hot"])
def test_a_model_alone_trains_as_keras_fit_with_class_weight(project, class_weight, loss):
    """One batch an epoch (the rows' order within it changes no gradient but by rounding): kerasflow's sample
    weights give the weights Keras' own fit(class_weight=...) gives."""
    spec = _iris_spec(class_weight, train={"batch_size": 200, "epochs": 4, "loss": loss})
    table = load_table(spec.dataset, root=project)
    labels = encode_labels(spec, table)
    X = table.X.to_numpy(dtype=np.float32)
    y = encode_target(spec, labels.codes, labels.n_classes)
    weights = labels.class_weights(spec, slice(None))
    assert len(set(weights.tolist())) > 1 or class_weight == "balanced"
    ours, _ = fit_model(spec, X, y, class_weight=weights)
    keras_own = build_model(spec.model, X.shape[1], spec.train.seed)
    keras_own.compile(optimizer=make_optimizer(spec.train, 1), loss=spec.loss)
    keras_own.fit(X, y, batch_size=len(X), epochs=4, shuffle=False, verbose=0,
                  class_weight=dict(enumerate(weights.tolist())))
    for mine, theirs in zip(ours.get_weights(), keras_own.get_weights()):
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-6)
    unweighted, _ = fit_model(spec, X, y)
    if class_weight is BY_LABEL:  # the weights made a difference
        assert not np.allclose(unweighted.get_weights()[0], ours.get_weights()[0], atol=1e-4)


@pytest.mark.parametrize("class_weight", [BY_LABEL, "balanced"])
def test_stacked_folds_weigh_their_rows_as_folds_trained_alone(project, class_weight):
    """Unstratified folds hold other class counts, so balanced weights differ from fold to fold (and slot to
    slot)."""
    # 100 training rows a fold in batches of 20: no partial batch, which Keras' running loss counts as a full one.
    specs = [_iris_spec(class_weight, evaluate={"stratify": False, "shuffle": True, "stack_folds": stack},
                        train={"batch_size": 20}) for stack in (True, False)]
    table = load_table(specs[0].dataset, root=project)
    folds = prepare_folds(specs[0], table, encode_labels(specs[0], table))
    if class_weight == "balanced":
        assert len({tuple(fold.class_weight.round(6)) for fold in folds}) == len(folds)
    stacked, separate = (cross_validate(spec, folds) for spec in specs)
    assert stacked.stacked and not separate.stacked
    assert stacked.scores == separate.scores
    for fold, alone in zip(stacked.folds, separate.folds):
        np.testing.assert_array_equal(fold.y_pred, alone.y_pred)
        np.testing.assert_allclose(fold.history["val_loss"], alone.history["val_loss"], rtol=1e-3)
        # Both log the class-weighted training loss: Keras' own fold by fold, the stacked model's from its slots.
        np.testing.assert_allclose(fold.history["loss"], alone.history["loss"], rtol=1e-3)


def test_a_heavy_class_weight_makes_the_model_predict_that_class_more(project):
    """Setosa is easy; versicolor and virginica overlap. Weighing virginica 20 times makes the refitted model call
    more of the overlapping rows virginica."""
    predicted = {}
    for class_weight in (None, {"virginica": 20.0}):
        spec = _iris_spec(class_weight, train={"epochs": 30})
        table = load_table(spec.dataset, root=project)
        labels = encode_labels(spec, table)
        final = refit(spec, table, labels)
        outputs = final.model.predict(final.preprocessor.transform(table.X), verbose=0)
        predicted[str(class_weight)] = int((outputs.argmax(axis=1) == 2).sum())
    assert predicted[str({"virginica": 20.0})] > predicted["None"]


def test_a_label_the_target_lacks_is_refused_naming_the_key_and_the_labels(project):
    spec = _iris_spec({"virginca": 2.0})
    with pytest.raises(DataError, match=r"train\.class_weight names label\(s\) 'virginca' the target does not have "
                                        r"\(keys are .*\)\. Labels found: 'setosa', 'versicolor', 'virginica'"):
        encode_labels(spec, load_table(spec.dataset, root=project))


@pytest.mark.parametrize("class_weight, expected", [
    ("balancd", r"^params.yaml:experiments.iris.train.class_weight: is balanced or \{label: weight, ...\}. "
                r"Received: 'balancd'$"),
    ({"setosa": 0}, r"^params.yaml:experiments.iris.train.class_weight: the weight of label 'setosa' must be a "
                    r"number from 1e-30 to 1e30. Received: 0$"),
    ({"setosa": float("inf")}, "Received: inf$"), ({"setosa": "high"}, "Received: 'high'$")])
def test_class_weights_must_be_balanced_or_positive_numbers(class_weight, expected):
    with pytest.raises(ParamsError, match=expected):
        _iris_spec(class_weight)


def test_a_regression_takes_no_class_weight():
    raw = tiny_params()
    raw["experiments"]["diabetes"]["train"]["class_weight"] = "balanced"
    with pytest.raises(ParamsError, match="train.class_weight.*needs task 'binary' or 'multiclass'"):
        parse_params(raw)


def test_one_label_weighed_twice_is_refused(project):
    spec = _iris_spec({"setosa": 2.0, "versicolor": 1.0})
    labels = encode_labels(spec, load_table(spec.dataset, root=project))
    with pytest.raises(DataError, match=r"train\.class_weight weighs label 1 twice, as 1 and '1\.0': keep one"):
        class_weights({1: 2.0, "1.0": 3.0}, labels.codes, [0, 1, 2])


@pytest.mark.parametrize("labels", [[0, 1], [0.0, 1.0], ["0", "1"]], ids=["ints", "floats", "strings"])
def test_weights_keyed_by_label_survive_a_json_copy_of_the_spec(labels):
    """A sweep's trials and a Ray refit get the spec through JSON, which makes the YAML key 1 the string "1": it
    names the label 1, 1.0 or "1" all the same."""
    spec = _iris_spec({1: 5.0})
    copied = spec.with_overrides({})
    assert copied.train.class_weight == {"1": 5.0}
    codes = np.array([0, 1, 1])
    for given in (spec.train.class_weight, copied.train.class_weight):
        assert class_weights(given, codes, labels).tolist() == [1.0, 5.0]


def test_a_searched_weight_for_a_label_the_target_lacks_fails_its_trial_by_name():
    with pytest.raises(DataError, match=r"train\.class_weight names label\(s\) 'fraud'"):
        class_weights({"fraud": 9.0}, np.array([0, 1]), [0, 1])


def test_balanced_weights_count_only_the_classes_a_fold_trains_on():
    """A fold without rows of class 2: the others weigh as if it did not exist, as scikit-learn's would."""
    codes = np.array([0, 0, 0, 1])
    weights = class_weights("balanced", codes, ["a", "b", "c"])
    np.testing.assert_allclose(weights[:2], compute_class_weight("balanced", classes=np.arange(2), y=codes))
    assert weights[2] == 1.0


def test_stacked_binary_folds_weigh_their_rows_as_folds_trained_alone(tmp_path, bundled_data):
    """A binary target is one 0/1 column, not codes: each slot's weights are looked up from it."""
    (tmp_path / "data").mkdir()
    shutil.copy(bundled_data / "breast_cancer.csv", tmp_path / "data")
    raw = {"experiments": {"cancer": cancer_experiment(train={"class_weight": {0: 4.0}})}}
    results = []
    for stack in (True, False):
        raw["experiments"]["cancer"]["evaluate"]["stack_folds"] = stack
        spec = parse_params(raw, source="listing.yaml").experiments["cancer"]
        table = load_table(spec.dataset, root=tmp_path)
        folds = prepare_folds(spec, table, encode_labels(spec, table))
        results.append(cross_validate(spec, folds))
    assert folds[0].class_weight.tolist() == [4.0, 1.0] and results[0].stacked
    for fold, alone in zip(*(result.folds for result in results)):
        np.testing.assert_array_equal(fold.y_pred, alone.y_pred)
        np.testing.assert_allclose(fold.history["val_loss"], alone.history["val_loss"], rtol=1e-3)
