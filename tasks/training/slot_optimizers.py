"""One optimizer per group of slots of a stacked model, so that configs of a grid that differ in their optimizer
(its name, arguments or learning rate) still train as one program (`tasks/training/stacked.py`).

A stacked Dense layer keeps one kernel and one bias per group of consecutive slots that share an optimizer
(`StackedDense(groups=...)`); Keras' `MultiOptimizer` hands each group's gradients to that group's own optimizer
(`compile_stacked`), whose state (moments, accumulators, step count) is then the state that config's own
optimizer has when it trains alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from kerasflow.tasks.config.schema import ExperimentSpec, TrainSpec


def optimizer_key(train: TrainSpec) -> str:
    """What configs in one slot group share: the optimizer with its arguments and learning rate."""
    return json.dumps([train.optimizer if isinstance(train.optimizer, str) else train.optimizer.model_dump(),
                       train.learning_rate], sort_keys=True, default=str)


def own_optimizers(spec: ExperimentSpec) -> bool:
    """Whether `spec`'s configs may stack with others of another optimizer, each slot group on its own: not with a
    schedule (one learning rate is logged for every slot), early stopping (it reads every slot's weights from one
    variable a layer) or a continued model (its weights are put into one variable a layer)."""
    return not spec.train.scheduled and spec.train.early_stopping is None and spec.train.init_from is None


def slot_groups(specs: Sequence[ExperimentSpec], n_folds: int) -> list[tuple[TrainSpec, int]]:
    """The optimizer groups of a stacked program whose config c's fold f is slot `c * n_folds + f`: each run of
    consecutive configs with one :func:`optimizer_key`, as (its train section, its slots).

    Examples
    --------
    >>> from kerasflow.tasks.config.schema import ExperimentSpec
    >>> spec = ExperimentSpec.model_validate({"dataset": {"file": "x.csv", "target": "y", "task": "regression"},
    ...     "model": {"layers": [{"type": "dense", "units": 1}]}, "train": {"epochs": 5, "batch_size": 4}})
    >>> configs = [spec.with_overrides({"train.optimizer": name}) for name in ("adam", "adam", "sgd")]
    >>> [(train.optimizer_name, slots) for train, slots in slot_groups(configs, n_folds=3)]
    [('adam', 6), ('sgd', 3)]
    """
    groups: list[tuple[TrainSpec, int]] = []
    for spec in specs:
        if groups and optimizer_key(groups[-1][0]) == optimizer_key(spec.train):
            groups[-1] = (groups[-1][0], groups[-1][1] + n_folds)
        else:
            groups.append((spec.train, n_folds))
    return groups
