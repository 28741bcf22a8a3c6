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
from kerasflow.tasks.config.schema import ExperimentSpec, experiment_key

ClassWeight = str | dict[str | int, float] | None
"""`train.class_weight` as the params file gives it: balanced, {label: weight}, or none."""


def matching_class(key: str | int, classes: Sequence[Any]) -> int | None:
    """The code of the class a `train.class_weight` key names: the label equal to it, or spelt as it is (a YAML key
    `0` names a label 0 or "0").

    Examples
    --------
    >>> matching_class(1, [0, 1]), matching_class("1", [0, 1]), matching_class("M", ["B", "M"])
    (1, 1, 1)
    >>> matching_class(2, [0, 1]) is None
    True
    """
    for code, label in enumerate(classes):
        if label == key or str(label) == str(key):
            return code
    return None


def check_class_weight(spec: ExperimentSpec, classes: Sequence[Any], source: object, name: str = "experiment") -> None:
    """Refuse `train.class_weight` keys that name no class of the data, in one line naming the key and the
    classes found."""
    given = spec.train.class_weight
    if not isinstance(given, dict):
        return
    unknown = [key for key in given if matching_class(key, classes) is None]
    if unknown:
        raise DataError(f"{source}: {experiment_key(spec, name, 'train.class_weight')} names label(s) "
                        f"{', '.join(map(repr, unknown))} the target does not have. Labels found: "
                        f"{', '.join(map(repr, classes))}")


def class_weights(given: ClassWeight, codes: np.ndarray, classes: Sequence[Any]) -> np.ndarray | None:
    """Each class code's weight for training rows of classes `codes` (`train.class_weight`), or None when the
    rows are not weighted. Balanced weights are scikit-learn's: ``rows / (classes * rows of the class)``, here
    over the rows trained on; a class with no such rows weighs 1 (no row of it is weighed).

    Examples
    --------
    >>> class_weights("balanced", np.array([0, 0, 0, 1]), ["B", "M"]).tolist()
    [0.6666666666666666, 2.0]
    >>> class_weights({"M": 5.0}, np.array([0, 1]), ["B", "M"]).tolist()
    [1.0, 5.0]
    """
    if given is None:
        return None
    n_classes = len(classes)
    if given == "balanced":
        counts = np.bincount(codes, minlength=n_classes).astype(np.float64)
        return np.where(counts > 0, len(codes) / (n_classes * np.maximum(counts, 1.0)), 1.0)
    weights = np.ones(n_classes, dtype=np.float64)
    for key, weight in given.items():
        weights[matching_class(key, classes)] = weight
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
