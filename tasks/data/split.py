"""Train/validation index pairs for every evaluation method: folds are indices, never copies of rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from iterstrat.ml_stratifiers import (
    MultilabelStratifiedKFold,
    MultilabelStratifiedShuffleSplit,
    RepeatedMultilabelStratifiedKFold,
)
from sklearn.model_selection import (
    KFold,
    RepeatedKFold,
    RepeatedStratifiedKFold,
    StratifiedKFold,
    TimeSeriesSplit,
    train_test_split,
)

from kerasflow.tasks.config.errors import DataError
from kerasflow.tasks.config.schema import EvaluateSpec, ExperimentSpec

SAME_FOLDS = ("dataset.file", "dataset.target", "dataset.task",
              *(f"evaluate.{key}" for key in ("method", "n_splits", "n_repeats", "shuffle", "stratify", "test_size",
                                              "seed")),
              *(f"preprocess.{key}" for key in ("lookback", "horizon", "steps_out", "lookback_columns",
                                                "sampling_rate")))
"""The settings that decide an experiment's rows (a series' windows) and which of them each fold holds out."""


def fold_settings(spec: ExperimentSpec) -> dict[str, Any]:
    """`spec`'s :data:`SAME_FOLDS` settings, as `run.json` records them (`{"evaluate.seed": 7, ...}`): two runs
    with equal settings and data were scored on the same folds."""
    dumped = spec.model_dump(mode="json")
    return {key: dumped[section][name] for key in SAME_FOLDS for section, name in [key.split(".")]}


UNUSED_BY_METHOD = {
    "kfold": ("evaluate.test_size",),
    "holdout": ("evaluate.n_splits", "evaluate.n_repeats"),
    "timeseries": ("evaluate.test_size", "evaluate.n_repeats", "evaluate.shuffle", "evaluate.stratify",
                   "evaluate.seed"),
}
"""The :data:`SAME_FOLDS` settings each `evaluate.method` leaves unread (:func:`make_splits`): a time series'
expanding windows follow the rows' order and `n_splits` alone."""


def deciding_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Of fold settings as `run.json` records them, those that decide the folds of their method: two runs whose
    deciding settings (and data) are equal were scored on the same folds, whatever setting their method leaves
    unread.

    Examples
    --------
    >>> deciding_settings({"evaluate.method": "kfold", "evaluate.n_splits": 5, "evaluate.test_size": 0.2})
    {'evaluate.method': 'kfold', 'evaluate.n_splits': 5}
    """
    unused = UNUSED_BY_METHOD.get(settings.get("evaluate.method"), ())
    return {key: value for key, value in settings.items() if key not in unused}


class Split(NamedTuple):
    train_index: np.ndarray
    test_index: np.ndarray


def make_splits(spec: EvaluateSpec, y: np.ndarray, classes: Sequence[object] | None = None) -> list[Split]:
    """The evaluation's splits of ``len(y)`` rows; `y` is used for stratification only: class codes, or a
    multilabel task's 0/1 label columns (a matrix), whose folds are stratified iteratively (Sechidis et al., 2011:
    each fold as near as can be to every label's share of the rows, rarest labels dealt first). `classes` are the
    class labels by code, for naming a class too small to stratify.

    Examples
    --------
    >>> from kerasflow.tasks.config.schema import EvaluateSpec
    >>> splits = make_splits(EvaluateSpec(n_splits=3, shuffle=False), np.zeros(6))
    >>> [s.test_index.tolist() for s in splits]
    [[0, 1], [2, 3], [4, 5]]
    """
    n_rows = len(y)
    indices = np.arange(n_rows)
    rows = f"the {n_rows} rows of {spec.data_file}" if spec.data_file else f"the data's {n_rows} rows"
    labels = spec.stratify and y.ndim == 2
    if spec.method == "holdout":
        stratify = y if spec.stratify else None
        if spec.stratify:
            _check_group_sizes(spec, y, classes, 2, "stratify", "a stratified hold-out", "stratify: false")
        try:
            if labels:
                splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=spec.test_size,
                                                            random_state=spec.seed)
                train, test = next(splitter.split(indices, y))
            else:
                train, test = train_test_split(indices, test_size=spec.test_size, shuffle=spec.shuffle,
                                               stratify=stratify, random_state=spec.seed if spec.shuffle else None)
        except ValueError as exc:  # a split with no row on one side
            raise DataError(f"{spec.key('test_size')}: cannot hold out {spec.test_size} of {rows} ({exc}). "
                            f"Received: {spec.test_size}") from None
        return [Split(np.sort(train), np.sort(test))]
    # An expanding window needs a first training block before its first test block: one row more than k-fold.
    most = n_rows - 1 if spec.method == "timeseries" else n_rows
    if spec.n_splits > most:
        raise DataError(f"{spec.key('n_splits')}: must be between 2 and {most} for method {spec.method!r} on "
                        f"{rows}. Received: {spec.n_splits}")
    if spec.stratify:
        _check_group_sizes(spec, y, classes, spec.n_splits, "n_splits", f"stratified {spec.n_splits}-fold",
                           "n_splits up to {fewest}, or stratify: false")
    if spec.method == "timeseries":
        splitter = TimeSeriesSplit(n_splits=spec.n_splits)
    elif labels:  # shuffled: the schema requires it
        splitter = (RepeatedMultilabelStratifiedKFold(n_splits=spec.n_splits, n_repeats=spec.n_repeats,
                                                      random_state=spec.seed)
                    if spec.n_repeats > 1 else
                    MultilabelStratifiedKFold(n_splits=spec.n_splits, shuffle=True, random_state=spec.seed))
    elif spec.stratify:
        splitter = (RepeatedStratifiedKFold(n_splits=spec.n_splits, n_repeats=spec.n_repeats, random_state=spec.seed)
                    if spec.n_repeats > 1 else
                    StratifiedKFold(n_splits=spec.n_splits, shuffle=spec.shuffle,
                                    random_state=spec.seed if spec.shuffle else None))
    else:
        splitter = (RepeatedKFold(n_splits=spec.n_splits, n_repeats=spec.n_repeats, random_state=spec.seed)
                    if spec.n_repeats > 1 else
                    KFold(n_splits=spec.n_splits, shuffle=spec.shuffle,
                          random_state=spec.seed if spec.shuffle else None))
    return [Split(train, test) for train, test in splitter.split(indices, y)]


def small_groups(y: np.ndarray, n_splits: int,
                 classes: Sequence[object] | None = None) -> tuple[str, dict[str, int]]:
    """What stratifying `y` into `n_splits` parts cannot deal to every part, by name, with its rows: a class with
    fewer rows (`y` class codes, named by their label in `classes` where given); for a multilabel task's 0/1 label
    columns, a label on fewer rows (`label 2`, by its place in dataset.target), or missing from fewer
    (`not label 2`), which leaves parts without a row of it or without one lacking it. And the noun for them, class
    or label.

    Examples
    --------
    >>> small_groups(np.array([0, 0, 0, 1]), 2, classes=["benign", "malignant"])
    ('class', {'malignant': 1})
    """
    if y.ndim == 2:
        on = y.sum(axis=0).astype(int)
        counts = {**{f"label {j}": int(n) for j, n in enumerate(on)},
                  **{f"not label {j}": len(y) - int(n) for j, n in enumerate(on)}}
        return "label", {name: n for name, n in counts.items() if n < n_splits}
    codes, counts = np.unique(y, return_counts=True)
    return "class", {str(classes[int(c)] if classes is not None else c): int(n) for c, n in zip(codes, counts)
                     if n < n_splits}


def _check_group_sizes(spec: EvaluateSpec, y: np.ndarray, classes: Sequence[object] | None, n_splits: int, key: str,
                       what: str, allowed: str) -> None:
    """Refuse stratification that scikit-learn would only warn about (:func:`small_groups`); `allowed` says what
    would do instead, `{fewest}` in it the fewest rows of a class or label (where that is at least 2; else
    `stratify: false` alone)."""
    noun, small = small_groups(y, n_splits, classes)
    if small:
        source = f" of {spec.data_file}" if spec.data_file else ""
        counted = (f"rows a label applies to (or not){source}, by its place in dataset.target" if noun == "label" else
                   f"rows per class{source}" + (", by class code" if classes is None else ""))
        received = f"{key}: {getattr(spec, key)}".lower()
        fewest = min(small.values())
        # Fewer than 2 folds is no k-fold: a class or label on one row leaves only unstratified folds.
        instead = allowed.format(fewest=fewest) if fewest >= 2 or "{fewest}" not in allowed else "stratify: false"
        raise DataError(f"{spec.key(key)}: {what} needs at least {n_splits} rows of every {noun}; too few in "
                        f"{small} ({counted}). Allowed: {instead}. Received: {received}")


def purged(split: Split, steps_out: int) -> Split:
    """`split` without the training windows whose later targets (`steps_out` of them from each window's first)
    fall among the held-out windows' rows: a model must not have trained on values it is scored on forecasting.

    Examples
    --------
    >>> purged(Split(np.arange(6), np.arange(6, 9)), 3).train_index.tolist()
    [0, 1, 2, 3]
    """
    if steps_out == 1:
        return split
    start = split.test_index.min()
    reaching = (split.train_index < start) & (split.train_index + steps_out - 1 >= start)
    return Split(split.train_index[~reaching], split.test_index)
