"""The books' grid (optimizer x initializer x batch size, fixed epochs), 3-fold CV per config, on the
breast-cancer data: scikit-learn's GridSearchCV over scikeras (n_jobs=1, the books' way) versus kerasflow.

Run from the repository root (after `make install`, `kerasflow data` and `pip install -e .[bench]`):

    .venv/bin/python bench/sweep.py               # 12 configs x 3 folds x 30 epochs

Both contenders run in this one process, one after another, on the same 12 configs, the same stratified folds
(StratifiedKFold(3, shuffle=True, random_state=7) on the same row order), the same per-fold StandardScaler
and the same epochs, so the ratio is measured side by side.

- gridsearchcv: `GridSearchCV(Pipeline([StandardScaler, KerasClassifier]), cv=folds, n_jobs=1)`;
- kerasflow:    the Ray Tune sweep `kerasflow tune` runs (2 concurrent trials on 2 cores, folds stacked), Ray's
                start-up and the workers' imports included; Prefect's server is left out of both.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from tempfile import TemporaryDirectory

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from scikeras.wrappers import KerasClassifier  # noqa: E402
from sklearn.model_selection import GridSearchCV, StratifiedKFold  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from flows.pipeline import load_data  # noqa: E402
from flows.sweep import export_best, run_sweep  # noqa: E402
from tasks.data import load_table  # noqa: E402
from tasks.spec import parse_params  # noqa: E402

from kfold import experiment_params  # noqa: E402

OPTIMIZERS = ["rmsprop", "adam"]
INITIALIZERS = ["glorot_uniform", "random_normal", "random_uniform"]
BATCH_SIZES = [10, 20]


def params(epochs: int) -> dict:
    """bench/kfold.py's experiment, 3-fold, with the grid as its sweep."""
    raw = experiment_params(epochs, n_splits=3)
    raw["sweeps"] = {"cancer": {"space": {"train.optimizer": {"grid": OPTIMIZERS},
                                          "model.initializer": {"grid": INITIALIZERS},
                                          "train.batch_size": {"grid": BATCH_SIZES}},
                                "scoring": "kfold", "cpu": 1, "keep_checkpoints": 1}}
    return raw


def books_model(init: str = "glorot_uniform", optimizer: str = "adam") -> keras.Model:
    """The books' create_model(): the 12-8-1 network, the initializer on every layer."""
    model = keras.Sequential([keras.Input((30,)),
                              keras.layers.Dense(12, activation="relu", kernel_initializer=init),
                              keras.layers.Dense(8, activation="relu", kernel_initializer=init),
                              keras.layers.Dense(1, activation="sigmoid", kernel_initializer=init)])
    model.compile(optimizer=optimizer, loss="binary_crossentropy", metrics=["accuracy"])
    return model


def gridsearchcv(X: np.ndarray, y: np.ndarray, epochs: int) -> tuple[float, dict]:
    keras.utils.set_random_seed(7)
    pipeline = Pipeline([("scale", StandardScaler()),
                         ("model", KerasClassifier(model=books_model, epochs=epochs, verbose=0,
                                                   init="glorot_uniform", optimizer="adam"))])
    grid = {"model__model__init": INITIALIZERS, "model__optimizer": OPTIMIZERS, "model__batch_size": BATCH_SIZES}
    search = GridSearchCV(pipeline, grid, cv=StratifiedKFold(3, shuffle=True, random_state=7), n_jobs=1)
    search.fit(X, y)
    return float(search.best_score_), search.best_params_


def kerasflow_sweep(epochs: int) -> dict:
    raw = params(epochs)
    parsed = parse_params(raw)
    spec, sweep = parsed.experiments["cancer"], parsed.sweeps["cancer"]
    with TemporaryDirectory() as out:
        table, labels = load_data.fn("cancer", spec)
        grid = run_sweep.fn("cancer", spec, sweep, table, labels, Path(out), False)
        return export_best.fn("cancer", spec, sweep, grid, table, labels, Path(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()

    table = load_table(parse_params(params(args.epochs)).experiments["cancer"].dataset)
    X, y = table.X.to_numpy(np.float32), table.y.to_numpy()

    start = time.perf_counter()
    ours = kerasflow_sweep(args.epochs)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    books_score, books_params = gridsearchcv(X, y, args.epochs)
    books_s = time.perf_counter() - start

    n = len(OPTIMIZERS) * len(INITIALIZERS) * len(BATCH_SIZES)
    print(f"{n} configs x 3 folds x {args.epochs} epochs, {len(y)} rows, backend={keras.backend.backend()}, "
          f"{os.cpu_count()} cores")
    print(f"{'contender':<13} {'seconds':>8} {'best acc':>9}  best params")
    print(f"{'gridsearchcv':<13} {books_s:8.1f} {books_score:9.4f}  {books_params}")
    print(f"{'kerasflow':<13} {ours_s:8.1f} {ours['score']:9.4f}  {ours['params']}")
    print(f"speed-up: {books_s / ours_s:.2f}x   best-score difference: {ours['score'] - books_score:+.4f}")


if __name__ == "__main__":
    main()
