"""`backend:` in params.yaml picks the Keras backend of a run; an explicit KERAS_BACKEND wins."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import keras
import pytest
import yaml
from helpers import flow_runs_in, prefect_api, run_cli, tiny_params

from kerasflow.tasks.config.backend import (
    backend_defaults,
    backend_settings,
    choose_backend,
    hide_retracing_warnings,
    jax_cache_folder,
)
from kerasflow.tasks.config.errors import ParamsError
from kerasflow.tasks.config.schema import load_params
from kerasflow.tasks.outputs.metrics import read_experiment
from kerasflow.tasks.training.evaluate import check_backend


def write_params(folder, **top) -> object:
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump({**tiny_params(), **top}, sort_keys=False))
    return path


@pytest.fixture
def no_backend_set(monkeypatch):
    """KERAS_BACKEND unset for the test, and put back as it was afterwards (choose_backend sets it)."""
    monkeypatch.setenv("KERAS_BACKEND", "")


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="needs a process that imported TensorFlow")
def test_the_params_file_chooses_and_tensorflow_is_the_default(tmp_path, no_backend_set):
    assert keras.backend.backend() == "tensorflow"  # what this test process imported
    assert choose_backend(write_params(tmp_path, backend="tensorflow")) == "tensorflow"
    raw = tiny_params()
    del raw["backend"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    assert choose_backend(tmp_path / "params.yaml") == "tensorflow"


def test_an_unknown_backend_names_the_key(tmp_path, no_backend_set):
    with pytest.raises(ParamsError, match=r"params.yaml:backend: unknown Keras backend 'tensorflw'. "
                                          r"Allowed: tensorflow, jax, torch"):
        choose_backend(write_params(tmp_path, backend="tensorflw"))


def test_a_backend_chosen_after_keras_was_imported_is_refused(tmp_path, no_backend_set):
    imported = keras.backend.backend()
    other = "jax" if imported == "tensorflow" else "tensorflow"
    with pytest.raises(RuntimeError, match=f"Keras was imported with backend '{imported}'"):
        choose_backend(write_params(tmp_path, backend=other))


def test_the_environment_wins_over_the_file(tmp_path, monkeypatch):
    imported = keras.backend.backend()  # the one backend this process can choose
    monkeypatch.setenv("KERAS_BACKEND", imported)
    other = "jax" if imported == "tensorflow" else "tensorflow"
    assert choose_backend(write_params(tmp_path, backend=other)) == imported


@pytest.mark.slow
def test_a_run_trains_on_the_backend_the_params_file_names(project, prefect_server):
    """The whole command on JAX, chosen by params.yaml alone: the result records the backend it ran on. The model
    uses the books' toolbox, stacked: SGD with momentum and Keras 1's decay, a max-norm hidden layer with an L2
    penalty, a separate activation layer, and early stopping, each fold on its own. JAX is thread-safe, so the
    refit trains beside the folds (on TensorFlow after them: tests/test_flow.py)."""
    raw = tiny_params()
    raw["backend"] = "jax"
    raw["experiments"] = {"iris": raw["experiments"]["iris"]}
    raw["experiments"]["iris"]["train"].update(
        optimizer={"name": "sgd", "lr": 0.1, "momentum": 0.9, "decay": 0.001}, learning_rate=None, epochs=40,
        validation_split=0.2, early_stopping={"monitor": "val_loss", "patience": 2, "restore_best_weights": True})
    raw["experiments"]["iris"]["model"]["layers"][:1] = [
        {"type": "dense", "units": 6, "kernel_constraint": {"name": "max_norm", "max_value": 3},
         "kernel_regularizer": {"name": "l2", "l2": 0.001}}, {"type": "activation", "activation": "relu"}]
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))

    result = run_cli(["run", "iris"], cwd=project, env={"PREFECT_API_URL": prefect_server, "KERAS_BACKEND": ""})

    assert result.returncode == 0, result.stderr[-3000:]
    metrics = read_experiment(project / "results/iris")
    assert metrics["environment"]["backend"] == "jax"
    assert metrics["n_folds"] == 3 and metrics["mean"] > 0.8
    # The folds trained stacked: every slot's epoch logs reach its fold's history.
    assert metrics["stacked"] is True
    curves = sorted((project / "results/iris/history/plots/metrics").glob("fold_*/*.tsv"))
    assert sorted({curve.name for curve in curves}) == ["accuracy.tsv", "learning_rate.tsv", "loss.tsv",
                                                        "val_accuracy.tsv", "val_loss.tsv"]
    epochs_run = metrics["epochs_run"]
    assert len(curves) == 3 * 5 and max(epochs_run) < 40
    for curve in curves:
        assert len(curve.read_text().splitlines()) == 1 + epochs_run[int(curve.parent.name.removeprefix("fold_"))]
    task_runs = prefect_api(f"{prefect_server}/task_runs/filter",
                            {"flow_runs": {"id": {"any_": flow_runs_in(result.stderr)}}})
    spans = {run["task_key"].split("-")[0]: (datetime.fromisoformat(run["start_time"]),
                                             datetime.fromisoformat(run["end_time"]))
             for run in task_runs if run["task_key"].split("-")[0] in ("cross_validate", "refit")}
    assert max(start for start, _ in spans.values()) < min(end for _, end in spans.values())  # side by side


def test_the_jax_cache_folder_is_the_users_per_cpu_and_stays_on_this_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    for name in ("JAX_COMPILATION_CACHE_DIR", "JAX_ENABLE_COMPILATION_CACHE"):
        monkeypatch.delenv(name, raising=False)
    folder = Path(jax_cache_folder())
    assert folder.parent == tmp_path / "kerasflow" / "jax" and folder.name.startswith(os.uname().machine)
    assert backend_settings()["JAX_COMPILATION_CACHE_DIR"] == str(folder)
    # A path in this user's home means nothing on a remote cluster's nodes; a folder the user chose is sent, as is
    # JAX's off switch.
    assert "JAX_COMPILATION_CACHE_DIR" not in backend_settings(portable=True)
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/shared/jax")
    monkeypatch.setenv("JAX_ENABLE_COMPILATION_CACHE", "false")
    sent = backend_settings(portable=True)
    assert sent["JAX_COMPILATION_CACHE_DIR"] == "/shared/jax" and sent["JAX_ENABLE_COMPILATION_CACHE"] == "false"


def test_a_user_with_no_home_folder_gets_no_jax_cache_folder(monkeypatch):
    """A container's arbitrary user id has no HOME and no passwd entry: `Path.home()` raises; kerasflow still runs."""
    def no_home(cls):
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(Path, "home", classmethod(no_home))
    assert jax_cache_folder() is None
    assert "JAX_COMPILATION_CACHE_DIR" not in backend_defaults()
    assert backend_defaults()["TF_DETERMINISTIC_OPS"] == "1"
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    assert "JAX_COMPILATION_CACHE_DIR" not in backend_settings(portable=True)  # what a remote cluster is sent


# Two folds' models of one shape trained by kerasflow on JAX; prints the compilation cache's hits and misses in each,
# and each fold's history.
TWO_FOLDS_ON_JAX = """
import json, sys
from kerasflow.tasks.config.backend import set_backend_defaults
set_backend_defaults()
import jax, numpy as np
from kerasflow.tasks.config.schema import parse_params
from kerasflow.tasks.training.train import fit_model

events = []
jax.monitoring.register_event_listener(lambda event, **_: events.append(event))
spec = parse_params(json.loads(sys.argv[1])).experiments["diabetes"]
rows = np.random.default_rng(0)
X, y = rows.normal(size=(40, 10)).astype("float32"), rows.normal(size=(40, 1)).astype("float32")
folds, histories = [], []
for fold in range(2):
    events.clear()
    _, trained = fit_model(spec, X[fold::2], y[fold::2], validation=(X[1 - fold::2], y[1 - fold::2]))
    folds.append([events.count(f"/jax/compilation_cache/cache_{outcome}") for outcome in ("hits", "misses")])
    histories.append(trained.history)
print(json.dumps([folds, histories]))
"""


@pytest.mark.slow
def test_jax_programs_compiled_once_are_loaded_from_kerasflows_cache(tmp_path):
    """JAX keeps a compiled program per model object, in memory; kerasflow's default cache (under the user's cache
    folder) loads a shape's programs instead of compiling them again: for the next fold, and in the next run."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("JAX_")}
    env.update(KERAS_BACKEND="jax", XDG_CACHE_HOME=str(tmp_path))
    runs = []
    for _ in ("first", "second"):
        child = subprocess.run([sys.executable, "-c", TWO_FOLDS_ON_JAX, json.dumps(tiny_params())], env=env,
                               capture_output=True, text=True, timeout=300)
        assert child.returncode == 0, child.stderr[-3000:]
        if "Target machine feature" in child.stderr:
            pytest.skip("this CPU refuses XLA's cached programs (openxla/xla#44565)")
        runs.append(json.loads(child.stdout.splitlines()[-1]))
    (folder,) = (tmp_path / "kerasflow" / "jax").iterdir()  # one folder for this kind of CPU
    assert any(folder.iterdir())
    (first, first_histories), (second, second_histories) = runs
    assert second_histories == first_histories  # programs loaded from the cache train bit for bit as compiled ones
    (first_fold, second_fold), (next_first_fold, next_second_fold) = first, second  # each [hits, misses]
    assert first_fold[0] == 0 and first_fold[1] > 0  # an empty cache: every program compiled
    assert second_fold[0] > 0 and second_fold[1] == 0  # the second fold's model loaded the first's: none compiled
    assert next_first_fold[0] >= first_fold[1] and next_first_fold[1] == 0  # a new process loads them all
    assert next_second_fold[1] == 0


@pytest.mark.slow
def test_a_local_ray_started_after_jax_prints_no_fork_warning(tmp_path):
    """Ray starts its servers by fork then exec; JAX's at-fork hook would warn a JAX user of `kerasflow tune` of a
    deadlock only a child that goes on running Python can meet. Any other fork still warns."""
    # Python runs its at-fork hooks for a subprocess with a preexec_fn, as Ray's are.
    code = ("import subprocess, keras, ray; keras.ops.ones(2) + 1; "
            "from kerasflow.flows.ray_cluster import connect; connect(); "
            "ray.shutdown(); print('RAY STARTED', flush=True); subprocess.run(['true'], preexec_fn=lambda: None)")
    env = {name: value for name, value in os.environ.items() if name != "RAY_ADDRESS"}
    env["KERAS_BACKEND"] = "jax"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "RAY STARTED" in result.stdout
    assert result.stderr.count("os.fork() was called") == 1  # the plain subprocess after Ray's start


# The shipped stateful LSTM experiment checked on JAX, in a child process (a process has one backend).
STATEFUL_ON_JAX = """
from kerasflow.tasks.config.backend import set_backend_defaults
set_backend_defaults()
from kerasflow.tasks.training.evaluate import check_backend
from kerasflow.tasks.config.schema import load_params
check_backend(load_params("params.yaml").experiments["sunspots_lstm_stateful"], "sunspots_lstm_stateful")
"""


def test_a_stateful_lstm_is_refused_on_jax_where_it_would_keep_no_state():
    """Keras' JAX steps carry no RNN state from one batch to the next: the experiment would train as a stateless
    one without a word. On TensorFlow it trains."""
    root = Path(__file__).resolve().parents[1]
    child = subprocess.run([sys.executable, "-c", STATEFUL_ON_JAX], cwd=root, capture_output=True, text=True,
                           env={**os.environ, "KERAS_BACKEND": "jax"}, timeout=300)
    assert child.returncode != 0
    assert "experiments.sunspots_lstm_stateful.model.layers[1].stateful: a stateful LSTM keeps no state" in child.stderr
    if keras.backend.backend() == "tensorflow":
        check_backend(load_params(root / "params.yaml").experiments["sunspots_lstm_stateful"], "x")  # no error


BOOKS_LAYERS_ON_JAX = """
import numpy as np
from kerasflow.tasks.config.schema import ModelSpec
from kerasflow.tasks.training.models import build_model
spec = ModelSpec.model_validate({"layers": [
    {"type": "reshape", "target_shape": [4, 2]}, {"type": "gaussian_noise", "stddev": 0.1},
    {"type": "bidirectional", "layer": {"type": "gru", "units": 3, "return_sequences": True}},
    {"type": "simple_rnn", "units": 2, "recurrent_constraint": "unit_norm"},
    {"type": "reshape", "target_shape": [1, 1, 2]}, {"type": "batch_normalization"},
    {"type": "rescaling", "scale": 0.5}, {"type": "separable_conv2d", "filters": 2, "kernel_size": 1},
    {"type": "conv2d", "filters": 2, "kernel_size": 1, "strides": 1, "padding": "same"},
    {"type": "average_pooling2d", "pool_size": 1}, {"type": "global_average_pooling2d"},
    {"type": "dense", "units": 1}]})
model = build_model(spec, n_features=8, seed=1)
model.compile(optimizer="adam", loss="mse")
print(float(model.train_on_batch(np.ones((6, 8), dtype="float32"), np.ones(6))))
"""


def test_the_books_other_layers_train_on_jax():
    root = Path(__file__).resolve().parents[1]
    child = subprocess.run([sys.executable, "-c", BOOKS_LAYERS_ON_JAX], cwd=root, capture_output=True, text=True,
                           env={**os.environ, "KERAS_BACKEND": "jax"}, timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    assert float(child.stdout.split()[-1]) >= 0


def test_tensorflows_retracing_warning_is_dropped_and_its_other_warnings_pass():
    """Folds trained one after another are new models each: TensorFlow's retracing warning, which marks every fold
    after the fifth, is dropped from its logger (as `kerasflow` sets it up); its other warnings still reach it."""
    import tensorflow as tf

    hide_retracing_warnings()
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = tf.get_logger()
    logger.addHandler(handler)
    try:
        logger.warning("5 out of the last 5 calls to <function f at 0x1> triggered tf.function retracing. Tracing "
                       "is expensive")
        logger.warning("Skipping variable loading for optimizer 'adam'")
    finally:
        logger.removeHandler(handler)
    assert seen == ["Skipping variable loading for optimizer 'adam'"]
