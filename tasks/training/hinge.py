"""A binary model trained with a hinge loss: its one output parts the two classes at 0, not at 0.5.

Keras' `hinge` and `squared_hinge` take the 0/1 labels as -1 and 1, and the books' hinge models end in tanh (or no
activation): an output above 0 is the second class. Scores, predictions.csv and `kerasflow predict` read such a
model's outputs as (output + 1) / 2, which keeps their order and puts the boundary at 0.5, where every metric
draws it. A model whose last activation gives no negative output (sigmoid, ReLU...) keeps the 0.5 boundary its
outputs are trained around. Imports no Keras: `kerasflow predict` reads a saved model's flag before it loads one.
"""

from __future__ import annotations

from typing import TypeVar

from kerasflow.tasks.config.schema import ExperimentSpec

HINGE_LOSSES = ("hinge", "squared_hinge")
NON_NEGATIVE = ("sigmoid", "hard_sigmoid", "softmax", "relu", "relu6", "softplus", "exponential")
"""Activations whose outputs are never below 0: a hinge model ending in one is trained around 0.5, not 0."""

Outputs = TypeVar("Outputs")


def parted_at_zero(spec: ExperimentSpec) -> bool:
    """Whether the model's one output parts the classes at 0: a binary task trained with a hinge loss, its last
    activation one that can give negative outputs (tanh, linear).

    >>> from kerasflow.tasks.config.schema import parse_params
    >>> def spec(activation):
    ...     layers = [{"type": "dense", "units": 1, "activation": activation}]
    ...     raw = {"experiments": {"e": {"dataset": {"file": "d.csv", "target": "y", "task": "binary"},
    ...                                  "model": {"layers": layers},
    ...                                  "train": {"loss": "hinge", "epochs": 1, "batch_size": 8}}},
    ...            "sweeps": {}, "continued": {}}
    ...     return parse_params(raw).experiments["e"]
    >>> parted_at_zero(spec("tanh")), parted_at_zero(spec("linear")), parted_at_zero(spec("sigmoid"))
    (True, True, False)
    """
    if spec.dataset.task != "binary" or spec.loss not in HINGE_LOSSES:
        return False
    activations = [layer.activation for layer in spec.model.layers if hasattr(layer, "activation")]
    return not activations or activations[-1] not in NON_NEGATIVE


def class_scale(outputs: Outputs, at_zero: bool) -> Outputs:
    """A binary model's outputs on the scale that the 0.5 threshold and the curves' thresholds read: those of a
    model whose classes part at 0 (:func:`parted_at_zero`) as (outputs + 1) / 2; any other's as they are. Tensors
    or arrays.

    >>> import numpy as np
    >>> class_scale(np.array([-1.0, -0.5, 0.0, 0.5, 1.0]), at_zero=True).tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    return (outputs + 1.0) / 2.0 if at_zero else outputs
