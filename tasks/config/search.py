"""The `sweeps:` section: a Ray Tune search over one experiment's keys, its algorithm and each trial's resources."""

from __future__ import annotations

import json
import math
from typing import Literal, get_args

from pydantic import Field, PositiveInt, field_validator, model_validator

from kerasflow.tasks.config.overrides import extremes
from kerasflow.tasks.config.section import AtKey, Section, Seed

Distribution = Literal["grid", "choice", "uniform", "loguniform", "randint"]

ASHA_REDUCTION_FACTOR = 4
"""ASHA keeps the best 1/4 of the trials at each rung (Ray's default, set explicitly: :meth:`SearchSpec.stop_epochs`
reckons the rungs from it)."""


class SearchSpec(Section):
    """A Ray Tune sweep over one experiment: the space, the algorithm, and what each trial may use.

    `space` nests like the experiment (`train: {optimizer: ...}`, `model: {layers[0]: {units: ...}}`), down to
    one distribution per key; `model: {widths: ...}` rewrites the hidden Dense layers' widths (`[[16], [30], [16,
    8]]`). It is held as dotted paths (`train.optimizer`). A distribution is `{grid: [...]}`, `{choice: [...]}`,
    `{uniform: [low, high]}`, `{loguniform: [low, high]}` or `{randint: [low, high]}`.
    """

    space: dict[str, dict[Distribution, list]] = Field(min_length=1)
    algorithm: Literal["grid", "random", "optuna"] = "grid"
    num_samples: PositiveInt = Field(default=1, description="trials drawn (random, optuna); a grid tries each "
                                                            "config once")
    seed: Seed = 0
    scheduler: Literal["fifo", "asha"] = "fifo"
    grace_period: PositiveInt = Field(default=5, description="asha: epochs before a trial may be stopped")
    scoring: Literal["holdout", "kfold"] = Field(default="kfold", description="kfold: the experiment's folds")
    test_size: float = Field(default=0.2, gt=0.0, lt=1.0, description="holdout scoring's held-out share")
    max_concurrent_trials: PositiveInt | None = None
    cpu: float = Field(default=1.0, gt=0.0)
    gpu: float = Field(default=0.0, ge=0.0)
    keep_checkpoints: PositiveInt = 2
    checkpoint_every: PositiveInt | None = Field(default=None, description="epochs; None: at the end only")
    max_failures: int = Field(default=2, ge=0, description="retries of a trial whose process dies")
    shared_storage: bool = Field(default=False, description=(
        "every node mounts the sweep's folders: its storage path, and tracking.tensorboard's folder where set"))
    stack_configs: bool = Field(default=True, description="grid configs that differ only in initializers, hidden "
                                                          "widths, optimizers (and epochs) train as one stacked "
                                                          "program per group (tasks/sweep/groups.py)")

    @field_validator("space", mode="before")
    @classmethod
    def _nested_to_dotted(cls, space: object) -> object:
        """`space` nests as params.yaml does, `{train: {batch_size: {grid: [10, 20]}}}`, so that `dvc exp run -S
        sweeps.<name>.space.train.batch_size.grid=[10,40]` can address it; here it becomes the dotted paths the
        rest of kerasflow uses, `{"train.batch_size": {"grid": [10, 20]}}`. A mapping of mappings nests further,
        unless it names a distribution; any other value is a key's distribution (checked below). Dotted keys (the
        older form) read the same.

        Examples
        --------
        >>> SearchSpec.model_validate({"space": {"train": {"batch_size": {"grid": [10, 20]}},
        ...                                      "model.widths": {"grid": [[4]]}}}).space
        {'train.batch_size': {'grid': [10, 20]}, 'model.widths': {'grid': [[4]]}}
        """
        if not isinstance(space, dict):
            return space
        flat: dict[str, object] = {}

        def walk(prefix: str, node: dict) -> None:
            for key, value in node.items():
                path = f"{prefix}.{key}" if prefix else str(key)
                if (isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values())
                        and not set(value) & set(get_args(Distribution))):
                    walk(path, value)
                else:
                    flat[path] = value

        walk("", space)
        return flat

    @field_validator("space")
    @classmethod
    def _one_distribution_each(cls, space: dict) -> dict:
        for key, dist in space.items():
            if len(dist) != 1:
                raise AtKey(key, f"must have exactly one distribution, one of {', '.join(get_args(Distribution))}. "
                          f"Received: {sorted(dist) or 'none'}")
            (kind, values), = dist.items()
            if not values:
                raise AtKey(f"{key}.{kind}", f"is empty: it needs at least one value. "
                          f"Received: {values!r}")
            if kind in ("uniform", "loguniform", "randint"):
                # YAML reads 1e-3 (no dot) as text: a number written so is taken as the number it spells.
                values = dist[kind] = [_number(v) for v in values]
                if len(values) != 2 or not all(isinstance(v, (int, float)) for v in values) or values[0] >= values[1]:
                    raise AtKey(f"{key}.{kind}", f"must be two numbers, [low, high] with low < high. Received: "
                              f"{values}")
                if kind == "loguniform" and values[0] <= 0:
                    raise AtKey(f"{key}.{kind}", f"needs low > 0. Received: {values}")
            if kind in ("grid", "choice"):
                seen = [json.dumps(_number(v), sort_keys=True) for v in values]
                repeated = sorted({v for v in seen if seen.count(v) > 1})
                if repeated:  # one config twice: the same training twice, under one config id
                    raise AtKey(f"{key}.{kind}", f"lists {', '.join(repeated)} more than once: list each value once. "
                              f"Received: {values}")
        return space

    @model_validator(mode="after")
    def _grid_only_with_grid(self) -> "SearchSpec":
        kinds = self.kinds
        if self.algorithm == "grid" and kinds - {"grid"}:
            sampled = sorted(key for key, dist in self.space.items() if set(dist) - {"grid"})
            raise AtKey("algorithm", f"'grid' tries every value of `grid:` lists, and {', '.join(sampled)} "
                      f"{'is' if len(sampled) == 1 else 'are'} drawn ({', '.join(sorted(kinds - {'grid'}))}): write "
                      f"`grid:` to try each value, or use algorithm 'random'. Received: 'grid'")
        if self.algorithm == "random" and kinds == {"grid"} and self.num_samples > 1:
            raise AtKey("num_samples", f"repeats every config of the grid lists with the same seeds, which trains "
                      f"them the same: with nothing to draw, write `choice:` for the lists (each config is then drawn "
                      f"once). Received: {self.num_samples}")
        if self.algorithm == "optuna" and "grid" in kinds:
            raise AtKey("algorithm", "'optuna' samples its own points: use choice instead of grid. "
                      "Received: 'optuna'")
        if self.gpu > 1 and self.gpu != int(self.gpu):
            raise AtKey("gpu", f"above 1 must be a whole number. Received: {self.gpu}")
        if self.algorithm == "random" and kinds == {"choice"} and self.num_samples > self.n_choice_configs:
            raise AtKey("num_samples", f"draws more configs than the space's {self.n_choice_configs}: a random search "
                      f"over choices only draws each config once (as scikit-learn's RandomizedSearchCV over lists); "
                      f"draw at most {self.n_choice_configs}, or use algorithm 'grid' to try them all. Received: "
                      f"{self.num_samples}")
        if self.algorithm == "grid" and self.num_samples > 1:
            raise AtKey("num_samples", f"repeats every grid config with the same seeds, which trains it the same: "
                      f"to repeat with other seeds, sweep train.seed ({{grid: [0, 1, 2]}}). Received: "
                      f"{self.num_samples}")
        return self

    @property
    def kinds(self) -> set[str]:
        """The distributions the space uses (`{"grid"}`, `{"choice", "uniform"}`)."""
        return {kind for dist in self.space.values() for kind in dist}

    @property
    def n_choice_configs(self) -> int:
        """How many configs a space of `choice` values holds: the product of their counts."""
        return math.prod(len(values) for dist in self.space.values() for values in dist.values())

    def max_epochs(self, epochs: int) -> int:
        """The most epochs a trial trains: the experiment's `epochs`, or the largest value of a swept
        `train.epochs`, ASHA's last rung."""
        swept = self.space.get("train.epochs")
        if swept is None:
            return epochs
        (kind, values), = swept.items()
        return max(int(value) for value in extremes(kind, values))

    def stop_epochs(self, epochs: int) -> set[int]:
        """The epochs (from 1) after which the scheduler may stop a trial of `epochs` epochs: ASHA's rungs, the
        grace period times powers of :data:`ASHA_REDUCTION_FACTOR` (as Ray's `ASHAScheduler` places them); none
        with FIFO."""
        if self.scheduler != "asha" or epochs < self.grace_period:
            return set()
        rungs = int(math.log(epochs / self.grace_period) / math.log(ASHA_REDUCTION_FACTOR) + 1)
        return {self.grace_period * ASHA_REDUCTION_FACTOR ** k for k in range(rungs)}


def _number(value: object) -> object:
    """`value`, or the number a text spells (YAML reads `1e-3`, without a dot, as text).

    Examples
    --------
    >>> _number("1e-3"), _number("adam"), _number(5), _number([1])
    (0.001, 'adam', 5, [1])
    """
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value
