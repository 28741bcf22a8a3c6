"""How to run k folds in parallel: sequentially in one process, as Ray tasks, through prefect-ray's
RayTaskRunner, or stacked into one program (kerasflow's default).

Run from the repository root (after `make install`, `kerasflow data` and `pip install -e .[bench]`):

    .venv/bin/python bench/folds.py                 # 10 folds of the 12-8-1 MLP, 50 epochs

All four run in this one process on the same folds. Ray's start-up, the workers' imports and (for
prefect-ray) Prefect's temporary server are part of what each way costs, so they are timed in.
"""

from __future__ import annotations

import argparse
import os
import time

from kerasflow.tasks.config.backend import backend_settings, set_backend_defaults

set_backend_defaults()  # the backends set up as `kerasflow` sets them (tasks/config/backend.py)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray on 127.0.0.1 only, as in the tests
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import numpy as np  # noqa: E402
from kfold import prepared  # noqa: E402

from kerasflow.tasks.training.evaluate import cross_validate  # noqa: E402
from kerasflow.tasks.training.train import fit_fold  # noqa: E402


def sequential(spec, folds) -> list[float]:
    return [fit_fold(spec, fold, i).score for i, fold in enumerate(folds)]


def ray_tasks(spec, folds) -> list[float]:
    import ray

    ray.init(address="local", include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": backend_settings()})
    try:
        remote_fit = ray.remote(num_cpus=1)(lambda s, f, i: fit_fold(s, f, i).score)
        spec_ref = ray.put(spec)
        return ray.get([remote_fit.remote(spec_ref, ray.put(fold), i) for i, fold in enumerate(folds)])
    finally:
        ray.shutdown()


def prefect_ray(spec, folds) -> list[float]:
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE
    from prefect_ray import RayTaskRunner

    @task(cache_policy=NO_CACHE)
    def fold_task(index: int, fold) -> float:
        return fit_fold(spec, fold, index).score

    @flow(task_runner=RayTaskRunner(init_kwargs={"include_dashboard": False, "log_to_driver": False}))
    def folds_flow() -> list[float]:
        return [future.result() for future in fold_task.map(range(len(folds)), folds)]

    return folds_flow()


def stacked(spec, folds) -> list[float]:
    return cross_validate(spec, folds).scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--folds", type=int, default=10)
    args = parser.parse_args()

    spec, table, folds = prepared(args.epochs, args.folds)

    print(f"{args.folds} folds x {args.epochs} epochs, 12-8-1 MLP, {table.n_rows} rows, {os.cpu_count()} cores")
    print(f"{'way':<12} {'seconds':>8} {'mean acc':>9}")
    timings = {}
    for name, run in (("sequential", sequential), ("ray_tasks", ray_tasks), ("prefect_ray", prefect_ray),
                      ("stacked", stacked)):
        start = time.perf_counter()
        scores = run(spec, folds)
        timings[name] = time.perf_counter() - start
        print(f"{name:<12} {timings[name]:8.1f} {np.mean(scores):9.4f}", flush=True)
    base = timings["sequential"]
    print("speed-up over sequential: " + ", ".join(f"{k} {base / v:.2f}x" for k, v in timings.items()))


if __name__ == "__main__":
    main()
