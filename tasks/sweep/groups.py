"""Which configs of a sweep train together, and how a trial scores them."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from dataclasses import dataclass
from typing import Any

from kerasflow.tasks.config.schema import CLASS_TASKS, CosineSchedule, ExperimentSpec
from kerasflow.tasks.config.search import SearchSpec
from kerasflow.tasks.training.evaluate import (
    uses_stacking,
)
from kerasflow.tasks.training.slot_optimizers import optimizer_key
from kerasflow.tasks.training.stacked import stack_key

GROUP = "configs"
"""The key of a trial's config that holds a stacked group's configs (see :func:`stacked_groups`)."""


def scoring_spec(spec: ExperimentSpec, sweep: SearchSpec) -> ExperimentSpec:
    """The experiment as a trial scores it: its own folds, or one hold-out split (no refit either way)."""
    if sweep.scoring == "kfold":
        evaluate = spec.evaluate.model_copy(update={"refit": False})
    else:
        evaluate = spec.evaluate.model_copy(update={
            "method": "holdout", "test_size": sweep.test_size, "n_repeats": 1, "refit": False,
            "shuffle": spec.evaluate.shuffle,
            # A classification's hold-out keeps its classes' shares, as GridSearchCV's folds; a multilabel task's
            # where its own folds are stratified.
            "stratify": spec.evaluate.shuffle and (spec.dataset.task in CLASS_TASKS or spec.evaluate.stratify)})
    return spec.model_copy(update={"evaluate": evaluate})


def stacked_groups(spec: ExperimentSpec, sweep: SearchSpec) -> list[list[dict[str, Any]]] | None:
    """The grid's configs in groups that each train as one stacked program, or None where they cannot.

    Configs group when they differ only in their Dense layers' initializers and hidden widths and in their
    optimizers (:func:`kerasflow.tasks.training.stacked.stack_key`), and in `train.epochs` where a training's first
    epochs do not depend on how many follow (:func:`shares_epochs`): the books' optimizer x initializer x batch-size
    grid of 12 is 2 programs (one per batch size) of 6 configs, and with epochs {50, 100, 150} too, 2 of 18.
    Only a grid (the `grid` algorithm, which takes `grid` values alone) with no scheduler stopping trials and k-fold
    scoring groups: a scheduler stops trials, and hold-out scoring exports the best trial's own checkpoint, both
    one config at a time.
    """
    if not sweep.stack_configs or sweep.algorithm != "grid" or sweep.scheduler != "fifo" or sweep.scoring != "kfold":
        return None
    keys = list(sweep.space)
    configs = [dict(zip(keys, values)) for values in itertools.product(*(sweep.space[k]["grid"] for k in keys))]
    groups: dict[str, list[dict[str, Any]]] = {}
    for config in configs:
        trial = scoring_spec(spec.with_overrides(config), sweep)
        # A config that cannot stack (or whose folds do not) keeps a program of its own.
        if not uses_stacking(trial, n_models=2):
            key = json.dumps(config, sort_keys=True)
        elif shares_epochs(trial):
            key = stack_key(trial.with_overrides({"train.epochs": 1}))
        else:
            key = stack_key(trial)
        groups.setdefault(key, []).append(config)
    return list(groups.values())


def shares_epochs(spec: ExperimentSpec) -> bool:
    """Whether the first E epochs of a longer training of `spec` are its E-epoch training, so that configs differing
    only in `train.epochs` can be one training scored at each epoch count: batches are dealt per epoch index
    (`tasks/training/epoch_plan.py`), and learning-rate schedules count steps; early stopping (it may end the
    shorter run otherwise than the longer) and a cosine schedule (its length is the training's) keep them apart."""
    return spec.train.early_stopping is None and not isinstance(spec.train.lr_schedule, CosineSchedule)


@dataclass(frozen=True)
class SharedEpochs:
    """A trial's configs as the models it trains: configs that differ only in `train.epochs` are one model trained
    for the longest of them, config c being model `model_of[c]` scored after `epochs[c]` epochs. Models of one
    optimizer come one after another, so that they are one slot group (`tasks/training/slot_optimizers.py`)."""

    models: list[ExperimentSpec]
    model_of: list[int]
    epochs: list[int]

    @classmethod
    def of(cls, specs: list[ExperimentSpec]) -> SharedEpochs:
        """The models of `specs`, a trial's configs (a group of :func:`stacked_groups`, or one config).

        Examples
        --------
        >>> spec = ExperimentSpec.model_validate({"dataset": {"file": "x.csv", "target": "y", "task": "regression"},
        ...     "model": {"layers": [{"type": "dense", "units": 1}]}, "train": {"epochs": 5, "batch_size": 4}})
        >>> shared = SharedEpochs.of([spec.with_overrides({"train.epochs": e}) for e in (10, 30, 20)])
        >>> [model.train.epochs for model in shared.models], shared.model_of, shared.epochs
        ([30], [0, 0, 0], [10, 30, 20])

        Models of one optimizer are put side by side:

        >>> configs = [{"train.optimizer": optimizer, "model.initializer": initializer} for optimizer, initializer
        ...            in [("adam", "glorot_uniform"), ("sgd", "glorot_uniform"), ("adam", "he_normal")]]
        >>> shared = SharedEpochs.of([spec.with_overrides(config) for config in configs])
        >>> [model.train.optimizer for model in shared.models], shared.model_of
        (['adam', 'adam', 'sgd'], [0, 2, 1])
        """
        longest = max(spec.train.epochs for spec in specs)
        index: dict[str, int] = {}
        models, model_of = [], []
        for spec in specs:
            trained = spec.with_overrides({"train.epochs": longest})
            key = trained.model_dump_json()
            if key not in index:
                index[key] = len(models)
                models.append(trained)
            model_of.append(index[key])
        # Models of one optimizer side by side: each run of them is one slot group with its optimizer.
        first: dict[str, int] = {}
        for model in models:
            first.setdefault(optimizer_key(model.train), len(first))
        order = sorted(range(len(models)), key=lambda i: first[optimizer_key(models[i].train)])
        position = {old: new for new, old in enumerate(order)}
        return cls([models[i] for i in order], [position[m] for m in model_of], [spec.train.epochs for spec in specs])


def drawn_configs(sweep: SearchSpec) -> list[dict[str, Any]] | None:
    """A random search's configs where every value is a `choice`: `num_samples` different ones, drawn with the
    sweep's seed without replacement, as scikit-learn's ParameterSampler draws from lists (a config drawn twice
    would train the same twice). None for other spaces: Ray Tune samples them.

    Examples
    --------
    >>> sweep = SearchSpec.model_validate({"space": {"train.optimizer": {"choice": ["adam", "sgd"]},
    ...     "train.batch_size": {"choice": [8, 16]}}, "algorithm": "random", "num_samples": 4, "seed": 1})
    >>> sorted(tuple(config.values()) for config in drawn_configs(sweep))
    [('adam', 8), ('adam', 16), ('sgd', 8), ('sgd', 16)]
    """
    if sweep.algorithm != "random" or sweep.kinds != {"choice"}:
        return None
    keys = list(sweep.space)
    choices = [sweep.space[key]["choice"] for key in keys]
    configs = []
    # Drawn as indices into the configs' product, which is never built: a space may hold billions.
    for index in random.Random(sweep.seed).sample(range(sweep.n_choice_configs), sweep.num_samples):
        values = []
        for options in reversed(choices):
            index, position = divmod(index, len(options))
            values.append(options[position])
        configs.append(dict(zip(keys, reversed(values))))
    return configs


def config_id(config: dict[str, Any]) -> str:
    """A config's short name, the same wherever and whenever it is tried: the first 8 hex digits of the SHA-1 of
    its params as sorted JSON. It names the config's history folder and its row in trials.csv.

    Examples
    --------
    >>> config_id({"train.optimizer": "adam", "train.batch_size": 10}) == config_id({"train.batch_size": 10,
    ...                                                                              "train.optimizer": "adam"})
    True
    """
    return hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:8]


def trial_configs(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The configs one Ray Tune trial trains: a stacked group's, or the trial's own."""
    return config[GROUP] if GROUP in config else [config]
