"""The books' grid, 3-fold CV per config, on the breast-cancer data: scikit-learn's GridSearchCV over scikeras
(n_jobs=1, the books' way) and Keras Tuner's GridSearch versus kerasflow.

Run from the repository root (after `make install`, `kerasflow data` and `pip install -e .[bench]`):

    .venv/bin/python bench/sweep.py               # 12 configs x 3 folds x 30 epochs, every contender
    .venv/bin/python bench/sweep.py --epochs 1 --contenders keras_tuner   # a quick look at one contender
    .venv/bin/python bench/sweep.py --books-grid  # the books' full grid: 54 configs x 3 folds x 10/20/30 epochs
    .venv/bin/python bench/sweep.py --warm        # kerasflow on a Ray kept running, its warm trainers filled first

Two grids (a `Grid`, passed to every contender; every combination of its values is a config):

- the default, 12 configs: optimizer {rmsprop, adam} x initializer {glorot_uniform, random_normal, random_uniform}
  x batch size {10, 20}, every config trained `--epochs` epochs (30 unless told);
- `--books-grid`, the books' full grid of 54 configs: the same optimizers and initializers x epochs {10, 20, 30}
  x batch size {5, 10, 20}. The epochs are a grid dimension on every side (kerasflow's sweep `space` has
  `train.epochs`, GridSearchCV's param grid `model__epochs`, the Keras Tuner hypermodel `hp.Choice("epochs")`),
  and `--epochs` is ignored; the experiment's own `train.epochs` is 30.

The contenders run in this one process, one after another, on the same configs, the same stratified folds
(StratifiedKFold(3, shuffle=True, random_state=7) on the same row order), the same per-fold StandardScaler
and the same epochs, so the ratios are measured side by side.

- kerasflow:    the Ray Tune sweep `kerasflow tune` runs: the configs of one batch size (every optimizer,
                initializer and epoch count) with their folds as one stacked program, one Ray trial each (2 trials
                on the default grid, 3 on the books' grid, 2 at a time on 2 cores; the run prints how many); Ray's
                start-up, the workers' imports and the refit of the best config included; Prefect's server is
                left out of all three;
- gridsearchcv: `GridSearchCV(Pipeline([StandardScaler, KerasClassifier]), cv=folds, n_jobs=1)`;
- keras_tuner:  `keras_tuner.GridSearch` over a `HyperModel` whose `fit()` takes the batch size (and on the books'
                grid the epochs) as tuned hyperparameters and scores each config by the 3 folds (Keras Tuner has
                no cross-validation of its own: the folds loop inside `fit()`, a fresh model per fold, and
                `run_trial` is overridden to one call of it, as its docs show); the objective is the mean held-out
                accuracy. Its trial bookkeeping goes to a temporary directory.

`rel. time` is a contender's seconds over kerasflow's: kerasflow's speed-up over it. Targets: on the default grid,
issue 7's >= 5x; on the books' grid, issue 24's: kerasflow >= 25x faster than each peer, with the same best
score within a row, i.e. within one held-out row's accuracy (1/190: 569 rows in 3 folds).
`kerasflow's seconds` splits kerasflow's time after loading the data: Ray's start, the Tuner until its first trial
began (trial processes starting and importing Ray Tune), the trials (a trial that trains in its own process
imports Keras first, a warm trainer has it imported), the Tuner after the last one, the refit and the files.

`--warm` starts a Ray here as the README shows (`ray start --head` on 127.0.0.1, token authentication on), runs
kerasflow's sweep once against it to start its warm trainers (flows/warm_trainers.py; that sweep's split is
printed too), then the timed one, joined anew as a new command joins; `ray stop` at the end. Without it kerasflow
starts an embedded Ray, as with no `RAY_ADDRESS`. Either way kerasflow's Ray is shut down before the peers run.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, Iterator

from kerasflow.tasks.config.backend import set_backend_defaults

set_backend_defaults()  # the backends set up as `kerasflow` sets them (tasks/config/backend.py)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray on 127.0.0.1 only, as in the tests
if "--warm" in sys.argv:  # Ray reads its authentication settings once, when imported: the kept-running Ray's here
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16))

import keras  # noqa: E402
import keras_tuner as kt  # noqa: E402
import numpy as np  # noqa: E402
import ray  # noqa: E402
from kfold import BATCH_SIZES, FULL_BATCH_SIZES, FULL_EPOCHS, INITIALIZERS, OPTIMIZERS, experiment_params  # noqa: E402
from ray import tune  # noqa: E402
from scikeras.wrappers import KerasClassifier  # noqa: E402
from sklearn.model_selection import GridSearchCV, StratifiedKFold  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from kerasflow.flows.pipeline import load_data  # noqa: E402
from kerasflow.flows.ray_cluster import connect  # noqa: E402
from kerasflow.flows.sweep import export_best, run_sweep  # noqa: E402
from kerasflow.tasks.config.schema import parse_params  # noqa: E402
from kerasflow.tasks.data.table import load_table  # noqa: E402


@dataclass(frozen=True)
class Grid:
    """A grid of the books' MLP: every combination of its values is a config. One `epochs` value is fixed, every
    config trains that long; more are a grid dimension, tuned on every side."""

    optimizers: tuple[str, ...]
    initializers: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    epochs: tuple[int, ...]

    @property
    def size(self) -> int:
        return len(self.optimizers) * len(self.initializers) * len(self.batch_sizes) * len(self.epochs)

    @property
    def tunes_epochs(self) -> bool:
        return len(self.epochs) > 1

    @property
    def max_epochs(self) -> int:
        """The experiment's own `train.epochs` (and KerasClassifier's): every config's when they are fixed."""
        return max(self.epochs)

    @property
    def epochs_label(self) -> str:
        return "/".join(str(e) for e in self.epochs)

    def space(self) -> dict[str, dict[str, list]]:
        """The grid as a sweep's `space:`."""
        space: dict[str, dict[str, list]] = {"train.optimizer": {"grid": list(self.optimizers)},
                                             "model.initializer": {"grid": list(self.initializers)},
                                             "train.batch_size": {"grid": list(self.batch_sizes)}}
        if self.tunes_epochs:
            space["train.epochs"] = {"grid": list(self.epochs)}
        return space

    def param_grid(self) -> dict[str, list]:
        """The grid as GridSearchCV's `param_grid` over `Pipeline([("scale", ...), ("model", KerasClassifier)])`."""
        grid: dict[str, list] = {"model__model__init": list(self.initializers),
                                 "model__optimizer": list(self.optimizers),
                                 "model__batch_size": list(self.batch_sizes)}
        if self.tunes_epochs:
            grid["model__epochs"] = list(self.epochs)
        return grid


def default_grid(epochs: int) -> Grid:
    """The 12-config grid (bench/kfold.py's, also bench/gpu.py's), every config trained `epochs` epochs."""
    return Grid(tuple(OPTIMIZERS), tuple(INITIALIZERS), tuple(BATCH_SIZES), (epochs,))


BOOKS_GRID = Grid(tuple(OPTIMIZERS), tuple(INITIALIZERS), tuple(FULL_BATCH_SIZES), tuple(FULL_EPOCHS))
"""The books' full grid: 2 optimizers x 3 initializers x 3 batch sizes x 3 epochs, 54 configs."""


def params(grid: Grid) -> dict:
    """bench/kfold.py's experiment, 3-fold, with the grid as its sweep."""
    raw = experiment_params(grid.max_epochs, n_splits=3)
    raw["sweeps"] = {"cancer": {"space": grid.space(), "scoring": "kfold", "cpu": 1, "keep_checkpoints": 1}}
    return raw


def books_model(init: str = "glorot_uniform", optimizer: str = "adam") -> keras.Model:
    """The books' create_model(): the 12-8-1 network, the initializer on every layer."""
    model = keras.Sequential([keras.Input((30,)),
                              keras.layers.Dense(12, activation="relu", kernel_initializer=init),
                              keras.layers.Dense(8, activation="relu", kernel_initializer=init),
                              keras.layers.Dense(1, activation="sigmoid", kernel_initializer=init)])
    model.compile(optimizer=optimizer, loss="binary_crossentropy", metrics=["accuracy"])
    return model


def gridsearchcv(X: np.ndarray, y: np.ndarray, grid: Grid) -> tuple[float, dict, int]:
    """GridSearchCV's best mean held-out accuracy, its best params and how many configs it scored."""
    keras.utils.set_random_seed(7)
    pipeline = Pipeline([("scale", StandardScaler()),
                         ("model", KerasClassifier(model=books_model, epochs=grid.max_epochs, verbose=0,
                                                   init="glorot_uniform", optimizer="adam"))])
    search = GridSearchCV(pipeline, grid.param_grid(), cv=StratifiedKFold(3, shuffle=True, random_state=7),
                          n_jobs=1)
    search.fit(X, y)
    return float(search.best_score_), search.best_params_, len(search.cv_results_["params"])


class BooksHyperModel(kt.HyperModel):
    """A books' grid as a Keras Tuner hypermodel: `build()` takes optimizer and initializer, `fit()` the batch
    size (and the epochs, where the grid tunes them), and `fit()` scores a config by the mean held-out accuracy
    over the folds (a fresh model per fold)."""

    def __init__(self, grid: Grid) -> None:
        super().__init__()
        self.grid = grid

    def declare_hyperparameters(self, hp: kt.HyperParameters) -> None:
        # Declared up front so the grid oracle enumerates every config, the ones used in fit included.
        hp.Choice("optimizer", list(self.grid.optimizers))
        hp.Choice("init", list(self.grid.initializers))
        hp.Choice("batch_size", list(self.grid.batch_sizes))
        self.epochs(hp)

    def epochs(self, hp: kt.HyperParameters) -> int:
        """The config's epochs: a tuned hyperparameter where the grid has several, else the grid's one."""
        return hp.Choice("epochs", list(self.grid.epochs)) if self.grid.tunes_epochs else self.grid.epochs[0]

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        return books_model(init=hp.Choice("init", list(self.grid.initializers)),
                           optimizer=hp.Choice("optimizer", list(self.grid.optimizers)))

    def fit(self, hp: kt.HyperParameters, model: keras.Model, folds: list, verbose: int = 0) -> dict:
        scores = []
        for i, (X_train, y_train, X_test, y_test) in enumerate(folds):
            fold_model = model if i == 0 else self.build(hp)
            fold_model.fit(X_train, y_train, epochs=self.epochs(hp),
                           batch_size=hp.Choice("batch_size", list(self.grid.batch_sizes)), verbose=verbose)
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


def keras_tuner_search(X: np.ndarray, y: np.ndarray, grid: Grid) -> tuple[float, dict, int]:
    """Keras Tuner's best mean held-out accuracy, its best params and how many distinct configs it tried."""
    keras.utils.set_random_seed(7)
    folds = []
    for train, test in StratifiedKFold(3, shuffle=True, random_state=7).split(X, y):
        scaler = StandardScaler().fit(X[train])
        folds.append((scaler.transform(X[train]), y[train], scaler.transform(X[test]), y[test]))
    with TemporaryDirectory() as out:
        tuner = CVGridSearch(BooksHyperModel(grid), objective=kt.Objective("val_accuracy", direction="max"), seed=7,
                             overwrite=True, directory=out, project_name="books_grid")
        tuner.search(folds, verbose=0)
        best = tuner.oracle.get_best_trials(1)[0]
        configs = {tuple(sorted(trial.hyperparameters.values.items())) for trial in tuner.oracle.trials.values()}
        return float(best.score), dict(best.hyperparameters.values), len(configs)


def kerasflow_sweep(grid: Grid) -> tuple[dict, dict[str, float], tune.ResultGrid]:
    """The sweep's best.json; where its time after loading the data went: Ray's start, the Tuner until its first
    trial began (trial processes starting and importing Ray Tune), from then until the last trial ended (trials
    that reported nothing left out), and the rest (the refit of the best config on all rows, the files); and the
    sweep's ResultGrid (a Ray Tune trial, i.e. a stacked program, per result)."""
    raw = params(grid)
    parsed = parse_params(raw)
    spec, sweep = parsed.experiments["cancer"], parsed.sweeps["cancer"]
    with TemporaryDirectory() as out:
        table, labels = load_data.fn("cancer", spec)
        start = time.perf_counter()
        connect()  # run_sweep's own call then finds Ray running
        tuner_start, tuner_start_wall = time.perf_counter(), time.time()
        results = run_sweep.fn("cancer", spec, sweep, table, labels, Path(out), False)
        tuner_end = time.perf_counter()
        best = export_best.fn("cancer", spec, sweep, results, table, labels, Path(out))
        end = time.perf_counter()
    ray.shutdown()
    trials = [result.metrics for result in results if (result.metrics or {}).get("started_at") is not None]
    first = min(m["started_at"] for m in trials) - tuner_start_wall
    last = max(m["started_at"] + m["trial_seconds"] for m in trials) - tuner_start_wall
    return best, {"ray.init": tuner_start - start, "to first trial": first, "trials": last - first,
                  "Tuner's end": tuner_end - tuner_start - last, "refit and files": end - tuner_end}, results


CONTENDERS = ("kerasflow", "gridsearchcv", "keras_tuner")


@contextmanager
def ray_kept_running() -> Iterator[None]:
    """A Ray started as the README shows, kept running on 127.0.0.1 while the block runs, with the token set for
    `--warm`; joined through `RAY_ADDRESS`; `ray stop` after."""
    ray_cli, port = os.path.join(os.path.dirname(sys.executable), "ray"), 6391
    subprocess.run([ray_cli, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                    "--include-dashboard=false", "--disable-usage-stats"], check=True, capture_output=True)
    os.environ["RAY_ADDRESS"] = f"127.0.0.1:{port}"
    try:
        yield
    finally:
        subprocess.run([ray_cli, "stop"], check=True, capture_output=True)
        del os.environ["RAY_ADDRESS"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30,
                        help="epochs of every config of the 12-config grid (default: 30); ignored with --books-grid")
    parser.add_argument("--books-grid", action="store_true",
                        help="the books' full grid instead: optimizer x initializer x epochs {10, 20, 30} x batch "
                             "size {5, 10, 20}, 54 configs (issue 24's target: >= 25x each peer, same best score "
                             "within one held-out row)")
    parser.add_argument("--warm", action="store_true",
                        help="kerasflow on a Ray kept running here, its warm trainers started by an untimed sweep")
    parser.add_argument("--contenders", default=",".join(CONTENDERS),
                        help=f"comma-separated subset of {','.join(CONTENDERS)} (default: all)")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.contenders.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(CONTENDERS))
    if unknown:
        parser.error(f"`--contenders`: unknown {', '.join(unknown)}. Allowed: {', '.join(CONTENDERS)}")
    grid = BOOKS_GRID if args.books_grid else default_grid(args.epochs)

    table = load_table(parse_params(params(grid)).experiments["cancer"].dataset)
    X, y = table.X.to_numpy(np.float32), table.y.to_numpy()

    results: dict[str, tuple[float, float, Any]] = {}  # name -> (seconds, best score, best params)
    tried: dict[str, int] = {}  # peer -> distinct configs it scored
    if "kerasflow" in chosen:
        with ray_kept_running() if args.warm else nullcontext():
            if args.warm:
                start = time.perf_counter()
                _, warming, _ = kerasflow_sweep(grid)
                print(f"kerasflow's sweep that started the warm trainers: {time.perf_counter() - start:.1f} s; "
                      + ", ".join(f"{step} {seconds:.1f}" for step, seconds in warming.items()))
            start = time.perf_counter()
            ours, split, ours_grid = kerasflow_sweep(grid)
            results["kerasflow"] = (time.perf_counter() - start, ours["score"], ours["params"])
    if "gridsearchcv" in chosen:
        start = time.perf_counter()
        books_score, books_params, tried["gridsearchcv"] = gridsearchcv(X, y, grid)
        results["gridsearchcv"] = (time.perf_counter() - start, books_score, books_params)
    if "keras_tuner" in chosen:
        start = time.perf_counter()
        kt_score, kt_params, tried["keras_tuner"] = keras_tuner_search(X, y, grid)
        results["keras_tuner"] = (time.perf_counter() - start, kt_score, kt_params)

    n = grid.size
    for name, count in tried.items():
        if count != n:
            print(f"warning: {name} tried {count} distinct configs, not the grid's {n}")
    print(f"{n} configs x 3 folds x {grid.epochs_label} epochs, {len(y)} rows, backend={keras.backend.backend()}, "
          f"{os.cpu_count()} cores")
    print(f"{'contender':<13} {'seconds':>8} {'best acc':>9} {'rel. time':>10}  best params")
    ours_s = results["kerasflow"][0] if "kerasflow" in results else None
    for name, (seconds, best, best_params) in results.items():
        ratio = f"{seconds / ours_s:9.2f}x" if ours_s else f"{'-':>10}"
        print(f"{name:<13} {seconds:8.1f} {best:9.4f} {ratio}  {best_params}")
    if ours_s:
        print(f"kerasflow ran {n} configs as {len(ours_grid)} programs (Ray Tune trials)")
        print(f"kerasflow's Ray: {'kept running, warm trainers' if args.warm else 'embedded, started by the sweep'}")
        print("kerasflow's seconds: " + ", ".join(f"{step} {seconds:.1f}" for step, seconds in split.items()))
        print(f"Ray's start plus the first trial: {split['ray.init'] + split['to first trial']:.1f} s (issue 24's "
              f"target: <= {3 if args.warm else 8} s)")
        for name in ("gridsearchcv", "keras_tuner"):
            if name in results:
                print(f"speed-up over {name}: {results[name][0] / ours_s:.2f}x   "
                      f"best-score difference: {results['kerasflow'][1] - results[name][1]:+.4f}")
        if args.books_grid:
            print("issue 24's target: >= 25x over each peer, best-score difference within one held-out row "
                  f"(1/190 = {1 / 190:.4f})")


if __name__ == "__main__":
    main()
