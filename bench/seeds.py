"""How far an experiment's cross-validated score moves with the seeds: the split drawn and the initial weights.

Not a speed benchmark: it measures the spread that a single `kerasflow run` hides, to decide how many folds and
repeats an experiment needs before its mean can be compared with a bar (issue 2: iris_mlp >= 0.95). Run from the
repository root (after `make install` and `kerasflow data`):

    KERAS_BACKEND=jax .venv/bin/python bench/seeds.py iris_mlp --set evaluate.n_repeats=1   # one 10-fold
    KERAS_BACKEND=jax .venv/bin/python bench/seeds.py iris_mlp --train-seeds 1 2             # as shipped: 3 repeats

Each (split seed, train seed) pair is one whole cross-validation of the experiment as params.yaml defines it,
with `evaluate.seed` and `train.seed` replaced (and any `--set KEY=VALUE`, read as YAML). JAX is ~5x faster per
step on these MLPs (BENCHMARKS.md) and scores agree with TensorFlow within noise.
"""

from __future__ import annotations

import argparse
import time

from kerasflow.tasks.config.backend import set_backend_defaults

set_backend_defaults()  # the backends set up as `kerasflow` sets them (tasks/config/backend.py)

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from kerasflow.tasks.config.schema import load_params  # noqa: E402
from kerasflow.tasks.data.table import load_table  # noqa: E402
from kerasflow.tasks.training.evaluate import (  # noqa: E402
    cross_validate,
    encode_labels,
    prepare_folds,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--split-seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5, 7])
    parser.add_argument("--train-seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an override of the experiment, e.g. evaluate.n_repeats=3 (repeatable)")
    args = parser.parse_args()
    overrides = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)}

    base = load_params(args.params).experiments[args.experiment].with_overrides(overrides)
    table = load_table(base.dataset)
    means = np.empty((len(args.split_seeds), len(args.train_seeds)))
    for i, split_seed in enumerate(args.split_seeds):
        for j, train_seed in enumerate(args.train_seeds):
            spec = base.with_overrides({"evaluate.seed": split_seed, "train.seed": train_seed})
            start = time.perf_counter()
            result = cross_validate(spec, prepare_folds(spec, table, encode_labels(spec, table)))
            means[i, j] = np.mean(result.scores)
            print(f"split seed {split_seed:3d}  train seed {train_seed:3d}  {base.metric} {means[i, j]:.4f}  "
                  f"({len(result.scores)} folds, {time.perf_counter() - start:.1f} s)", flush=True)

    print(f"\n{args.experiment} {overrides or ''} over {means.size} runs: mean {means.mean():.4f}, "
          f"sd {means.std():.4f}, min {means.min():.4f}, max {means.max():.4f}")
    for split_seed, row in zip(args.split_seeds, means):
        print(f"  split seed {split_seed:3d}: mean over train seeds {row.mean():.4f}")


if __name__ == "__main__":
    main()
