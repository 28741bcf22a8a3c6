"""Scores averaged over the classes, so a small class counts as much as a large one: macro precision, recall and F1
(`evaluate.metric: precision_macro | recall_macro | f1_macro`), logged at each epoch and scored at the end as
scikit-learn's ``average="macro"`` gives them (over the classes found among the rows and predictions); and a
multiclass task's `auc` and `pr_auc`, each class's curve against the others averaged, as Keras' AUC with
``multi_label=True`` gives them."""

from __future__ import annotations

import shutil

import keras
import numpy as np
import pytest
from helpers import cancer_experiment, slot_scores_three_ways
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from kerasflow.tasks.config.errors import ParamsError
from kerasflow.tasks.config.schema import parse_params
from kerasflow.tasks.data.table import load_table
from kerasflow.tasks.training.evaluate import cross_validate, encode_labels, prepare_folds
from kerasflow.tasks.training.scoring import score

SKLEARN = {"precision_macro": precision_score, "recall_macro": recall_score, "f1_macro": f1_score}
MACRO = tuple(SKLEARN)


def _macro(metric: str, truth: np.ndarray, predicted: np.ndarray) -> float:
    return float(SKLEARN[metric](truth, predicted, average="macro", zero_division=0))


def _wine_spec(metric: str, loss: str | None = None, **evaluate):
    """Wine's three cultivars (59, 71 and 48 rows): a 4-3 MLP trained slowly, so the early epochs miss rows."""
    experiment = {"dataset": {"file": "data/wine.csv", "target": "cultivar", "task": "multiclass"},
                  "preprocess": {"scale": "standard"},
                  "model": {"layers": [{"type": "dense", "units": 4, "activation": "relu"},
                                       {"type": "dense", "units": 3, "activation": "softmax"}]},
                  "train": {"optimizer": "sgd", "learning_rate": 0.02, "epochs": 4, "batch_size": 16, "seed": 3,
                            **({"loss": loss} if loss else {})},
                  "evaluate": {"n_splits": 3, "seed": 1, "metric": metric, **evaluate}}
    return parse_params({"experiments": {"wine": experiment}}, source="listing.yaml").experiments["wine"]


@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "categorical_crossentropy"])
@pytest.mark.parametrize("stack", [True, False], ids=["stacked", "fold-by-fold"])
@pytest.mark.parametrize("metric", MACRO)
def test_each_folds_score_is_scikit_learns_macro_average_and_its_last_epochs(tmp_path, bundled_data, metric,
                                                                            stack, loss):
    """Class codes or one-hot targets (a categorical loss's), folds stacked or one by one: each fold's score is
    scikit-learn's of its predicted classes, and its last epoch's held-out score."""
    (tmp_path / "data").mkdir()
    shutil.copy(bundled_data / "wine.csv", tmp_path / "data")
    spec = _wine_spec(metric, loss, stack_folds=stack)
    table = load_table(spec.dataset, root=tmp_path)
    folds = prepare_folds(spec, table, encode_labels(spec, table))
    result = cross_validate(spec, folds)
    assert result.stacked == stack and spec.higher_is_better and result.summary()["metric"] == metric
    for fold, data in zip(result.folds, folds):
        truth = data.y_test.argmax(axis=-1) if data.y_test.ndim == 2 and data.y_test.shape[1] > 1 else data.y_test
        assert fold.score == pytest.approx(_macro(metric, truth.reshape(-1), fold.y_pred), rel=1e-9)
        assert fold.history[f"val_{metric}"][-1] == pytest.approx(fold.score, rel=1e-5)
        assert all(0.0 <= value <= 1.0 for value in fold.history[metric])
    assert len({round(value, 6) for fold in result.folds for value in fold.history[f"val_{metric}"]}) > 1


@pytest.mark.parametrize("metric", MACRO)
def test_each_slots_held_out_score_is_scikit_learns_over_the_classes_its_rows_show(metric):
    """Slots of 70, 50 and 60 rows, the second with no row of class 2: each slot's score, from one prediction and
    from the compiled per-slot metric, leaves its padding rows out and averages over the classes found among its
    rows and predictions, as scikit-learn does."""
    spec, rng = _wine_spec(metric), np.random.default_rng(0)
    parts = [(rng.normal(size=(n, 4)).astype("float32"), rng.integers(0, high, size=(n, 1)).astype("float32"))
             for n, high in ((70, 3), (50, 2), (60, 3))]
    logs, expected, predictions = slot_scores_three_ways(spec, parts)
    for j, (_, truth) in enumerate(parts):
        alone = _macro(metric, truth.reshape(-1), predictions[j, :len(truth)].argmax(axis=-1))
        assert logs[f"val_f{j}_{metric}"] == pytest.approx(alone, abs=1e-6)
        assert expected[f"f{j}_{metric}"] == pytest.approx(alone, abs=1e-6)


@pytest.mark.parametrize("stack", [True, False], ids=["stacked", "fold-by-fold"])
@pytest.mark.parametrize("metric", MACRO)
def test_a_binary_tasks_macro_score_averages_both_classes(tmp_path, bundled_data, metric, stack):
    """One sigmoid output stands for two classes: the macro score is the mean of the score of each, as
    scikit-learn's, unlike `precision`, `recall` and `f1`, which score the class the labels sort last."""
    (tmp_path / "data").mkdir()
    shutil.copy(bundled_data / "breast_cancer.csv", tmp_path / "data")
    experiment = cancer_experiment(train={"optimizer": "sgd", "learning_rate": 0.01},
                                   evaluate={"metric": metric, "stack_folds": stack})
    spec = parse_params({"experiments": {"cancer": experiment}}, source="listing.yaml").experiments["cancer"]
    table = load_table(spec.dataset, root=tmp_path)
    folds = prepare_folds(spec, table, encode_labels(spec, table))
    result = cross_validate(spec, folds)
    for fold, data in zip(result.folds, folds):
        truth = data.y_test.reshape(-1)
        assert fold.score == pytest.approx(_macro(metric, truth, fold.y_pred), rel=1e-9)
        assert fold.history[f"val_{metric}"][-1] == pytest.approx(fold.score, rel=1e-5)
        assert fold.score != pytest.approx(SKLEARN[metric](truth, fold.y_pred), rel=1e-6)
    assert len({round(value, 6) for fold in result.folds for value in fold.history[metric]}) > 1


def test_a_binary_score_of_one_class_is_refused_on_a_multiclass_task():
    """`f1` scores one class of two; on three classes it has no meaning, and the message names the macro one."""
    with pytest.raises(ParamsError, match=r"evaluate.metric: does not fit task 'multiclass'.*f1_macro.*Received: 'f1'"):
        _wine_spec("f1")


def _keras_auc(metric: str, truth: np.ndarray, outputs: np.ndarray) -> float:
    """Keras' own AUC of each class against the others, averaged: class codes made one-hot rows."""
    keras_own = keras.metrics.AUC(curve="PR" if metric == "pr_auc" else "ROC", multi_label=True,
                                  num_labels=outputs.shape[-1])
    keras_own.update_state(np.eye(outputs.shape[-1], dtype="float32")[truth.reshape(-1).astype(int)], outputs)
    return float(keras_own.result())


@pytest.mark.parametrize("metric", ["auc", "pr_auc"])
def test_a_multiclass_auc_is_keras_own_of_each_class_against_the_others(metric):
    """Each stacked slot's held-out score and compiled score (slots of 70, 50 and 60 rows, the second with no row
    of class 2, whose curves then count as Keras counts them) and the NumPy score of class codes or one-hot rows."""
    spec, rng = _wine_spec(metric), np.random.default_rng(0)
    parts = [(rng.normal(size=(n, 4)).astype("float32"), rng.integers(0, high, size=(n, 1)).astype("float32"))
             for n, high in ((70, 3), (50, 2), (60, 3))]
    logs, compiled, predictions = slot_scores_three_ways(spec, parts)
    for j, (_, truth) in enumerate(parts):
        alone = _keras_auc(metric, truth, predictions[j, :len(truth)])
        assert logs[f"val_f{j}_{metric}"] == pytest.approx(alone, abs=1e-6)
        assert compiled[f"f{j}_{metric}"] == pytest.approx(alone, abs=1e-6)
    truth = rng.integers(0, 3, size=300)
    outputs = keras.ops.convert_to_numpy(keras.ops.softmax(rng.normal(size=(300, 3)) + 2.0 * np.eye(3)[truth]))
    expected = _keras_auc(metric, truth, outputs)
    assert score(spec, truth.astype("float32"), outputs) == pytest.approx(expected, abs=1e-6)
    assert score(spec, np.eye(3, dtype="float32")[truth], outputs) == pytest.approx(expected, abs=1e-6)
    if metric == "auc":  # 200 thresholds draw the exact curves closely: scikit-learn's one-vs-rest macro average
        assert expected == pytest.approx(roc_auc_score(truth, outputs, multi_class="ovr"), abs=0.01)


@pytest.mark.parametrize("stack", [True, False], ids=["stacked", "fold-by-fold"])
def test_a_multiclass_folds_auc_is_its_last_epochs(tmp_path, bundled_data, stack):
    (tmp_path / "data").mkdir()
    shutil.copy(bundled_data / "wine.csv", tmp_path / "data")
    spec = _wine_spec("auc", stack_folds=stack)
    table = load_table(spec.dataset, root=tmp_path)
    result = cross_validate(spec, prepare_folds(spec, table, encode_labels(spec, table)))
    assert result.stacked == stack and spec.higher_is_better
    for fold in result.folds:
        assert 0.0 <= fold.score <= 1.0 and fold.history["val_auc"][-1] == pytest.approx(fold.score, rel=1e-5)
    assert len({round(value, 6) for fold in result.folds for value in fold.history["val_auc"]}) > 1
