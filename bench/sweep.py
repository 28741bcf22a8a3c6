"""The books' grid (optimizer x initializer x batch size, fixed epochs), 3-fold CV per config, on the
breast-cancer data: scikit-learn's GridSearchCV over scikeras (n_jobs=1, the books' way) and Keras Tuner's
GridSearch versus kerasflow.

Run from the repository root (after `make install`, `kerasflow data` and `pip install -e .[bench]`):

    .venv/bin/python bench/sweep.py               # 12 configs x 3 folds x 30 epochs, every contender
    .venv/bin/python bench/sweep.py --epochs 1 --contenders keras_tuner   # a quick look at one contender

The contenders run in this one process, one after another, on the same 12 configs, the same stratified folds
(StratifiedKFold(3, shuffle=True, random_state=7) on the same row order), the same per-fold StandardScaler
and the same epochs, so the ratios are measured side by side.

- kerasflow:    the Ray Tune sweep `kerasflow tune` runs: the 3 initializers of each optimizer and batch size
                with their folds as one stacked program, so 4 Ray trials (2 at a time on 2 cores); Ray's start-up,
                the workers' imports and the refit of the best config included; Prefect's server is left out of
                all three;
- gridsearchcv: `GridSearchCV(Pipeline([StandardScaler, KerasClassifier]), cv=folds, n_jobs=1)`;
- keras_tuner:  `keras_tuner.GridSearch` over a `HyperModel` whose `fit()` takes the batch size as a tuned
                hyperparameter and scores each config by the 3 folds (Keras Tuner has no cross-validation of
                its own: the folds loop inside `fit()`, a fresh model per fold, and `run_trial` is overridden
                to one call of it, as its docs show); the objective is the mean held-out accuracy. Its trial
                bookkeeping goes to a temporary directory.

`rel. time` is a contender's seconds over kerasflow's: kerasflow's speed-up over it (issue 7's target: >= 5x).
`kerasflow's seconds` splits kerasflow's time after loading the data: Ray's start, the Tuner until its first trial
began (trial processes starting and importing kerasflow), the trials, the Tuner after the last one, the refit and
the files.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from kerasflow.tasks.config.backend import set_backend_defaults

set_backend_defaults()  # the backends set up as `kerasflow` sets them (tasks/config/backend.py)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray on 127.0.0.1 only, as in the tests

import keras  # noqa: E402
import keras_tuner as kt  # noqa: E402
import numpy as np  # noqa: E402
from kfold import BATCH_SIZES, BOOKS_GRID, INITIALIZERS, OPTIMIZERS, experiment_params  # noqa: E402
from scikeras.wrappers import KerasClassifier  # noqa: E402
from sklearn.model_selection import GridSearchCV, StratifiedKFold  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from kerasflow.flows.pipeline import load_data  # noqa: E402
from kerasflow.flows.ray_cluster import connect  # noqa: E402
from kerasflow.flows.sweep import export_best, run_sweep  # noqa: E402
from kerasflow.tasks.config.schema import parse_params  # noqa: E402
from kerasflow.tasks.data.table import load_table  # noqa: E402


def params(epochs: int) -> dict:
    """bench/kfold.py's experiment, 3-fold, with the grid as its sweep."""
    raw = experiment_params(epochs, n_splits=3)
    raw["sweeps"] = {"cancer": {"space": BOOKS_GRID, "scoring": "kfold", "cpu": 1, "keep_checkpoints": 1}}
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


class BooksHyperModel(kt.HyperModel):
    """The books' grid as a Keras Tuner hypermodel: `build()` takes optimizer and initializer, `fit()` the batch
    size, and `fit()` scores a config by the mean held-out accuracy over the folds (a fresh model per fold)."""

    def declare_hyperparameters(self, hp: kt.HyperParameters) -> None:
        # Declared up front so the grid oracle enumerates all 12 configs, the batch size (used in fit) included.
        hp.Choice("optimizer", OPTIMIZERS)
        hp.Choice("init", INITIALIZERS)
        hp.Choice("batch_size", BATCH_SIZES)

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        return books_model(init=hp.Choice("init", INITIALIZERS), optimizer=hp.Choice("optimizer", OPTIMIZERS))

    def fit(self, hp: kt.HyperParameters, model: keras.Model, folds: list, epochs: int, verbose: int = 0) -> dict:
        scores = []
        for i, (X_train, y_train, X_test, y_test) in enumerate(folds):
            fold_model = model if i == 0 else self.build(hp)
            fold_model.fit(X_train, y_train, epochs=epochs, batch_size=hp.Choice("batch_size", BATCH_SIZES),
                           verbose=verbose)
            scores.append(fold_model.evaluate(X_test, y_test, verbose=verbose)[1])
        return {"val_accuracy": float(np.mean(scores))}


class CVGridSearch(kt.GridSearch):
    """`GridSearch` whose trial is one cross-validated `fit()`: Keras Tuner's documented `run_trial` override.

    The stock `run_trial` adds a best-epoch checkpoint callback (a cross-validated score has no single best
    epoch) and, on the TensorFlow backend, imports `tensorboard` (not a dependency of `tensorflow-cpu`).
    """

    def run_trial(self, trial, *args, **kwargs) -> dict:
        hp = trial.hyperparameters
        return self.hypermodel.fit(hp, self.hypermodel.build(hp), *args, **kwargs)


def keras_tuner_search(X: np.ndarray, y: np.ndarray, epochs: int) -> tuple[float, dict, int]:
    keras.utils.set_random_seed(7)
    folds = []
    for train, test in StratifiedKFold(3, shuffle=True, random_state=7).split(X, y):
        scaler = StandardScaler().fit(X[train])
        folds.append((scaler.transform(X[train]), y[train], scaler.transform(X[test]), y[test]))
    with TemporaryDirectory() as out:
        tuner = CVGridSearch(BooksHyperModel(), objective=kt.Objective("val_accuracy", direction="max"), seed=7,
                              overwrite=True, directory=out, project_name="books_grid")
        tuner.search(folds, epochs, verbose=0)
        best = tuner.oracle.get_best_trials(1)[0]
        configs = {tuple(sorted(trial.hyperparameters.values.items())) for trial in tuner.oracle.trials.values()}
        return float(best.score), dict(best.hyperparameters.values), len(configs)


def kerasflow_sweep(epochs: int) -> tuple[dict, dict[str, float]]:
    """The sweep's best.json, and where its time after loading the data went: Ray's start, the Tuner until its
    first trial began (trial processes starting and importing kerasflow), from then until the last trial ended
    (trials that reported nothing left out), and the rest (the refit of the best config on all rows, the files)."""
    raw = params(epochs)
    parsed = parse_params(raw)
    spec, sweep = parsed.experiments["cancer"], parsed.sweeps["cancer"]
    with TemporaryDirectory() as out:
        table, labels = load_data.fn("cancer", spec)
        start = time.perf_counter()
        connect()  # run_sweep's own call then finds Ray running
        tuner_start, tuner_start_wall = time.perf_counter(), time.time()
        grid = run_sweep.fn("cancer", spec, sweep, table, labels, Path(out), False)
        tuner_end = time.perf_counter()
        best = export_best.fn("cancer", spec, sweep, grid, table, labels, Path(out))
        end = time.perf_counter()
    trials = [result.metrics for result in grid if (result.metrics or {}).get("started_at") is not None]
    first = min(m["started_at"] for m in trials) - tuner_start_wall
    last = max(m["started_at"] + m["trial_seconds"] for m in trials) - tuner_start_wall
    return best, {"ray.init": tuner_start - start, "to first trial": first, "trials": last - first,
                  "Tuner's end": tuner_end - tuner_start - last, "refit and files": end - tuner_end}


CONTENDERS = ("kerasflow", "gridsearchcv", "keras_tuner")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--contenders", default=",".join(CONTENDERS),
                        help=f"comma-separated subset of {','.join(CONTENDERS)} (default: all)")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.contenders.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(CONTENDERS))
    if unknown:
        parser.error(f"`--contenders`: unknown {', '.join(unknown)}. Allowed: {', '.join(CONTENDERS)}")

    table = load_table(parse_params(params(args.epochs)).experiments["cancer"].dataset)
    X, y = table.X.to_numpy(np.float32), table.y.to_numpy()

    results = {}  # name -> (seconds, best score, best params)
    if "kerasflow" in chosen:
        start = time.perf_counter()
        ours, split = kerasflow_sweep(args.epochs)
        results["kerasflow"] = (time.perf_counter() - start, ours["score"], ours["params"])
    if "gridsearchcv" in chosen:
        start = time.perf_counter()
        books_score, books_params = gridsearchcv(X, y, args.epochs)
        results["gridsearchcv"] = (time.perf_counter() - start, books_score, books_params)
    if "keras_tuner" in chosen:
        start = time.perf_counter()
        kt_score, kt_params, kt_trials = keras_tuner_search(X, y, args.epochs)
        results["keras_tuner"] = (time.perf_counter() - start, kt_score, kt_params)

    n = len(OPTIMIZERS) * len(INITIALIZERS) * len(BATCH_SIZES)
    if "keras_tuner" in results and kt_trials != n:
        print(f"warning: keras_tuner tried {kt_trials} distinct configs, not the grid's {n}")
    print(f"{n} configs x 3 folds x {args.epochs} epochs, {len(y)} rows, backend={keras.backend.backend()}, "
          f"{os.cpu_count()} cores")
    print(f"{'contender':<13} {'seconds':>8} {'best acc':>9} {'rel. time':>10}  best params")
    ours_s = results["kerasflow"][0] if "kerasflow" in results else None
    for name, (seconds, best, best_params) in results.items():
        ratio = f"{seconds / ours_s:9.2f}x" if ours_s else f"{'-':>10}"
        print(f"{name:<13} {seconds:8.1f} {best:9.4f} {ratio}  {best_params}")
    if ours_s:
        print("kerasflow's seconds: " + ", ".join(f"{step} {seconds:.1f}" for step, seconds in split.items()))
        for name in ("gridsearchcv", "keras_tuner"):
            if name in results:
                print(f"speed-up over {name}: {results[name][0] / ours_s:.2f}x   "
                      f"best-score difference: {results['kerasflow'][1] - results[name][1]:+.4f}")


if __name__ == "__main__":
    main()
