"""Multilabel classification (`task: multilabel`): several 0/1 label columns, a sigmoid unit each and binary
cross-entropy, the row of the books' table of last layers and losses that the other tasks leave out. The data is a
stand-in of the books' multilabel set: scikit-learn's `make_multilabel_classification`, as their listing draws it."""

from __future__ import annotations

import functools
import json

import keras
import numpy as np
import pandas as pd
import pytest
from helpers import slot_scores_three_ways, written_run
from sklearn.datasets import make_multilabel_classification
from sklearn.metrics import f1_score, precision_score, recall_score

from kerasflow.tasks.config.errors import DataError, ParamsError
from kerasflow.tasks.config.schema import parse_params
from kerasflow.tasks.data.table import load_table
from kerasflow.tasks.outputs.predict import predict_table
from kerasflow.tasks.outputs.results import write_model
from kerasflow.tasks.report import tables
from kerasflow.tasks.report.collect import collect
from kerasflow.tasks.report.html import render_html
from kerasflow.tasks.sweep.groups import scoring_spec
from kerasflow.tasks.sweep.nested import outer_splits
from kerasflow.tasks.training.evaluate import (
    Encoded,
    cross_validate,
    encode_labels,
    experiment_splits,
    prepare_folds,
    refit,
)
from kerasflow.tasks.training.train import predict

pytestmark = pytest.mark.slow
LABELS = ["sports", "politics", "science"]
METRICS = ["accuracy", "precision", "recall", "f1", "auc", "pr_auc", "precision_macro", "recall_macro", "f1_macro"]
SKLEARN = {"precision": (precision_score, "micro"), "recall": (recall_score, "micro"), "f1": (f1_score, "micro"),
           "precision_macro": (precision_score, "macro"), "recall_macro": (recall_score, "macro"),
           "f1_macro": (f1_score, "macro")}
"""scikit-learn's function and average of each metric of a multilabel task."""
KERAS = {"accuracy": lambda: keras.metrics.BinaryAccuracy(), "precision": lambda: keras.metrics.Precision(),
         "recall": lambda: keras.metrics.Recall(),
         "f1": lambda: keras.metrics.F1Score(average="micro", threshold=0.5),
         "f1_macro": lambda: keras.metrics.F1Score(average="macro", threshold=0.5),
         "auc": lambda: keras.metrics.AUC(multi_label=True, num_labels=3),
         "pr_auc": lambda: keras.metrics.AUC(curve="PR", multi_label=True, num_labels=3)}


@functools.cache
def _labels_table() -> pd.DataFrame:
    """10 count features and three labels, each on about a third to two thirds of 300 rows: drawn once a module
    (scikit-learn draws them row by row, about 2.4 s)."""
    X, y = make_multilabel_classification(n_samples=300, n_features=10, n_classes=3, n_labels=2, random_state=1)
    return pd.DataFrame(X, columns=[f"x{i}" for i in range(10)]).assign(**dict(zip(LABELS, y.T)))


@pytest.fixture
def labelled(tmp_path, monkeypatch):
    """data/labels.csv: :func:`_labels_table`, a copy of it each test may change."""
    frame = _labels_table().copy()
    (tmp_path / "data").mkdir()
    frame.to_csv(tmp_path / "data/labels.csv", index=False)
    monkeypatch.chdir(tmp_path)
    return frame


def _spec(evaluate: dict | None = None, dataset: dict | None = None, units: int = 3, **train):
    raw = {"experiments": {"labels": {
        "dataset": {"file": "data/labels.csv", "target": LABELS, "task": "multilabel", **(dataset or {})},
        "preprocess": {"scale": "standard"},
        "model": {"layers": [{"type": "dense", "units": 20, "activation": "relu", "initializer": "he_uniform"},
                             {"type": "dense", "units": units, "activation": "sigmoid"}]},
        "train": {"optimizer": "sgd", "learning_rate": 0.05, "epochs": 8, "batch_size": 32, "seed": 7, **train},
        "evaluate": {"method": "kfold", "n_splits": 3, "shuffle": True, "seed": 1, **(evaluate or {})}}},
        "continued": {}, "sweeps": {}}
    return parse_params(raw, source="listing.yaml").experiments["labels"]


@pytest.mark.parametrize("stack", [True, False], ids=["stacked", "fold-by-fold"])
@pytest.mark.parametrize("metric", METRICS)
def test_each_folds_score_counts_every_label_of_every_row(labelled, metric, stack):
    """Accuracy is the share of labels right, precision, recall and F1 count every label of every row (Keras' own
    metrics on the label columns, scikit-learn's `average="micro"`), their macro forms average the labels' (as
    scikit-learn's `average="macro"`); a fold's score is its last epoch's."""
    spec = _spec({"metric": metric, "stack_folds": stack})
    table = load_table(spec.dataset)
    assert table.targets == LABELS and list(table.X.columns) == [f"x{i}" for i in range(10)]
    folds = prepare_folds(spec, table, encode_labels(spec, table))
    result = cross_validate(spec, folds)
    assert result.stacked == stack and spec.higher_is_better
    for fold, data in zip(result.folds, folds):
        assert fold.y_true.shape == fold.y_pred.shape == (len(data.y_test), 3)
        if metric in KERAS and metric not in ("auc", "pr_auc"):  # from the 0/1 predictions a fold keeps
            keras_own = KERAS[metric]()
            keras_own.update_state(data.y_test, fold.y_pred.astype("float32"))
            assert fold.score == pytest.approx(float(np.squeeze(keras_own.result())), rel=1e-5)
        if metric in SKLEARN:
            function, average = SKLEARN[metric]
            assert fold.score == pytest.approx(function(fold.y_true, fold.y_pred, average=average, zero_division=0.0),
                                               rel=1e-6)
        assert fold.history[f"val_{metric}"][-1] == pytest.approx(fold.score, rel=1e-5)
        # Each label scored alone: scikit-learn's of its column; the mean of the labels' curves, accuracies and
        # macro scores is the fold's score.
        assert list(fold.target_scores) == LABELS
        for j, label in enumerate(LABELS):
            if metric in SKLEARN:
                assert fold.target_scores[label] == pytest.approx(
                    SKLEARN[metric][0](fold.y_true[:, j], fold.y_pred[:, j], zero_division=0.0), rel=1e-6)
        if metric in ("accuracy", "auc", "pr_auc") or metric.endswith("_macro"):
            assert np.mean(list(fold.target_scores.values())) == pytest.approx(fold.score, rel=1e-6)
    assert len({round(value, 6) for fold in result.folds for value in fold.history[f"val_{metric}"]}) > 1


@pytest.mark.parametrize("metric", METRICS)
def test_each_slots_held_out_score_is_keras_own_metric_of_its_labels(labelled, metric):
    """Three stacked slots of 70, 50 and 60 rows of three labels, scored untrained from one prediction and by the
    compiled per-slot metric: each is Keras' own metric of its rows (the curves: one a label, averaged), or
    scikit-learn's macro precision and recall, which Keras has not."""
    spec, rng = _spec({"metric": metric}), np.random.default_rng(0)
    parts = [(rng.normal(size=(n, 10)).astype("float32"), rng.integers(0, 2, size=(n, 3)).astype("float32"))
             for n in (70, 50, 60)]
    logs, compiled, predictions = slot_scores_three_ways(spec, parts)
    for j, (_, truth) in enumerate(parts):
        if metric in KERAS:
            keras_own = KERAS[metric]()
            keras_own.update_state(truth, predictions[j, :len(truth)])
            alone = float(np.squeeze(keras_own.result()))
        else:
            function, average = SKLEARN[metric]
            alone = function(truth, predictions[j, :len(truth)] > 0.5, average=average, zero_division=0.0)
        assert logs[f"val_f{j}_{metric}"] == pytest.approx(alone, abs=1e-6)
        assert compiled[f"f{j}_{metric}"] == pytest.approx(alone, abs=1e-6)


def test_stacked_folds_give_the_folds_trained_one_by_one(labelled):
    spec = _spec({"metric": "f1"})
    table = load_table(spec.dataset)
    folds = prepare_folds(spec, table, encode_labels(spec, table))
    stacked, alone = cross_validate(spec, folds), cross_validate(_spec({"metric": "f1", "stack_folds": False}), folds)
    assert stacked.stacked and not alone.stacked
    assert stacked.scores == pytest.approx(alone.scores, rel=1e-6)
    for ours, theirs in zip(stacked.folds, alone.folds):
        np.testing.assert_array_equal(ours.y_pred, theirs.y_pred)


def test_the_saved_model_says_which_labels_apply_and_how_likely(labelled, tmp_path):
    spec = _spec(epochs=30)
    table = load_table(spec.dataset)
    final = refit(spec, table, encode_labels(spec, table))
    folder = write_model(tmp_path / "model", spec, final)
    proba = predict(final.model, final.preprocessor.transform(table.X))
    got = predict_table(folder, labelled.drop(columns=LABELS))
    assert list(got.columns) == [f"prediction_{label}" for label in LABELS] + [f"proba_{label}" for label in LABELS]
    np.testing.assert_allclose(got[[f"proba_{label}" for label in LABELS]].to_numpy(), proba, rtol=1e-5)
    np.testing.assert_array_equal(got[[f"prediction_{label}" for label in LABELS]].to_numpy(), proba > 0.5)
    assert (got[[f"prediction_{label}" for label in LABELS]].to_numpy() == labelled[LABELS].to_numpy()).mean() > 0.8


def test_results_and_report_show_each_label(labelled, tmp_path):
    """predictions.csv has a line a row and label; the report counts the rows each label applies to and draws a
    confusion matrix a label."""
    spec, results = _spec(), tmp_path / "results"
    cv = written_run("labels", spec, results)
    predictions = pd.read_csv(results / "labels/predictions.csv")
    assert list(predictions.columns) == ["fold", "row", "target", "true", "predicted"]
    assert predictions["target"].tolist()[:3] == LABELS and len(predictions) == 3 * len(labelled)
    truth = predictions.pivot(index="row", columns="target", values="true")[LABELS]
    np.testing.assert_array_equal(truth.to_numpy(), labelled[LABELS].to_numpy())
    metrics = json.loads((results / "labels/metrics.json").read_text())
    assert metrics.keys() == {"accuracy", "targets"} and list(metrics["targets"]) == sorted(LABELS)
    assert metrics["targets"]["science"]["accuracy"]["folds"] == pytest.approx(cv.target_scores["science"])
    assert [row["experiment"] for row in tables.scores(collect(results, {"labels": spec})).to_dict("records")] == [
        "labels", *(f"labels: {label}" for label in LABELS)]
    content = collect(results, {"labels": spec})
    data = content.experiments[0].data
    assert data.classes == {label: int(labelled[label].sum()) for label in LABELS}
    summary = tables.target_summary(data).to_dict("records")
    assert summary[0] == {"class": "sports", "rows": int(labelled["sports"].sum()),
                          "share": f"{labelled['sports'].mean():.1%}"}
    page = render_html(content)
    assert [f"confusion matrix of label {label}" in page for label in LABELS] == [True] * 3


def test_stratified_folds_of_labels_hold_each_labels_share_and_are_the_same_each_time(labelled):
    """`evaluate.stratify` deals the rows out iteratively (iterative-stratification's MultilabelStratifiedKFold):
    each of 10 folds holds within one row of every label's share, where shuffled folds miss it by up to 8 rows;
    so do a repeated k-fold, a hold-out split, nested CV's outer folds and a sweep's hold-out split."""
    y = labelled[LABELS].to_numpy()

    def spread(splits) -> list[int]:
        counts = np.array([y[split.test_index].sum(axis=0) for split in splits])
        return (counts.max(axis=0) - counts.min(axis=0)).tolist()

    spec = _spec({"stratify": True, "n_splits": 10})
    labels = encode_labels(spec, load_table(spec.dataset))
    stratified = experiment_splits(spec, labels, "labels.csv")
    assert spread(stratified) == [1, 1, 1]
    assert spread(experiment_splits(_spec({"n_splits": 10}), labels, "labels.csv")) == [6, 8, 7]
    again = experiment_splits(spec, labels, "labels.csv")
    assert all((a.test_index == b.test_index).all() for a, b in zip(stratified, again))
    assert sorted(np.concatenate([split.test_index for split in stratified]).tolist()) == list(range(300))
    repeated = experiment_splits(_spec({"stratify": True, "n_splits": 5, "n_repeats": 2}), labels, "labels.csv")
    assert len(repeated) == 10 and max(spread(repeated[:5]) + spread(repeated[5:])) <= 1

    holdout = experiment_splits(_spec({"stratify": True, "method": "holdout", "test_size": 0.2}), labels, "x")[0]
    np.testing.assert_allclose(y[holdout.test_index].mean(axis=0), y.mean(axis=0), atol=0.01)
    assert max(spread(outer_splits(spec, labels, 5))) <= 1
    sweep = parse_params({"experiments": {"labels": spec.model_dump(mode="json", exclude_none=True)},
                          "continued": {}, "sweeps": {"labels": {"space": {"train": {"epochs": {"grid": [2, 3]}}},
                                                                 "scoring": "holdout"}}}).sweeps["labels"]
    assert scoring_spec(spec, sweep).evaluate.stratify
    # Where the experiment's own folds are not stratified, nor are the sweep's hold-out or the outer folds: a label
    # on 3 rows then stops neither (it would a stratified 5-fold, naming what to change).
    plain, rare = _spec(), Encoded(np.column_stack([y, np.arange(300) < 3]).astype(int), None)
    assert not scoring_spec(plain, sweep).evaluate.stratify and len(outer_splits(plain, rare, 5)) == 5
    with pytest.raises(ParamsError, match=r"^--nested 5: stratified outer folds need at least 5 rows of every "
                                          r"label; too few in \{'label 3': 3\} \(data/labels.csv\). Allowed: --nested "
                                          r"up to 3, or evaluate.stratify: false$"):
        outer_splits(spec, rare, 5)
    with pytest.raises(ParamsError, match=r"listing.yaml:experiments.labels.evaluate.shuffle: must be true to "
                                          r"stratify a multilabel task"):
        _spec({"stratify": True, "shuffle": False})


@pytest.mark.parametrize("change, error, message", [
    ({"dataset": {"target": "sports"}}, ParamsError,
     "experiments.labels.dataset.target: task 'multilabel' predicts whether each of several labels applies: list "
     "two or more 0/1 columns, e.g. [sports, politics] (one column is task 'binary'). Received: 'sports'"),
    ({"loss": "categorical_crossentropy"}, ParamsError, "train.loss: does not fit task 'multilabel'"),
    ({"class_weight": "balanced"}, ParamsError, "train.class_weight: weighs the rows of each class"),
    ({"evaluate": {"metric": "mse"}}, ParamsError, "evaluate.metric: does not fit task 'multilabel' (dataset.task). "
                                                    "Allowed: accuracy, precision, recall, f1, auc, pr_auc, "
                                                    "precision_macro, recall_macro, f1_macro"),
    ({"units": 2}, DataError, "the last Dense layer must have 3 unit(s) for task 'multilabel' on data/labels.csv "
                              "(3 labels: dataset.target). Received: 2 (layers[1])"),
])
def test_a_bad_multilabel_experiment_is_one_line_naming_its_key(labelled, change, error, message):
    with pytest.raises(error) as info:
        spec = _spec(**change)
        encode_labels(spec, load_table(spec.dataset), "labels")
    assert message in str(info.value)


@pytest.mark.parametrize("text", [False, True], ids=["a 2", "yes and no"])
def test_a_label_column_of_other_values_is_refused_by_its_file_line(labelled, text):
    """A 2 on file line 6, or the labels written as words (the first, on line 2, a 'no')."""
    column = labelled["science"].map({0: "no", 1: "yes"}) if text else labelled["science"].mask(labelled.index == 4, 2)
    labelled.assign(science=column).to_csv("data/labels.csv", index=False)
    with pytest.raises(DataError) as info:
        load_table(_spec().dataset)
    shown = "'no' (file line 2)" if text else "2 (file line 6)"
    assert str(info.value) == (
        "data/labels.csv: task 'multilabel' (listing.yaml:experiments.labels.dataset.task) needs each target column "
        f"to hold 0 (the label does not apply) or 1 (it does); column 'science' holds {shown}")


@pytest.mark.parametrize("value, rows", [(0, "no row"), (1, "every row")])
def test_a_label_that_applies_to_no_row_or_every_row_is_refused(labelled, value, rows):
    labelled.assign(politics=value).to_csv("data/labels.csv", index=False)
    with pytest.raises(DataError) as info:
        load_table(_spec().dataset)
    assert str(info.value) == (
        f"data/labels.csv: label column 'politics' applies to {rows}: a model cannot learn when it does; leave it out "
        "of dataset.target (listing.yaml:experiments.labels.dataset.target)")
