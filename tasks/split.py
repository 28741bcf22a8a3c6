"""Train/validation index pairs for every evaluation method: folds are indices, never copies of rows."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from sklearn.model_selection import (
    KFold,
    RepeatedKFold,
    RepeatedStratifiedKFold,
    StratifiedKFold,
    TimeSeriesSplit,
    train_test_split,
)

from tasks.data import DataError
from tasks.spec import EvaluateSpec


class Split(NamedTuple):
    train_index: np.ndarray
    test_index: np.ndarray


def make_splits(spec: EvaluateSpec, y: np.ndarray) -> list[Split]:
    """The evaluation's splits of ``len(y)`` rows; `y` is used for stratification only.

    Examples
    --------
    >>> from tasks.spec import EvaluateSpec
    >>> splits = make_splits(EvaluateSpec(n_splits=3, shuffle=False), np.zeros(6))
    >>> [s.test_index.tolist() for s in splits]
    [[0, 1], [2, 3], [4, 5]]
    """
    n_rows = len(y)
    indices = np.arange(n_rows)
    if spec.method == "holdout":
        stratify = y if spec.stratify else None
        if stratify is not None:
            _check_class_sizes(y, 2, "evaluate.stratify with a hold-out")
        train, test = train_test_split(indices, test_size=spec.test_size, shuffle=spec.shuffle, stratify=stratify,
                                       random_state=spec.seed if spec.shuffle else None)
        return [Split(np.sort(train), np.sort(test))]
    if spec.n_splits > n_rows:
        raise DataError(f"evaluate.n_splits must be <= the number of rows ({n_rows}). Received: {spec.n_splits}")
    if spec.method == "timeseries":
        splitter = TimeSeriesSplit(n_splits=spec.n_splits)
    elif spec.stratify:
        _check_class_sizes(y, spec.n_splits, "evaluate.n_splits")
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


def _check_class_sizes(y: np.ndarray, n_splits: int, key: str) -> None:
    """Refuse stratification that scikit-learn would only warn about: a class too small to reach every fold."""
    labels, counts = np.unique(y, return_counts=True)
    small = {str(label): int(count) for label, count in zip(labels, counts) if count < n_splits}
    if small:
        raise DataError(f"{key}={n_splits} needs at least {n_splits} rows of every class to stratify; "
                        f"too few in {small}")
