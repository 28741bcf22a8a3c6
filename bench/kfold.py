"""10-fold CV of the books' 12-8-1 MLP on the breast-cancer data: the books' loop versus kerasflow.

Run from the repository root (after `make install` and `kerasflow data`):

    .venv/bin/python bench/kfold.py                 # 150 epochs, as the books train it
    .venv/bin/python bench/kfold.py --epochs 30     # a quicker look
    .venv/bin/python bench/kfold.py --jax           # also kerasflow on JAX, against this run's TensorFlow loop
    .venv/bin/python bench/kfold.py --toolbox --only-kerasflow   # SGD+momentum, max-norm, early stopping

All contenders run in this one process, one after another, on the same folds and epochs, so the ratios are
measured side by side; absolute seconds drift between runs on a shared machine. One fold and kerasflow's
cross-validation are timed `--repeats` times, interleaved, and their medians compared: a single timing of a few
seconds moves by a second or more here.

- books_loop: the books' way, `StratifiedKFold` and a fresh `Sequential` fitted per fold (steps_per_execution=1);
- one_fold:   kerasflow's per-model path on a single fold (the unit the moonshot target is stated in);
- kerasflow:  kerasflow's cross-validation, all folds stacked into one program.
- slowest_fold (--toolbox): the fold that trains the most epochs before early stopping ends it, alone. A stacked
  program runs until its last slot stops, so with early stopping its cost is that fold's epochs, not fold 0's:
  10 folds / slowest fold compares programs that train the same number of epochs.
- kerasflow_jax (--jax): the same on the JAX backend, in a child process (a process has one backend), timed
  there after the same warm-up, with one fold on JAX beside it; compared with this run's books' loop on
  TensorFlow, as a user who switches `backend: jax` compares (issue 7's 40x target). Twice: with JAX's
  compilation cache off, so every new model compiles its programs, and with kerasflow's default cache
  (`tasks/config/backend.py`) in a new empty folder, which the warm-up and the first timings fill: then every later
  model of a shape loads its programs, as in any later run of an experiment.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from kerasflow.tasks.config.backend import set_backend_defaults

set_backend_defaults()  # the backends set up as `kerasflow` sets them (tasks/config/backend.py)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from kerasflow.tasks.config.schema import parse_params  # noqa: E402
from kerasflow.tasks.data.table import load_table  # noqa: E402
from kerasflow.tasks.training.evaluate import (  # noqa: E402
    cross_validate,
    encode_labels,
    prepare_folds,
)
from kerasflow.tasks.training.train import fit_fold  # noqa: E402

# The books' grid over this experiment (bench/sweep.py, bench/gpu.py): optimizer x initializer x batch size.
OPTIMIZERS = ["rmsprop", "adam"]
INITIALIZERS = ["glorot_uniform", "random_normal", "random_uniform"]
BATCH_SIZES = [10, 20]
BOOKS_GRID = {"train.optimizer": {"grid": OPTIMIZERS}, "model.initializer": {"grid": INITIALIZERS},
              "train.batch_size": {"grid": BATCH_SIZES}}
"""The grid as a sweep's `space:`."""
# The books' full grid (bench/sweep.py --books-grid, bench/gpu.py): the same x batch size x epochs, 54 configs.
FULL_BATCH_SIZES = [5, 10, 20]
FULL_EPOCHS = [10, 20, 30]
FULL_GRID = {**BOOKS_GRID, "train.batch_size": {"grid": FULL_BATCH_SIZES}, "train.epochs": {"grid": FULL_EPOCHS}}
"""The full grid as a sweep's `space:`."""


def experiment_params(epochs: int, n_splits: int, toolbox: bool = False) -> dict:
    """The books' 12-8-1 MLP on the breast-cancer data, stratified k-fold, as a params.yaml mapping; with `toolbox`,
    trained with the books' toolbox: SGD with momentum, max-norm hidden layers, and early stopping on the loss of
    each fold's validation split (20% of its training rows, drawn stratified; patience 10, best weights kept), so
    that folds stop on epochs of their own."""
    constraint = {"kernel_constraint": {"name": "max_norm", "max_value": 3}} if toolbox else {}
    train = {"optimizer": "adam", "epochs": epochs, "batch_size": 10, "seed": 7}
    if toolbox:
        train.update(optimizer={"name": "sgd", "learning_rate": 0.01, "momentum": 0.9}, validation_split=0.2,
                     early_stopping={"monitor": "val_loss", "patience": 10, "restore_best_weights": True})
    return {"experiments": {"cancer": {
        "dataset": {"file": "data/breast_cancer.csv", "target": "benign", "task": "binary"},
        "preprocess": {"scale": "standard"},
        "model": {"layers": [{"type": "dense", "units": 12, "activation": "relu", **constraint},
                             {"type": "dense", "units": 8, "activation": "relu", **constraint},
                             {"type": "dense", "units": 1, "activation": "sigmoid"}]},
        "train": train,
        "evaluate": {"n_splits": n_splits, "stratify": True, "seed": 7},
    }}, "continued": {}, "sweeps": {}}


def experiment(epochs: int, n_splits: int, toolbox: bool = False):
    return parse_params(experiment_params(epochs, n_splits, toolbox)).experiments["cancer"]


def prepared(epochs: int, n_splits: int, toolbox: bool = False):
    """The spec, table and preprocessed folds every contender shares, after a warm-up fit."""
    spec = experiment(epochs, n_splits, toolbox)
    table = load_table(spec.dataset)
    folds = prepare_folds(spec, table, encode_labels(spec, table))
    fit_fold(experiment(1, n_splits, toolbox), folds[0], 0)  # warm-up: first-call tracing is not what we compare
    return spec, table, folds


def books_loop(folds, epochs: int) -> list[float]:
    """What the books do: a new model per fold, compiled and fitted with Keras defaults."""
    scores = []
    keras.utils.set_random_seed(7)
    for fold in folds:
        model = keras.Sequential([keras.Input((fold.X_train.shape[1],)),
                                  keras.layers.Dense(12, activation="relu"),
                                  keras.layers.Dense(8, activation="relu"),
                                  keras.layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
        model.fit(fold.X_train, fold.y_train, epochs=epochs, batch_size=10, verbose=0)
        scores.append(model.evaluate(fold.X_test, fold.y_test, verbose=0)[1])
    return scores


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def interleaved(fns: dict, repeats: int) -> dict:
    """Each of `fns` timed `repeats` times, taking turns: name -> (median seconds, the last value)."""
    seconds: dict = {name: [] for name in fns}
    values: dict = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            took, values[name] = timed(fn)
            seconds[name].append(took)
    return {name: (float(np.median(seconds[name])), values[name]) for name in fns}


def on_jax(epochs: int, n_splits: int, repeats: int, cache: bool) -> dict:
    """kerasflow's cross-validation and one fold timed in a child process on the JAX backend, with JAX's compilation
    cache in a new empty folder or off: their median seconds and the cross-validation's scores."""
    with tempfile.TemporaryDirectory(prefix="kerasflow-jax-cache-") as folder:
        setting = {"JAX_ENABLE_COMPILATION_CACHE": "true" if cache else "false", "JAX_COMPILATION_CACHE_DIR": folder}
        child = subprocess.run([sys.executable, __file__, "--epochs", str(epochs), "--folds", str(n_splits),
                                "--repeats", str(repeats), "--only-kerasflow"],
                               env={**os.environ, "KERAS_BACKEND": "jax", **setting},
                               capture_output=True, text=True, check=True)
    return json.loads(child.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5, help="timings of one fold and of kerasflow, interleaved")
    parser.add_argument("--jax", action="store_true", help="also time kerasflow on JAX, in a child process")
    parser.add_argument("--toolbox", action="store_true",
                        help="SGD with momentum, max-norm layers and early stopping (each fold stops on its own)")
    parser.add_argument("--only-kerasflow", action="store_true",
                        help="time kerasflow's cross-validation and one fold only, as JSON (what --jax runs)")
    args = parser.parse_args()

    spec, table, folds = prepared(args.epochs, args.folds, args.toolbox)  # the same folds for every contender
    ours_and_one_fold = {"one_fold": lambda: fit_fold(spec, folds[0], 0),
                         "kerasflow": lambda: cross_validate(spec, folds)}
    if args.toolbox:
        slowest = int(np.argmax(cross_validate(spec, folds).epochs_run))
        ours_and_one_fold["slowest_fold"] = lambda: fit_fold(spec, folds[slowest], slowest)
    if args.only_kerasflow:
        medians = interleaved(ours_and_one_fold, args.repeats)
        (one_s, _), (seconds, result) = medians["one_fold"], medians["kerasflow"]
        slowest_s = medians["slowest_fold"][0] if args.toolbox else None
        print(json.dumps({"backend": keras.backend.backend(), "seconds": seconds, "scores": result.scores,
                          "one_fold_seconds": one_s, "stacked": result.stacked, "epochs_run": result.epochs_run,
                          "ratio": round(seconds / one_s, 2),
                          **({"slowest_fold_seconds": slowest_s, "ratio_to_slowest_fold": round(seconds / slowest_s, 2)}
                             if args.toolbox else {})}))
        return

    books_s, books_scores = timed(lambda: books_loop(folds, args.epochs))
    medians = interleaved(ours_and_one_fold, args.repeats)
    (one_s, one), (ours_s, ours) = medians["one_fold"], medians["kerasflow"]

    print(f"backend={keras.backend.backend()} epochs={args.epochs} folds={args.folds} rows={table.n_rows} "
          f"(one_fold and kerasflow: medians of {args.repeats})")
    print(f"{'contender':<12} {'seconds':>8} {'mean acc':>9} {'std':>7}")
    print(f"{'books_loop':<12} {books_s:8.1f} {np.mean(books_scores):9.4f} {np.std(books_scores):7.4f}")
    print(f"{'one_fold':<12} {one_s:8.1f} {one.score:9.4f} {'':>7}")
    print(f"{'kerasflow':<12} {ours_s:8.1f} {np.mean(ours.scores):9.4f} {np.std(ours.scores):7.4f}"
          f"   (stacked={ours.stacked})")
    print(f"speed-up over books_loop: {books_s / ours_s:.2f}x   "
          f"kerasflow {args.folds}-fold / one fold: {ours_s / one_s:.2f}x")
    if args.toolbox:
        slowest_s = medians["slowest_fold"][0]
        print(f"kerasflow {args.folds}-fold / the slowest fold alone: {ours_s / slowest_s:.2f}x "
              f"(epochs run per fold: {ours.epochs_run})")
    if args.jax:
        for cache in (False, True):
            jax = on_jax(args.epochs, args.folds, args.repeats, cache)
            print(f"{'kerasflow_jax':<12} {jax['seconds']:8.2f} {np.mean(jax['scores']):9.4f} "
                  f"{np.std(jax['scores']):7.4f}   (backend={jax['backend']}, child process, "
                  f"compilation cache {'on' if cache else 'off'})")
            print(f"speed-up of kerasflow on JAX over books_loop on {keras.backend.backend()}: "
                  f"{books_s / jax['seconds']:.2f}x   on JAX, {args.folds}-fold / one fold "
                  f"({jax['one_fold_seconds']:.2f} s): {jax['seconds'] / jax['one_fold_seconds']:.2f}x")


if __name__ == "__main__":
    main()
