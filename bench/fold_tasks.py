"""Folds of a model that cannot stack on one machine: one after another in this process (kerasflow's default
without a cluster) against one Ray task per fold (`evaluate.parallel: ray`, flows/ray_folds.py), side by side.

Run from the repository root (after `make install` and `kerasflow data`):

    .venv/bin/python bench/fold_tasks.py                 # params.yaml's digits_cnn, 4-fold, 3 epochs
    .venv/bin/python bench/fold_tasks.py --folds 8 --epochs 2

Ray's start (an embedded one, as `kerasflow run` starts it) and its workers' imports are timed in: they are what
the Ray path costs on a machine that has no cluster running. Both paths must give the same scores.
"""

from __future__ import annotations

import argparse
import time

from kerasflow.tasks.config.backend import set_backend_defaults

set_backend_defaults()  # the backends set up as `kerasflow` sets them (tasks/config/backend.py)

import ray  # noqa: E402

from kerasflow.flows.ray_folds import train_folds  # noqa: E402
from kerasflow.tasks.config.schema import load_params  # noqa: E402
from kerasflow.tasks.data.table import load_table  # noqa: E402
from kerasflow.tasks.training.evaluate import cross_validate, encode_labels, prepare_folds  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="digits_cnn")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    spec = load_params("params.yaml").every_experiment[args.experiment].with_overrides({
        "evaluate.method": "kfold", "evaluate.n_splits": args.folds, "evaluate.parallel": "ray",
        "train.epochs": args.epochs})
    table = load_table(spec.dataset)
    folds = prepare_folds(spec, table, encode_labels(spec, table))

    start = time.perf_counter()
    in_turn = cross_validate(spec, folds)
    in_turn_s = time.perf_counter() - start
    start = time.perf_counter()
    on_ray = train_folds(spec, folds)
    on_ray_s = time.perf_counter() - start
    ray.shutdown()

    scores = [result.score for result, _ in on_ray]
    print(f"{args.experiment}: {args.folds} folds x {args.epochs} epochs, {table.n_rows} rows")
    print(f"{'path':<22} {'seconds':>8}  scores")
    print(f"{'in turn (default)':<22} {in_turn_s:8.1f}  {[round(s, 4) for s in in_turn.scores]}")
    print(f"{'Ray tasks, cpu=1':<22} {on_ray_s:8.1f}  {[round(s, 4) for s in scores]}")
    print(f"Ray tasks / in turn: {on_ray_s / in_turn_s:.2f}x; same scores: {scores == in_turn.scores}")


if __name__ == "__main__":
    main()
