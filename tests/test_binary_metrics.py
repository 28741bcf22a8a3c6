"""Precision, recall, F1, ROC AUC and precision-recall AUC (`evaluate.metric` of a binary task): what an imbalanced
class is judged by, logged at each epoch and scored at the end as Keras' own metrics (and scikit-learn's) give them."""

from __future__ import annotations

import shutil

import keras
import numpy as np
import pytest
from helpers import cancer_experiment, slot_scores_three_ways
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score

from kerasflow.tasks.config.schema import parse_params
from kerasflow.tasks.data.table import load_table
from kerasflow.tasks.outputs.predict import predict_table
from kerasflow.tasks.outputs.results import write_model
from kerasflow.tasks.outputs.saved_model import read_saved
from kerasflow.tasks.training.evaluate import cross_validate, encode_labels, prepare_folds, refit
from kerasflow.tasks.training.scoring import metric_fn, score, slot_scores

SKLEARN = {"precision": precision_score, "recall": recall_score, "f1": f1_score}
KERAS = {"precision": lambda: keras.metrics.Precision(), "recall": lambda: keras.metrics.Recall(),
         "f1": lambda: keras.metrics.F1Score(threshold=0.5), "auc": lambda: keras.metrics.AUC(),
         "pr_auc": lambda: keras.metrics.AUC(curve="PR")}
CURVES = ("auc", "pr_auc")


def _cancer_spec(metric: str, **evaluate):
    # A slow start, so the early epochs' predictions are not all right: the scores move.
    experiment = cancer_experiment(train={"optimizer": "sgd", "learning_rate": 0.01},
                                   evaluate={"metric": metric, **evaluate})
    return parse_params({"experiments": {"cancer": experiment}}, source="listing.yaml").experiments["cancer"]


@pytest.mark.parametrize("stack", [True, False], ids=["stacked", "fold-by-fold"])
@pytest.mark.parametrize("metric", ["precision", "recall", "f1", "auc", "pr_auc"])
def test_each_folds_score_is_keras_and_scikit_learns_and_its_last_epochs(tmp_path, bundled_data, metric, stack):
    """The ratios from the fold's 0/1 predictions; the AUCs (from its probabilities, which a fold keeps no copy of)
    are checked against Keras' own below."""
    (tmp_path / "data").mkdir()
    shutil.copy(bundled_data / "breast_cancer.csv", tmp_path / "data")
    spec = _cancer_spec(metric, stack_folds=stack)
    table = load_table(spec.dataset, root=tmp_path)
    folds = prepare_folds(spec, table, encode_labels(spec, table))
    result = cross_validate(spec, folds)
    assert result.stacked == stack and spec.higher_is_better and result.summary()["metric"] == metric
    for fold, data in zip(result.folds, folds):
        if metric not in CURVES:
            keras_own = KERAS[metric]()
            keras_own.update_state(data.y_test, fold.y_pred.reshape(-1, 1).astype("float32"))
            assert fold.score == pytest.approx(float(np.squeeze(keras_own.result())), rel=1e-5)
            assert fold.score == pytest.approx(SKLEARN[metric](data.y_test.reshape(-1), fold.y_pred), rel=1e-9)
        assert fold.history[f"val_{metric}"][-1] == pytest.approx(fold.score, rel=1e-5)
        assert len(fold.history[metric]) == 4 and all(0.0 <= value <= 1.0 for value in fold.history[metric])
    assert len({round(value, 6) for fold in result.folds for value in fold.history[f"val_{metric}"]}) > 1


@pytest.mark.parametrize("metric", ["precision", "recall", "f1", "auc", "pr_auc"])
def test_each_slots_held_out_score_is_keras_own_metric_of_its_rows(metric):
    """A slot's score from one prediction leaves its padding rows out, as the compiled per-slot metric does (which
    the training's logged score is), over slots of 70, 50 and 60 rows: each is Keras' own metric of its rows."""
    spec, rng = _cancer_spec(metric), np.random.default_rng(0)
    parts = [(rng.normal(size=(n, 4)).astype("float32"), rng.integers(0, 2, size=(n, 1)).astype("float32"))
             for n in (70, 50, 60)]
    logs, expected, predictions = slot_scores_three_ways(spec, parts)
    for j, (_, truth) in enumerate(parts):
        keras_own = KERAS[metric]()
        keras_own.update_state(truth, predictions[j, :len(truth)])
        alone = float(np.squeeze(keras_own.result()))
        assert logs[f"val_f{j}_{metric}"] == pytest.approx(alone, abs=1e-6)
        assert expected[f"f{j}_{metric}"] == pytest.approx(alone, abs=1e-6)
        if metric == "auc":  # 200 thresholds draw the exact curve closely
            assert alone == pytest.approx(roc_auc_score(truth.reshape(-1), predictions[j, :len(truth), 0]), abs=0.02)
        if metric == "pr_auc":  # Keras' interpolation of the precision-recall curve, not scikit-learn's steps
            assert alone == pytest.approx(average_precision_score(truth.reshape(-1), predictions[j, :len(truth), 0]),
                                          abs=0.05)



@pytest.mark.parametrize("metric", CURVES)
def test_the_auc_of_predictions_outside_zero_to_one_is_keras_own(metric):
    """A hinge loss's tanh outputs run from -1 to 1: Keras' AUC clips them to [0, 1] before it ranks them."""
    spec = _cancer_spec(metric)
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 2, size=(300, 1)).astype("float32")
    outputs = np.tanh(rng.normal(size=(300, 1)) + 1.5 * (truth - 0.5)).astype("float32")
    keras_own = KERAS[metric]()
    keras_own.update_state(truth, outputs)
    assert score(spec, truth, outputs) == pytest.approx(float(keras_own.result()), abs=1e-6)
    assert score(spec, truth, outputs) > 0.6


@pytest.mark.parametrize("metric", CURVES)
def test_the_auc_of_predictions_on_the_thresholds_themselves_is_keras_own(metric):
    """Predictions exactly at k / 199 and at 0 and 1: each is placed among the thresholds as Keras places it."""
    spec = _cancer_spec(metric)
    outputs = np.concatenate([np.arange(200, dtype="float32") / np.float32(199), [0.0, 1.0, 0.5]]).reshape(-1, 1)
    truth = (np.random.default_rng(5).random(outputs.shape) < outputs).astype("float32")
    keras_own = KERAS[metric]()
    keras_own.update_state(truth, outputs.astype("float32"))
    assert score(spec, truth, outputs.astype("float32")) == pytest.approx(float(keras_own.result()), abs=1e-6)


def test_the_precision_recall_auc_of_a_few_rows_is_keras_own():
    """Few rows leave most thresholds' points equal and some with no predicted positive: the interpolation's
    guarded divisions and logarithms (a class of one row, then of none)."""
    spec = _cancer_spec("pr_auc")
    for truth, outputs in [([0, 1, 1], [0.2, 0.6, 0.9]), ([1, 0, 0], [0.2, 0.6, 0.9]), ([0, 0], [0.3, 0.7])]:
        truth, outputs = (np.array(values, dtype="float32").reshape(-1, 1) for values in (truth, outputs))
        keras_own = keras.metrics.AUC(curve="PR")
        keras_own.update_state(truth, outputs)
        assert score(spec, truth, outputs) == pytest.approx(float(keras_own.result()), abs=1e-6)


def _hinge_spec(metric: str = "accuracy", **evaluate):
    """The books' hinge listing on the cancer table: a tanh output, its classes parted at 0."""
    experiment = cancer_experiment(train={"loss": "hinge", "learning_rate": 0.01},
                                   evaluate={"metric": metric, **evaluate})
    experiment["model"]["layers"][-1]["activation"] = "tanh"
    return parse_params({"experiments": {"cancer": experiment}}, source="listing.yaml").experiments["cancer"]


@pytest.mark.parametrize("metric", ["accuracy", "precision", "recall", "f1", "auc", "pr_auc"])
def test_a_hinge_models_outputs_above_zero_are_the_second_class_in_every_score(metric):
    """Keras' hinge takes the 0/1 labels as -1 and 1: an output of 0.3 is class 1, -0.3 class 0. Every row below is
    right by its sign (read at 0.5, none would be class 1), in the compiled per-row function and at the end; for
    the curves, the outputs rank the rows right (clipped to [0, 1] as they are, the three below 0 would tie)."""
    spec = _hinge_spec(metric)
    y_true = np.array([[1.0], [0.0], [1.0], [0.0]], dtype="float32")
    y_pred = np.array([[0.3], [-0.6], [0.4], [-0.9]] if metric not in CURVES else [[-0.2], [-0.6], [0.8], [-0.9]],
                      dtype="float32")
    assert score(spec, y_true, y_pred) == pytest.approx(1.0)
    fn, finish = metric_fn(spec)
    assert slot_scores(keras.ops.convert_to_numpy(fn(y_true, y_pred)), None, 1, finish)[0] == pytest.approx(1.0)


def test_a_hinge_model_ending_in_a_sigmoid_keeps_the_boundary_at_one_half():
    """Its outputs are never below 0: trained by the hinge loss toward 0 and 1, it parts them at 0.5."""
    spec = _hinge_spec()
    layers = [layer.model_copy(update={"activation": "sigmoid"}) if i == len(spec.model.layers) - 1 else layer
              for i, layer in enumerate(spec.model.layers)]
    sigmoid = spec.model_copy(update={"model": spec.model.model_copy(update={"layers": layers})})
    y_true = np.array([[1.0], [0.0]], dtype="float32")
    assert score(sigmoid, y_true, np.array([[0.9], [0.2]], dtype="float32")) == 1.0
    assert score(spec, y_true, np.array([[0.9], [0.2]], dtype="float32")) == 0.5  # tanh's 0.2 is the second class


@pytest.mark.parametrize("stack", [True, False], ids=["stacked", "fold-by-fold"])
def test_a_hinge_models_folds_score_their_predicted_classes(tmp_path, bundled_data, stack):
    """The epochs' held-out accuracy, the fold's score and its predicted classes (predictions.csv's) agree, each
    parting the tanh outputs at 0; the saved model records it, and predict's classes are the same."""
    (tmp_path / "data").mkdir()
    shutil.copy(bundled_data / "breast_cancer.csv", tmp_path / "data")
    spec = _hinge_spec(stack_folds=stack)
    table = load_table(spec.dataset, root=tmp_path)
    labels = encode_labels(spec, table)
    folds = prepare_folds(spec, table, labels)
    result = cross_validate(spec, folds)
    assert result.stacked == stack
    for fold in result.folds:
        assert fold.score == pytest.approx(float(np.mean(fold.y_pred == fold.y_true)))
        assert fold.history["val_accuracy"][-1] == pytest.approx(fold.score, rel=1e-5)
        assert fold.score > 0.9  # read at 0.5, a tanh output in (0, 0.5] would count as the first class
    if stack:
        return
    final = refit(spec, table, labels)
    saved = read_saved(write_model(tmp_path / "model", spec, final))
    assert saved.parted_at_zero
    rows = table.X.iloc[:60]
    predicted = predict_table(saved, rows)
    outputs = keras.ops.convert_to_numpy(final.model(final.preprocessor.transform(rows))).reshape(-1)
    assert predicted["prediction"].tolist() == [labels.codec.classes_[int(o > 0)] for o in outputs]
