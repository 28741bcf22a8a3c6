"""Issue 7's GPU checks, ready for the GPU machine (Keras on JAX and Ray; no TensorFlow, Prefect or DVC there).

Three parts, each measured side by side in this one run:

- epoch:     the digits CNN (params.yaml's `digits_cnn`) and the books' 12-8-1 MLP trained by kerasflow on the
             GPU and on the CPU: bench/backends.py's JAX rows, once as JAX chooses (the GPU where there is one)
             and once with `JAX_PLATFORMS=cpu`, each in its own process; seconds an epoch (median after the
             first) and the CPU's over the GPU's;
- fractions: a sweep of the digits CNN, `--trials` configs of one shape (seeds), at each of `--fractions` of a GPU
             per trial, on one Ray cluster, one Tuner after another (`kerasflow.flows.ray_driver`, as `kerasflow tune`
             runs it, Prefect left out); trials a minute, each fraction's over 1 GPU's, and the share of the sweep's
             wall time its trials spent inside their own code (the rest: Ray, process start, imports). An
             untimed one-trial sweep first puts the CNN's programs into JAX's compilation cache, as any earlier
             run on the machine would have;
- stacked:   bench/sweep.py's grid (optimizer x initializer x batch size: 12 configs of the 12-8-1 MLP, 3-fold
             CV each) at the smallest fraction, stacked (2 trials of 18 models) and one trial per config (12
             trials of 3 stacked folds), side by side; then the books' full grid (`bench/sweep.py --books-grid`:
             the same x epochs {10, 20, 30} x batch size {5, 10, 20}, 54 configs) stacked: 3 trials, one per
             batch size, each scoring its configs at every epoch count of one training run.

On the GPU machine: `bash bench/gpu.sh prepare` here, then `bash bench/gpu.sh run` there (see that script: it
brings Keras, Ray and the data, which the machine lacks, as wheels and files in `.whl/`).

Here, a check of the whole script on the CPU with logical GPUs (Ray schedules the fractions; JAX trains on
the CPU): `KERAS_BACKEND=jax .venv/bin/python bench/gpu.py --fake-gpus 1 --trials 4`.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import yaml

from kerasflow.tasks.config.backend import set_backend_defaults

set_backend_defaults()  # as `kerasflow tune` sets the backends up (tasks/config/backend.py)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray on 127.0.0.1 only, as in the tests

import ray  # noqa: E402
from backends import run_backend  # noqa: E402
from kfold import BOOKS_GRID, FULL_BATCH_SIZES, FULL_EPOCHS, FULL_GRID, experiment_params  # noqa: E402

from kerasflow.flows.ray_cluster import connect  # noqa: E402
from kerasflow.flows.ray_driver import check_cluster, make_tuner  # noqa: E402
from kerasflow.tasks.config.schema import parse_params  # noqa: E402
from kerasflow.tasks.data.table import load_table  # noqa: E402
from kerasflow.tasks.training.evaluate import encode_labels  # noqa: E402

PARTS = ("epoch", "fractions", "stacked")


def epoch_part(epochs: int) -> None:
    """bench/backends.py's JAX rows on the default device and on the CPU, and the CPU's time over the GPU's.

    A child or a row that fails is reported and left out, so that the sweeps after it still run.
    """
    measured = {}
    for device, env in (("default", {}), ("cpu", {"JAX_PLATFORMS": "cpu"})):
        rows, seconds, tail = run_backend("jax", ["mlp", "cnn"], epochs, env=env)
        if tail or not rows:
            print(f"bench/backends.py's JAX child on the {device} device failed:\n{tail or 'no row printed'}")
            return
        platform = rows[0]["versions"].get("device", "?")
        measured[device] = (platform, {(row["model"], row["path"]): row for row in rows})
        print(f"jax on {device} ({platform}): subprocess {seconds:.1f} s")
    (gpu_name, gpu), (cpu_name, cpu) = measured["default"], measured["cpu"]
    if gpu_name != "gpu":
        print(f"warning: JAX found no GPU (its default device is {gpu_name}): both columns are the CPU's")
    print(f"\nseconds an epoch, median of epochs 2-{epochs} (1st: tracing and compilation), "
          f"{os.cpu_count()} CPU cores")
    print(f"{'model':<5} {'path':<18} {'models':>6} {cpu_name + ' s':>9} {gpu_name + ' s':>9} {'1st ' + cpu_name:>9} "
          f"{'1st ' + gpu_name:>9} {'cpu/gpu':>8} {'acc cpu':>8} {'acc gpu':>8}")
    for key, row in gpu.items():
        other = cpu[key]
        failed = [(name, r["error"]) for name, r in ((gpu_name, row), (cpu_name, other)) if "error" in r]
        if failed:
            for name, error in failed:
                print(f"{key[0]:<5} {key[1]:<18} failed on {name}: {error.strip().splitlines()[-1]}")
            continue
        print(f"{key[0]:<5} {key[1]:<18} {row['models_per_step']:6d} {other['epoch_s']:9.4f} {row['epoch_s']:9.4f} "
              f"{other['first_epoch_s']:9.2f} {row['first_epoch_s']:9.2f} {other['epoch_s'] / row['epoch_s']:7.2f}x "
              f"{other['accuracy']:8.4f} {row['accuracy']:8.4f}")


def parsed(name: str, experiment: dict, sweep: dict):
    """The experiment's spec and its sweep's, validated as params.yaml's would be."""
    params = parse_params({"experiments": {name: experiment}, "continued": {}, "sweeps": {name: sweep}})
    return params.experiments[name], params.sweeps[name]


def timed_sweep(name: str, spec, sweep, table, labels) -> dict:
    """One sweep on the connected cluster: its wall time (Ray Tune's, the cluster already up) and what its trials
    report."""
    with TemporaryDirectory(prefix="kerasflow-bench-gpu-") as out:
        storage = Path(out).resolve()
        check_cluster(name, sweep, storage)
        start = time.perf_counter()
        grid = make_tuner(name, spec, sweep, table, labels, storage, resume=False).fit()
        wall = time.perf_counter() - start
    results = [result.metrics or {} for result in grid]
    scores = [score for metrics in results for score in metrics.get("scores") or []]
    resources = ray.cluster_resources()
    fits = [resources.get("CPU", 0) / sweep.cpu] + ([resources.get("GPU", 0) / sweep.gpu] if sweep.gpu else [])
    at_once = max(1, min(int(min(fits)), len(results)))
    trial_seconds = [metrics["trial_seconds"] for metrics in results if "trial_seconds" in metrics]
    return {"wall": wall, "trials": len(results), "configs": len(scores), "errors": len(grid.errors),
            "at_once": at_once, "inside": sum(trial_seconds) / (wall * at_once),
            "best": max(scores) if scores else math.nan,  # accuracy, both experiments
            "trial_s": statistics.median(trial_seconds) if trial_seconds else math.nan}


def fractions_part(fractions: list[float], n_trials: int, epochs: int, cpu: float) -> None:
    """The digits CNN swept over `n_trials` seeds at each fraction of a GPU per trial."""
    experiment = yaml.safe_load(Path("params.yaml").read_text())["experiments"]["digits_cnn"]
    experiment["train"]["epochs"] = epochs
    spec, warm_up = parsed("digits_cnn", experiment, {"space": {"train.seed": {"grid": [0]}}, "gpu": max(fractions),
                                                      "cpu": cpu, "keep_checkpoints": 1})
    table = load_table(spec.dataset)
    labels = encode_labels(spec, table)
    timed_sweep("digits_cnn", spec, warm_up, table, labels)
    rows = []
    for fraction in fractions:
        _, sweep = parsed("digits_cnn", experiment, {"space": {"train.seed": {"grid": list(range(1, n_trials + 1))}},
                                                     "gpu": fraction, "cpu": cpu, "keep_checkpoints": 1})
        rows.append((fraction, timed_sweep("digits_cnn", spec, sweep, table, labels)))
    print(f"\ndigits CNN ({len(table.y)} images), {n_trials} trials of {epochs} epochs (seeds 1-{n_trials}), "
          f"{cpu:g} CPU a trial, JAX's cache warm")
    print(f"{'GPU/trial':>9} {'at once':>7} {'wall s':>7} {'trials/min':>10} {'vs 1st':>7} {'trial s':>8} "
          f"{'in trials':>9} {'errors':>6} {'best acc':>8}")
    base = rows[0][1]["trials"] / rows[0][1]["wall"]
    for fraction, row in rows:
        rate = row["trials"] / row["wall"]
        print(f"{fraction:9g} {row['at_once']:7d} {row['wall']:7.1f} {60 * rate:10.1f} {rate / base:6.2f}x "
              f"{row['trial_s']:8.2f} {row['inside']:9.0%} {row['errors']:6d} {row['best']:8.4f}")


def stacked_part(fraction: float, epochs: int, cpu: float) -> None:
    """bench/sweep.py's grid of 12 MLP configs at `fraction` of a GPU a trial, stacked and one trial per config;
    then the books' full grid of 54, stacked."""
    sweep = {"scoring": "kfold", "gpu": fraction, "cpu": cpu, "keep_checkpoints": 1}
    experiment = experiment_params(epochs, n_splits=3)["experiments"]["cancer"]
    full = experiment_params(max(FULL_EPOCHS), n_splits=3)["experiments"]["cancer"]
    runs = {"stacked": (experiment, {"space": BOOKS_GRID, **sweep, "stack_configs": True}),
            "one per trial": (experiment, {"space": BOOKS_GRID, **sweep, "stack_configs": False}),
            "books' 54, stacked": (full, {"space": FULL_GRID, **sweep, "stack_configs": True})}
    spec, _ = parsed("cancer", experiment, {"space": BOOKS_GRID})
    table = load_table(spec.dataset)
    labels = encode_labels(spec, table)
    rows = {label: timed_sweep("cancer", *parsed("cancer", raw, space), table, labels)
            for label, (raw, space) in runs.items()}
    print(f"\nbench/sweep.py's grid: 12 configs x 3 folds x {epochs} epochs; the books' 54 (epochs "
          f"{FULL_EPOCHS}, batch sizes {FULL_BATCH_SIZES}); {fraction:g} GPU and {cpu:g} CPU a trial")
    print(f"{'configs':<19} {'trials':>6} {'at once':>7} {'wall s':>7} {'configs/min':>11} {'trial s':>8} "
          f"{'in trials':>9} {'errors':>6} {'best acc':>8}")
    for label, row in rows.items():
        print(f"{label:<19} {row['trials']:6d} {row['at_once']:7d} {row['wall']:7.1f} "
              f"{60 * row['configs'] / row['wall']:11.1f} {row['trial_s']:8.2f} {row['inside']:9.0%} "
              f"{row['errors']:6d} {row['best']:8.4f}")
    print(f"stacked: {rows['one per trial']['wall'] / rows['stacked']['wall']:.2f}x the configs a minute of one "
          f"config per trial")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--epochs", type=int, default=10, help="epoch part: epochs a row, the first a warm-up")
    parser.add_argument("--sweep-epochs", type=int, default=3, help="fractions part: epochs a trial (default: 3)")
    parser.add_argument("--grid-epochs", type=int, default=30, help="stacked part: epochs a trial (default: 30, "
                                                                     "bench/sweep.py's)")
    parser.add_argument("--trials", type=int, default=8, help="fractions part: digits CNN trials (default: 8)")
    parser.add_argument("--fractions", default="1,0.5,0.25", help="GPU a trial, comma-separated (default: 1,0.5,0.25)")
    parser.add_argument("--cpu", type=float, default=1.0, help="CPUs a trial (default: 1)")
    parser.add_argument("--fake-gpus", type=int, default=None,
                        help="logical GPUs for the local Ray cluster, to check the script where there is none")
    args = parser.parse_args()
    parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        parser.error(f"`--parts`: unknown or empty: {', '.join(unknown)}. Allowed: {', '.join(PARTS)}")
    fractions = [float(value) for value in args.fractions.split(",")]
    if not fractions or not all(0 < value <= 1 for value in fractions):
        parser.error(f"`--fractions` must be in (0, 1]. Received: {args.fractions}")

    import keras

    print(f"keras {keras.__version__} on {keras.backend.backend()}, ray {ray.__version__}, {os.cpu_count()} CPU cores")
    if "epoch" in parts:
        epoch_part(args.epochs)
    if "fractions" in parts or "stacked" in parts:
        started = time.perf_counter()
        connect(num_gpus=args.fake_gpus)
        resources = ray.cluster_resources()
        print(f"\nray.init {time.perf_counter() - started:.1f} s: {resources.get('CPU', 0):g} CPU, "
              f"{resources.get('GPU', 0):g} GPU" + (" (logical)" if args.fake_gpus else ""))
        if "fractions" in parts:
            fractions_part(fractions, args.trials, args.sweep_epochs, args.cpu)
        if "stacked" in parts:
            stacked_part(min(fractions), args.grid_epochs, args.cpu)
        ray.shutdown()


if __name__ == "__main__":
    main()
