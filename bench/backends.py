"""Per-step training time of kerasflow's models under Keras' TensorFlow, JAX and PyTorch backends.

Run from the repository root (after `make install`, `kerasflow data` and `pip install -e .[bench]`):

    .venv/bin/python bench/backends.py                            # 10 epochs, both models, every backend
    .venv/bin/python bench/backends.py --epochs 2 --models mlp    # a quick look
    .venv/bin/python bench/backends.py --backends tensorflow,jax

Keras fixes its backend at `import keras`, so each backend trains in a fresh subprocess of this script
(`KERAS_BACKEND=<backend>`), one backend after another, and this process prints one table. Every row trains on
the same preprocessed data; the first epoch (tracing, compilation) is a warm-up, and `ms/step` is the median
of the other epochs' seconds over the steps per epoch. An epoch's seconds end where Keras' validation pass
would begin; kerasflow scores the held-out rows at each epoch's end itself (`HeldOutScores`, for its history), so
its rows include that scoring, while the bare_keras rows score nothing during training.
TensorFlow is set up as `kerasflow run` sets it (`tasks/config/backend.py`): deterministic kernels on
(`TF_DETERMINISTIC_OPS=1`), oneDNN's custom ops off (`TF_ENABLE_ONEDNN_OPTS=0`); set either in the environment to
measure otherwise.

Models:

- mlp: the books' 12-8-1 MLP on the breast-cancer data (569 rows, 30 features, per-fold StandardScaler),
  batch 10, the stratified 10 folds of bench/kfold.py;
- cnn: params.yaml's `digits_cnn` (Conv 32 5x5 -> MaxPool -> Dropout 0.2 -> Dense 128 -> 10 softmax on
  data/mnist_5k.csv, 5,000 28x28 digits, min-max scaled), its batch size and its stratified 80/20 hold-out.

Paths (rows), per model:

- kerasflow:         `kerasflow.tasks.training.train.fit_fold` on the first fold (kerasflow's per-model path: one
                     compiled call per epoch through `steps_per_execution`, validation in one step);
- kerasflow_stacked: (mlp only) `kerasflow.tasks.training.evaluate.cross_validate` on all 10 folds, stacked into one
                     program (`tasks/training/stacked.py`); one step trains the 10 models; `acc` is the mean over the
                     folds;
- bare_keras:        the same network written directly in Keras, `model.fit` with Keras' defaults
                     (steps_per_execution=1), on the same fold.

`vs tensorflow` is TensorFlow's ms/step over the row's (above 1: faster than TensorFlow) for the same model
and path. A backend whose package is missing is listed as `not installed`; a row that fails shows `failed` and
its traceback is printed after the table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

from kerasflow.tasks.config.backend import backend_settings, set_backend_defaults

BACKENDS = ("tensorflow", "jax", "torch")
MODELS = ("mlp", "cnn")
PATHS = {"mlp": ("kerasflow", "kerasflow_stacked", "bare_keras"), "cnn": ("kerasflow", "bare_keras")}
ROW_MARK = "BACKENDS_ROW "


# --- the child: one backend, in its own process ----------------------------------------------------------------

def child(backend: str, models: list[str], epochs: int) -> None:
    """Train every path of every model under the backend this process was started with; print one JSON row each."""
    set_backend_defaults()  # as `kerasflow run` sets the backends up

    import keras

    if keras.backend.backend() != backend:
        raise SystemExit(f"KERAS_BACKEND={backend} asked, keras runs {keras.backend.backend()}")
    versions = {"keras": keras.__version__, backend: _version(backend)}
    if backend == "jax":
        import jax

        versions["device"] = jax.default_backend()  # "gpu" where JAX found one, unless JAX_PLATFORMS says "cpu"

    for model in models:
        for path in PATHS[model]:
            row = {"backend": backend, "model": model, "path": path, "versions": versions}
            try:
                row.update(MEASURES[(model, path)](epochs))
            except Exception:  # noqa: BLE001 - a failing backend/path is a result to report, not a crash
                row["error"] = traceback.format_exc()
            print(ROW_MARK + json.dumps(row), flush=True)


def _version(module: str) -> str:
    return getattr(__import__(module), "__version__", "?")


def epoch_timer():
    """A Keras callback recording each epoch's seconds, up to Keras' validation pass (kerasflow's own held-out
    scoring, a callback before this one, included)."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []
            self._start = self._stop = None

        def _finished(self) -> float:
            # JAX dispatches asynchronously: the epoch's last step is done once its weights can be read.
            keras.ops.convert_to_numpy(self.model.trainable_variables[-1])
            return time.perf_counter()

        def on_epoch_begin(self, epoch, logs=None):
            self._start, self._stop = time.perf_counter(), None

        def on_test_begin(self, logs=None):
            if self._start is not None and self._stop is None:
                self._stop = self._finished()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append((self._stop or self._finished()) - self._start)
            self._start = None

    return EpochTimer()


def per_step(timer, steps: int, accuracy: float, models_per_step: int = 1) -> dict:
    """ms/step as the median of the epochs after the first (the warm-up); all epochs if there is only one."""
    timed = timer.seconds[1:] or timer.seconds
    epoch_s = statistics.median(timed)
    return {"ms_step": 1000 * epoch_s / steps, "epoch_s": epoch_s, "steps": steps, "timed_epochs": len(timed),
            "first_epoch_s": timer.seconds[0], "accuracy": accuracy, "models_per_step": models_per_step}


def mlp_folds(epochs: int):
    from kfold import experiment

    from kerasflow.tasks.data.table import load_table
    from kerasflow.tasks.training.evaluate import encode_labels, prepare_folds

    spec = experiment(epochs, n_splits=10)
    table = load_table(spec.dataset)
    return spec, prepare_folds(spec, table, encode_labels(spec, table))


def cnn_fold(epochs: int):
    from kerasflow.tasks.config.schema import load_params
    from kerasflow.tasks.data.table import load_table
    from kerasflow.tasks.training.evaluate import encode_labels, prepare_folds

    spec = load_params("params.yaml").experiments["digits_cnn"]
    spec = spec.model_copy(update={"train": spec.train.model_copy(update={"epochs": epochs})})
    table = load_table(spec.dataset)
    return spec, prepare_folds(spec, table, encode_labels(spec, table))[0]


def kerasflow_fold(spec, fold) -> dict:
    from kerasflow.tasks.training.train import fit_fold

    timer = epoch_timer()
    result = fit_fold(spec, fold, 0, callbacks=[timer])
    return per_step(timer, math.ceil(len(fold.X_train) / spec.train.batch_size), result.score)


def mlp_kerasflow(epochs: int) -> dict:
    spec, folds = mlp_folds(epochs)
    return kerasflow_fold(spec, folds[0])


def mlp_kerasflow_stacked(epochs: int) -> dict:
    from kerasflow.tasks.training.evaluate import cross_validate

    spec, folds = mlp_folds(epochs)
    timer = epoch_timer()
    cv = cross_validate(spec, folds, callbacks=[timer])
    if not cv.stacked:
        raise RuntimeError("cross_validate did not stack the folds")
    steps = math.ceil(max(len(fold.X_train) for fold in folds) / spec.train.batch_size)
    return per_step(timer, steps, statistics.fmean(cv.scores), models_per_step=len(folds))


def bare_fit(model, spec, fold, loss: str) -> dict:
    """`model.fit` with Keras' defaults on the fold, scored by `model.evaluate` on its held-out rows."""
    import keras

    model.compile(optimizer=spec.train.optimizer, loss=loss, metrics=["accuracy"])
    keras.utils.set_random_seed(spec.train.seed)
    timer = epoch_timer()
    model.fit(fold.X_train, fold.y_train, batch_size=spec.train.batch_size, epochs=spec.train.epochs,
              callbacks=[timer], verbose=0)
    accuracy = float(model.evaluate(fold.X_test, fold.y_test, verbose=0)[1])
    return per_step(timer, math.ceil(len(fold.X_train) / spec.train.batch_size), accuracy)


def mlp_bare(epochs: int) -> dict:
    import keras

    spec, folds = mlp_folds(epochs)
    keras.utils.set_random_seed(spec.train.seed)
    model = keras.Sequential([keras.Input((folds[0].X_train.shape[1],)),
                              keras.layers.Dense(12, activation="relu"),
                              keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    return bare_fit(model, spec, folds[0], "binary_crossentropy")


def cnn_kerasflow(epochs: int) -> dict:
    return kerasflow_fold(*cnn_fold(epochs))


def cnn_bare(epochs: int) -> dict:
    import keras

    spec, fold = cnn_fold(epochs)
    keras.utils.set_random_seed(spec.train.seed)
    model = keras.Sequential([keras.Input((fold.X_train.shape[1],)),
                              keras.layers.Reshape((28, 28, 1)),
                              keras.layers.Conv2D(32, 5, activation="relu"),
                              keras.layers.MaxPooling2D(2),
                              keras.layers.Dropout(0.2),
                              keras.layers.Flatten(),
                              keras.layers.Dense(128, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    return bare_fit(model, spec, fold, spec.loss)


MEASURES = {("mlp", "kerasflow"): mlp_kerasflow, ("mlp", "kerasflow_stacked"): mlp_kerasflow_stacked,
            ("mlp", "bare_keras"): mlp_bare, ("cnn", "kerasflow"): cnn_kerasflow, ("cnn", "bare_keras"): cnn_bare}


# --- the parent: one subprocess per backend, one table ---------------------------------------------------------

def installed(backend: str) -> bool:
    return importlib.util.find_spec(backend) is not None


def run_backend(backend: str, models: list[str], epochs: int,
                env: dict[str, str] | None = None) -> tuple[list[dict], float, str]:
    """The rows of one backend's subprocess, its wall seconds (imports included) and its stderr's tail; `env`
    adds to the subprocess's environment (bench/gpu.py: `JAX_PLATFORMS=cpu`).

    JAX's compilation cache (on in kerasflow) starts empty, in a folder of this run's: what a first epoch costs
    does not depend on what an earlier run left in the user's cache.
    """
    command = [sys.executable, os.path.abspath(__file__), "--child", backend, "--models", ",".join(models),
               "--epochs", str(epochs)]
    with tempfile.TemporaryDirectory(prefix="kerasflow-bench-jax-") as cache:
        child_env = {**os.environ, **(env or {}), "KERAS_BACKEND": backend, "JAX_COMPILATION_CACHE_DIR": cache}
        start = time.perf_counter()
        done = subprocess.run(command, env=child_env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    rows = [json.loads(line[len(ROW_MARK):]) for line in done.stdout.splitlines() if line.startswith(ROW_MARK)]
    tail = "" if done.returncode == 0 else "\n".join(done.stderr.strip().splitlines()[-25:])
    return rows, seconds, tail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10,
                        help="epochs per row, the first a warm-up (default: 10, digits_cnn's own)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {','.join(MODELS)}")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help=f"comma-separated subset of {','.join(BACKENDS)}")
    parser.add_argument("--child", choices=BACKENDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for flag, chosen, allowed in (("--models", models, MODELS), ("--backends", backends, BACKENDS)):
        unknown = sorted(set(chosen) - set(allowed))
        if unknown or not chosen:
            parser.error(f"`{flag}`: unknown or empty: {', '.join(unknown)}. Allowed: {', '.join(allowed)}")
    if args.epochs < 1:
        parser.error(f"`--epochs` must be >= 1. Received: {args.epochs}")

    if args.child:
        child(args.child, models, args.epochs)
        return

    results: dict[tuple[str, str, str], dict] = {}
    notes = []
    for backend in backends:
        if not installed(backend):
            notes.append(f"{backend}: not installed")
            for model in models:
                for path in PATHS[model]:
                    results[(backend, model, path)] = {"status": "not installed"}
            continue
        rows, seconds, tail = run_backend(backend, models, args.epochs)
        versions = rows[0]["versions"] if rows else {}
        notes.append(f"{backend}: subprocess {seconds:.1f} s, "
                     + ", ".join(f"{k} {v}" for k, v in versions.items()))
        for row in rows:
            results[(backend, row["model"], row["path"])] = row
        for model in models:
            for path in PATHS[model]:
                results.setdefault((backend, model, path), {"status": "failed", "error": tail or "no row printed"})

    settings = {name: value for name, value in backend_settings().items() if name != "JAX_COMPILATION_CACHE_DIR"}
    print(f"per-step training time, {args.epochs} epochs per row (first = warm-up), {os.cpu_count()} cores, "
          + " ".join(f"{name}={value}" for name, value in settings.items())
          + " (JAX's compilation cache: a new empty folder)")
    print(f"{'backend':<11} {'model':<5} {'path':<18} {'ms/step':>8} {'steps':>5} {'epoch s':>8} {'1st ep s':>8} "
          f"{'acc':>7} {'vs tensorflow':>13}")
    failures = []
    for model in models:
        for path in PATHS[model]:
            base = results.get(("tensorflow", model, path), {}).get("ms_step")
            for backend in backends:
                row = results[(backend, model, path)]
                if "error" in row or "ms_step" not in row:
                    status = row.get("status", "failed")
                    print(f"{backend:<11} {model:<5} {path:<18} {status:>8}")
                    if "error" in row:
                        failures.append((backend, model, path, row["error"]))
                    continue
                ratio = f"{base / row['ms_step']:12.2f}x" if base else f"{'-':>13}"
                print(f"{backend:<11} {model:<5} {path:<18} {row['ms_step']:8.2f} {row['steps']:5d} "
                      f"{row['epoch_s']:8.3f} {row['first_epoch_s']:8.2f} {row['accuracy']:7.4f} {ratio}")
            measured = [(backend, results[(backend, model, path)]) for backend in backends
                        if "ms_step" in results[(backend, model, path)]]
            if len(measured) > 1:
                fastest, best = min(measured, key=lambda item: item[1]["ms_step"])
                accs = [row["accuracy"] for _, row in measured]
                print(f"  {model}/{path}: fastest {fastest} ({best['ms_step']:.2f} ms/step); "
                      f"accuracy spread {max(accs) - min(accs):.4f} over {len(measured)} backends")
    for note in notes:
        print(note)
    for backend, model, path, error in failures:
        print(f"\n--- {backend} {model} {path} failed:\n{error.rstrip()}")
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
