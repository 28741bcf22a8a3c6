"""Class weights (`train.class_weight`): how much each class's training rows weigh in the loss, as Keras'
``fit(class_weight=...)`` weighs them: each row's loss times its class's weight. Held-out scores are not weighted,
as Keras' validation scores are not.

A model trained alone gets them as sample weights, Keras' own way (``fit`` turns `class_weight` into sample weights
too); a stacked model, whose slots may hold folds with other class counts, weighs each slot's rows itself
(`tasks/training/stacked.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kerasflow.tasks.config.errors import DataError

Key = str | int | float | bool
"""A `train.class_weight` key: a target label as YAML reads it."""
ClassWeight = str | dict[Key, float] | None
"""`train.class_weight` as the params file gives it: balanced, {label: weight}, or none."""


def names_label(key: Key, label: Any) -> bool:
    """Whether a `train.class_weight` key names a target label: equal to it, spelt as it is (a true/false label in
    any case: YAML's quoted 'true'), or the same number (a YAML key `1` names a label 1, "1" or 1.0, and so does the
    key "1" that a JSON copy of the params makes of it).

    Examples
    --------
    >>> names_label(1, 1.0), names_label("1", 1), names_label("M", "M"), names_label(2, 1), names_label("M", 1.0)
    (True, True, True, False, False)
    >>> names_label("true", True), names_label("FALSE", np.bool_(False)), names_label("true", "True")
    (True, True, False)
    """
    if label == key or str(label) == str(key):
        return True
    if isinstance(label, (bool, np.bool_)) and isinstance(key, str) and key.lower() == str(label).lower():
        return True
    try:
        return float(str(key)) == float(label)
    except (TypeError, ValueError):
        return False


def check_class_weight(given: ClassWeight, classes: Sequence[Any], where: str) -> None:
    """Refuse `given` class weights whose keys name no label of the data, or one label twice, in one line: `where`
    (the file and key) and the labels found."""
    if not isinstance(given, dict):
        return
    unknown = [key for key in given if not any(names_label(key, label) for label in classes)]
    if unknown:
        raise DataError(f"{where} names label(s) {', '.join(map(repr, unknown))} the target does not have (keys "
                        f"are the target's labels, quoted where YAML would read them as numbers or true/false, as "
                        f"it reads yes/no and on/off). "
                        f"Labels found: {', '.join(map(repr, classes))}")
    for label in classes:
        named = [key for key in given if names_label(key, label)]
        if len(named) > 1:
            raise DataError(f"{where} weighs label {label!r} twice, as {' and '.join(map(repr, named))}: keep one")


def class_weights(given: ClassWeight, codes: np.ndarray, classes: Sequence[Any]) -> np.ndarray | None:
    """Each class code's weight for training rows of classes `codes` (`train.class_weight`), or None when the
    rows are not weighted. Balanced weights are scikit-learn's, ``rows / (classes * rows of the class)``, here over
    the rows trained on and the classes they hold; a class with no such rows weighs 1 (no row of it is weighed).

    Examples
    --------
    >>> class_weights("balanced", np.array([0, 0, 0, 1]), ["B", "M"]).tolist()
    [0.6666666666666666, 2.0]
    >>> class_weights({"M": 5.0}, np.array([0, 1]), ["B", "M"]).tolist()
    [1.0, 5.0]
    """
    if given is None:
        return None
    if given == "balanced":
        counts = np.bincount(codes, minlength=len(classes)).astype(np.float64)
        return np.where(counts > 0, len(codes) / (np.count_nonzero(counts) * np.maximum(counts, 1.0)), 1.0)
    check_class_weight(given, classes, "train.class_weight")  # a sweep's searched weights meet the data here
    weights = np.ones(len(classes), dtype=np.float64)
    for code, label in enumerate(classes):
        for key, weight in given.items():
            if names_label(key, label):  # one key at most: check_class_weight refuses two
                weights[code] = weight
    return weights


def class_codes(y: np.ndarray) -> np.ndarray:
    """Encoded classification targets (:func:`kerasflow.tasks.training.train.encode_target`: binary ``(n, 1)``
    0/1 floats, ``(n,)`` codes, or ``(n, C)`` one-hot) as each row's class code.

    Examples
    --------
    >>> class_codes(np.array([[1.0], [0.0]])).tolist(), class_codes(np.array([[0, 1, 0]])).tolist()
    ([1, 0], [1])
    """
    if y.ndim == 1:
        return y.astype(np.int64)
    return (y[:, 0] if y.shape[1] == 1 else y.argmax(axis=1)).astype(np.int64)
