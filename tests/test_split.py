"""Folds: every row validated once, stratification kept, preprocessing fitted inside the fold only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import tiny_params

from kerasflow.tasks.config.errors import DataError
from kerasflow.tasks.config.schema import EvaluateSpec, parse_params
from kerasflow.tasks.data.preprocess import Preprocessor
from kerasflow.tasks.data.split import make_splits
from kerasflow.tasks.data.table import load_table
from kerasflow.tasks.training.evaluate import encode_labels, prepare_folds


@pytest.mark.parametrize("stratify", [False, True])
def test_every_row_is_validated_exactly_once(stratify):
    y = np.repeat([0, 1, 2], [50, 30, 20])
    splits = make_splits(EvaluateSpec(n_splits=10, stratify=stratify, seed=3), y)
    assert len(splits) == 10
    tested = np.concatenate([s.test_index for s in splits])
    assert sorted(tested.tolist()) == list(range(len(y)))
    for split in splits:
        assert not set(split.train_index) & set(split.test_index)
        assert len(split.train_index) + len(split.test_index) == len(y)


def test_stratification_keeps_class_shares_in_every_fold():
    y = np.repeat([0, 1, 2], [50, 30, 20])
    for split in make_splits(EvaluateSpec(n_splits=10, stratify=True, seed=3), y):
        assert np.bincount(y[split.test_index]).tolist() == [5, 3, 2]


def test_repeated_kfold_validates_each_row_once_per_repeat_and_same_seed_same_folds():
    y = np.arange(30) % 2
    spec = EvaluateSpec(n_splits=5, n_repeats=3, seed=11)
    splits = make_splits(spec, y)
    assert len(splits) == 15
    counts = np.bincount(np.concatenate([s.test_index for s in splits]))
    assert counts.tolist() == [3] * 30
    again = make_splits(spec, y)
    assert all(np.array_equal(a.test_index, b.test_index) for a, b in zip(splits, again))


def test_holdout_and_time_ordered_splits():
    y = np.arange(100) % 2
    (holdout,) = make_splits(EvaluateSpec(method="holdout", test_size=0.25, stratify=True, seed=0), y)
    assert len(holdout.test_index) == 25
    assert sorted(np.bincount(y[holdout.test_index]).tolist()) == [12, 13]
    assert len(set(holdout.train_index) | set(holdout.test_index)) == 100
    for split in make_splits(EvaluateSpec(method="timeseries", n_splits=4, shuffle=False), y):
        assert split.train_index.max() < split.test_index.min()  # never trains on the future


def test_too_many_folds_and_too_small_classes_are_refused():
    with pytest.raises(DataError, match=r"n_splits: must be between 2 and 4 for method 'kfold' on the data's 4 rows. "
                                        r"Received: 5"):
        make_splits(EvaluateSpec(n_splits=5), np.zeros(4))
    y = np.array([0] * 20 + [1] * 3)
    with pytest.raises(DataError, match="needs at least 5 rows of every class.*'1': 3"):
        make_splits(EvaluateSpec(n_splits=5, stratify=True), y)
    # A class on one row: no count of folds could stratify it.
    with pytest.raises(DataError, match=r"too few in \{'1': 1\} \(rows per class, by class code\)\. Allowed: "
                                        r"stratify: false\. Received"):
        make_splits(EvaluateSpec(n_splits=5, stratify=True), np.array([0] * 20 + [1]))
    # Named by label where the labels are given: a class code means nothing to whoever wrote the CSV.
    with pytest.raises(DataError, match=r"too few in \{'malignant': 3\} \(rows per class\)\. Allowed: n_splits up "
                                        r"to 3, or stratify: false\. Received"):
        make_splits(EvaluateSpec(n_splits=5, stratify=True), y, classes=["benign", "malignant"])


def test_labels_too_rare_for_the_folds_and_a_hold_out_leaving_nothing_are_refused():
    """A multilabel task's 0/1 columns, stratified: as for classes, a label on fewer rows than folds is refused
    (iterative stratification cannot reach every fold with it), and so is a hold-out with no training row."""
    y = np.zeros((10, 2))
    y[:2, 0], y[:6, 1] = 1, 1
    with pytest.raises(DataError, match=r"n_splits: stratified 5-fold needs at least 5 rows of every label; too "
                                        r"few in \{'label 0': 2, 'not label 1': 4\} \(rows a label applies to \(or "
                                        r"not\), by its place in dataset.target\). Allowed: n_splits up to 2, or "
                                        r"stratify: false"):
        make_splits(EvaluateSpec(n_splits=5, stratify=True), y)
    with pytest.raises(DataError, match=r"test_size: cannot hold out 0.95 of the data's 10 rows"):
        make_splits(EvaluateSpec(method="holdout", test_size=0.95, stratify=True), y)
    assert [len(split.test_index) for split in make_splits(EvaluateSpec(n_splits=2, stratify=True), y)] == [5, 5]


def test_the_scaler_never_sees_the_folds_validation_rows(project):
    spec = parse_params(tiny_params()).experiments["iris"]
    table = load_table(spec.dataset, root=project)
    labels = encode_labels(spec, table)
    folds = prepare_folds(spec, table, labels)
    for split, fold in zip(make_splits(spec.evaluate, labels.codes), folds):
        train = table.X.iloc[split.train_index].to_numpy()
        # Standardised with training statistics: the training side has mean 0, sd 1 exactly ...
        np.testing.assert_allclose(fold.X_train.mean(axis=0), 0, atol=1e-5)
        np.testing.assert_allclose(fold.X_train.std(axis=0), 1, atol=1e-5)
        # ... and the held-out side was transformed with those same statistics, not its own.
        expected = (table.X.iloc[split.test_index].to_numpy() - train.mean(axis=0)) / train.std(axis=0)
        np.testing.assert_allclose(fold.X_test, expected, rtol=1e-5, atol=1e-5)
        assert not np.allclose(fold.X_test.mean(axis=0), 0, atol=1e-3)


def test_preprocessor_encodes_categoricals_imputes_and_round_trips():
    X = pd.DataFrame({"size": [1.0, np.nan, 3.0, 4.0], "colour": ["red", "blue", None, "red"]})
    with pytest.raises(DataError, match="non-numeric feature columns \\['colour'\\]"):
        Preprocessor().fit(X)
    with pytest.raises(DataError, match="missing values.*preprocess.impute"):
        Preprocessor(categorical="onehot").fit(X)
    pre = Preprocessor(scale="minmax", categorical="onehot", impute="mean").fit(X)
    out = pre.transform(X)
    assert out.shape == (4, 3)
    np.testing.assert_allclose(out[:, 0], [0, (8 / 3 - 1) / 3, 2 / 3, 1], rtol=1e-6)
    again = Preprocessor.from_dict(pre.to_dict())
    np.testing.assert_array_equal(again.transform(X), out)
    with pytest.raises(DataError, match="missing \\['colour'\\], extra \\['shade'\\]"):
        pre.transform(X.rename(columns={"colour": "shade"}))


def test_nested_outer_folds_of_a_time_ordered_experiment_keep_time_order():
    """`tune --nested` on rows evaluated in time order: expanding-window outer folds, each sweep on the rows before
    its held-out block, as scikit-learn's TimeSeriesSplit gives them; more than rows - 1 refused naming --nested."""
    from sklearn.model_selection import TimeSeriesSplit

    from kerasflow.tasks.config.errors import ParamsError
    from kerasflow.tasks.sweep.nested import outer_splits
    from kerasflow.tasks.training.evaluate import Encoded

    raw = tiny_params()
    raw["experiments"]["diabetes"]["evaluate"] = {"method": "timeseries", "n_splits": 2, "shuffle": False}
    spec = parse_params(raw).experiments["diabetes"]
    labels = Encoded(np.arange(40, dtype=float), None)
    splits = outer_splits(spec, labels, 4)
    expected = list(TimeSeriesSplit(n_splits=4).split(np.arange(40)))
    assert [(s.train_index.tolist(), s.test_index.tolist()) for s in splits] == [
        (train.tolist(), test.tolist()) for train, test in expected]
    assert all(split.train_index.max() < split.test_index.min() for split in splits)
    with pytest.raises(ParamsError, match=r"^--nested 40: expected at most 39 time-ordered outer folds"):
        outer_splits(spec, labels, 40)


def test_nested_time_ordered_outer_folds_too_short_for_the_inner_folds_are_refused_first(project, monkeypatch):
    """The first outer fold's sweep has the rows before its held-out block alone: 442 rows in 100 outer folds leave
    it 42, too few for 50 time-ordered inner folds. Refused naming --nested before Ray or Prefect start."""
    from kerasflow.tasks.config.errors import ParamsError
    from kerasflow.tasks.sweep.nested import check_outer_folds

    monkeypatch.chdir(project)
    raw = tiny_params()
    raw["experiments"]["diabetes"]["evaluate"] = {"method": "timeseries", "n_splits": 50, "shuffle": False}
    spec = parse_params(raw).experiments["diabetes"]
    check_outer_folds("diabetes", spec, 7, spec)  # 57 rows in the first block
    with pytest.raises(ParamsError, match=r"^--nested 100: the first time-ordered outer fold's sweep has its first "
                                          r"42 rows, too few for its inner folds \(.*n_splits"):
        check_outer_folds("diabetes", spec, 100, spec)
    # A sweep that sweeps an evaluate key splits each config's rows its own way: its inner folds are left to them.
    check_outer_folds("diabetes", spec, 100, None)
