"""Helpers the tests import: small params files, a project folder, the command line, git + DVC, sweeps.

Fixtures live in conftest.py; plain functions and constants live here, imported as `from helpers import ...`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout, suppress
from pathlib import Path

import psutil
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def tiny_params() -> dict:
    """Two fast experiments on bundled data: a stacked MLP (classification) and a regression."""
    dense = [{"type": "dense", "units": 6, "activation": "relu"}]
    return {"backend": "tensorflow", "experiments": {
        "iris": {
            "dataset": {"file": "data/iris.csv", "target": "species", "task": "multiclass"},
            "preprocess": {"scale": "standard"},
            "model": {"layers": dense + [{"type": "dense", "units": 3, "activation": "softmax"}]},
            "train": {"optimizer": "adam", "learning_rate": 0.05, "epochs": 15, "batch_size": 16, "seed": 1},
            "evaluate": {"n_splits": 3, "stratify": True, "seed": 1},
        },
        "diabetes": {
            "dataset": {"file": "data/diabetes.csv", "target": "progression", "task": "regression"},
            "preprocess": {"scale": "standard"},
            "model": {"layers": dense + [{"type": "dense", "units": 1}]},
            "train": {"optimizer": "adam", "learning_rate": 0.05, "epochs": 5, "batch_size": 32, "seed": 1},
            "evaluate": {"n_splits": 2, "seed": 1},
        },
    }, "continued": {}, "sweeps": {}}


def cancer_experiment(train: dict | None = None, evaluate: dict | None = None) -> dict:
    """A small binary experiment on the bundled breast-cancer table (its `benign` column): a 4-1 MLP, 3 folds,
    4 epochs; `train` and `evaluate` update its sections."""
    return {"dataset": {"file": "data/breast_cancer.csv", "target": "benign", "task": "binary"},
            "preprocess": {"scale": "standard"},
            "model": {"layers": [{"type": "dense", "units": 4, "activation": "relu"},
                                 {"type": "dense", "units": 1, "activation": "sigmoid"}]},
            "train": {"epochs": 4, "batch_size": 32, "seed": 3, **(train or {})},
            "evaluate": {"n_splits": 3, "seed": 1, **(evaluate or {})}}


def written_run(name: str, spec, results_dir: Path):
    """Cross-validate experiment `name` on its data and write its results as the experiment flow does (its write
    task, without Prefect), with the seconds of the load and the cross-validation; its CVResult."""
    from kerasflow.flows.pipeline import write_results
    from kerasflow.tasks.data.table import load_table
    from kerasflow.tasks.training.evaluate import cross_validate, encode_labels, prepare_folds

    started, timing = time.perf_counter(), {}
    table = load_table(spec.dataset)
    labels = encode_labels(spec, table, name)
    timing["load"] = time.perf_counter() - started
    cv = cross_validate(spec, prepare_folds(spec, table, labels))
    timing["cross_validate"] = time.perf_counter() - started - timing["load"]
    write_results.fn(name, spec, cv, None, labels.codec, results_dir, timing, started)
    return cv


def slot_scores_three_ways(spec, parts: list) -> tuple[dict, dict, object]:
    """Three stacked slots of `spec`'s model (seeds 1, 2, 3), scored untrained on their (X, y) `parts` padded to
    one length: the held-out scores from one prediction (`HeldOutScores`' logs), the compiled per-slot metric's
    (`model.evaluate`), both expanded to ``f<j>_`` entries, and the slots' predictions."""
    import numpy as np

    from kerasflow.tasks.training.scoring import HeldOut, HeldOutScores, expand_slots, row_loss, row_scores
    from kerasflow.tasks.training.stacked import build_stacked, compile_stacked, stack_slots

    X, weight = stack_slots([part[0] for part in parts])
    y, _ = stack_slots([part[1] for part in parts])
    model = build_stacked([spec.model] * 3, X.shape[-1], seeds=[1, 2, 3], loss=row_loss(spec))
    compile_stacked(model, spec)
    compiled = model.evaluate(X, y, sample_weight=weight, batch_size=len(X), verbose=0, return_dict=True)
    callback, logs = HeldOutScores(HeldOut(X, y, row_scores(spec), weight), slots=3), {}
    callback.set_model(model)
    callback.on_epoch_end(0, logs)
    expand_slots(compiled)
    expand_slots(logs)
    return logs, compiled, np.asarray(model.predict_on_batch(X))


def make_project(folder: Path, bundled_data: Path) -> Path:
    """`folder` made a working folder with data/ (iris and diabetes) and the tiny params.yaml."""
    (folder / "data").mkdir(parents=True)
    for name in ("iris.csv", "diabetes.csv"):
        shutil.copy(bundled_data / name, folder / "data" / name)
    (folder / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    return folder


def prefect_api(url: str, body: dict) -> dict | list:
    """POST `body` as JSON to a Prefect server's API endpoint `url` (a `/filter`, say); its decoded answer."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def flow_runs_in(output: str) -> list[str]:
    """The ids of the Prefect flow runs (the pipeline's and its experiments') a command's log links to: what a test
    filters the run's shared Prefect server by, which other tests' runs reach too."""
    return re.findall(r"/runs/flow-run/([0-9a-f-]{36})", output)


def run_cli(args: list[str], cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the installed `kerasflow` console script as a user would."""
    return subprocess.run([str(BIN / "kerasflow"), *args], cwd=cwd, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def run_in_process(argv: list[str], project: Path) -> tuple[int, str, str]:
    """`kerasflow.flows.cli.main(argv)` from `project` as a fresh `kerasflow` process would run it, without its
    seconds of imports: (exit status, stdout, stderr). No `KERAS_BACKEND` in the environment, as a user has none,
    so that the params file's `backend:` is read; `main` sets it, and it is unset again after. A command that runs
    flows wants the `configured_server` fixture, else `main` starts a temporary Prefect server."""
    from kerasflow.flows.cli import main

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        patch.delenv("KERAS_BACKEND", raising=False)
        with redirect_stdout(out), redirect_stderr(err):
            status = main(argv)
    return status, out.getvalue(), err.getvalue()


def run_checked(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a command (git, dvc) that must succeed; its output is in the failure message."""
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def git_dvc_repo(project: Path, prefect_server: str) -> dict[str, str]:
    """Make `project` a git + DVC repo holding this checkout's pipeline (dvc.yaml, tasks/, flows/, .gitignore), its data
    `dvc add`ed, everything committed; return the environment to run `dvc` and `git` in it."""
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(ROOT / name, project / name)
    for package in ("tasks", "flows"):
        shutil.copytree(ROOT / package, project / package, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PREFECT_API_URL": prefect_server,
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    for args in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"]):
        run_checked(args, project, env)
    # The pipeline's own plot template (one line per fold), beside what `dvc init` creates.
    shutil.copytree(ROOT / ".dvc/plots", project / ".dvc/plots", dirs_exist_ok=True)
    for args in (["dvc", "add", "-q", "data"], ["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        run_checked(args, project, env)
    return env


def sweep_params(epochs: int = 3, **sweep) -> dict:
    """A 2-fold 8-1 MLP on the breast-cancer data with a 4-config grid (optimizer x hidden widths)."""
    return {
        "experiments": {"cancer": {
            "dataset": {"file": "data/breast_cancer.csv", "target": "benign", "task": "binary"},
            "preprocess": {"scale": "standard"},
            "model": {"layers": [{"type": "dense", "units": 8, "activation": "relu"},
                                 {"type": "dense", "units": 1, "activation": "sigmoid"}]},
            "train": {"optimizer": "adam", "learning_rate": 0.01, "epochs": epochs, "batch_size": 32, "seed": 1},
            "evaluate": {"n_splits": 2, "stratify": True, "seed": 1},
        }},
        "continued": {},
        "sweeps": {"cancer": {"space": {"train": {"optimizer": {"grid": ["adam", "sgd"]}},
                                        "model": {"widths": {"grid": [[4], [8, 4]]}}}, **sweep}},
    }


def asha_params(epochs: int) -> dict:
    """`sweep_params` as an ASHA sweep of two learning rates, one at a time, the good one (0.05) first: ASHA stops
    the hopeless one (1e-7) after its grace period of 2 epochs."""
    raw = sweep_params(epochs=epochs, scheduler="asha", grace_period=2, max_concurrent_trials=1)
    raw["sweeps"]["cancer"]["space"] = {"train.learning_rate": {"grid": [0.05, 1e-7]}}
    return raw


def whole_histories(out: Path) -> list[dict]:
    """The trials.csv rows of the sweep in `out`, asserting each config's history holds every fold's epochs up to
    the epochs its row names, each once (a trial ASHA stopped, or one retried from a checkpoint, too)."""
    from kerasflow.tasks.outputs.live import FOLDS_PLOT

    rows = read_trials(out)
    for row in rows:
        table = json.loads((out / "history" / row["config_id"] / FOLDS_PLOT).read_text())
        assert sorted((r["fold"], r["epoch"]) for r in table) == \
            [(fold, epoch) for fold in (0, 1) for epoch in range(1, int(row["epochs"]) + 1)], row["config_id"]
    return rows


def sweep_and_export(raw: dict, out: Path, resume: bool = False, tensorboard: Path | None = None) -> dict:
    """Sweep `raw`'s `cancer` experiment into `out` (on whatever Ray is connected), its configs' folds logged to
    TensorBoard in the folder `tensorboard` if given, and export the best model."""
    from kerasflow.flows.pipeline import load_data
    from kerasflow.flows.sweep import export_best, run_sweep
    from kerasflow.tasks.config.schema import parse_params

    params = parse_params(raw)
    spec, sweep = params.experiments["cancer"], params.sweeps["cancer"]
    table, labels = load_data.fn("cancer", spec)
    grid = run_sweep.fn("cancer", spec, sweep, table, labels, out, resume, tensorboard)
    return export_best.fn("cancer", spec, sweep, grid, table, labels, out)


def read_trials(out: Path) -> list[dict]:
    """The rows of a sweep's trials.csv, best first."""
    with open(out / "trials.csv") as handle:
        return list(csv.DictReader(handle))


def start_server(command: list[str], env: dict[str, str], log: Path, health: str,
                 start_s: float = 120) -> subprocess.Popen:
    """Start a server (`command`, in a session of its own, its output in `log`) and return once `health` answers;
    fail after `start_s` seconds or when the server exits."""
    with open(log, "w") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + start_s
    while True:
        try:
            with urllib.request.urlopen(health, timeout=2):
                return server
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"{Path(command[0]).name} did not start; see {log}") from None
            time.sleep(0.5)


@contextmanager
def served(command: list[str], env: dict[str, str], log: Path, health: str, start_s: float = 120) -> Iterator[None]:
    """Run a server (:func:`start_server`) until the block ends; then it is terminated (killed after 20 s)."""
    server = start_server(command, env, log, health, start_s)
    try:
        yield
    finally:
        stop(server)


def stop(process: subprocess.Popen) -> None:
    """Terminate `process`, and kill it if it has not exited 20 s later."""
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def stop_session(pid: int, leader_first: bool = False) -> None:
    """Terminate the session (process group) `pid` leads, a process this one may not have started; once it has
    exited, or 20 s later, kill what is left of the group. `leader_first` terminates the leader alone, which stops
    the rest itself: `ray start --block` drains its node and stops the processes it started (about 3 s), where a
    SIGTERM to its whole group takes the GCS from under that drain, which then waits 30 s for it."""
    try:
        if leader_first:
            os.kill(pid, signal.SIGTERM)
        else:
            os.killpg(pid, signal.SIGTERM)
        psutil.Process(pid).wait(timeout=20)
    except (ProcessLookupError, psutil.NoSuchProcess, psutil.TimeoutExpired):
        pass
    with suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def start_ray_head(log: Path, token: str, temp_dir: str, dashboard_port: int | None = None
                   ) -> tuple[subprocess.Popen, str]:
    """A one-node cluster as a user keeps one running: `ray start --head --block` with 2 CPUs and Ray's token
    authentication (`token`), in a session of its own (`stop_session(pid, leader_first=True)` stops it), its
    output in `log` and its session files in `temp_dir` (a short path: Ray's sockets are there). With
    `dashboard_port`, its dashboard (Ray Jobs) listens there on 127.0.0.1; else it has none. The suite's conftest
    makes it a loopback node (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0). Returns once Ray says it started: the process
    and the head's address.

    Ray gives a new node's raylet a fixed 30 s to register with the GCS (in `ray._private.node.Node`, not a
    setting); on two cores busy with the suite's other workers that can pass, and `ray start` exits saying the
    node "timed out during startup". That failure alone is tried once more, on new ports."""
    try:
        return _start_ray_head(log, token, temp_dir, dashboard_port)
    except RuntimeError as error:
        if "timed out during startup" not in str(error):
            raise
    return _start_ray_head(log, token, temp_dir, dashboard_port)


def _start_ray_head(log: Path, token: str, temp_dir: str, dashboard_port: int | None
                    ) -> tuple[subprocess.Popen, str]:
    from kerasflow.flows.prefect_server import free_port

    port = free_port()
    dashboard = (["--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard_port)] if dashboard_port else
                 ["--include-dashboard", "false"])
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": token, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    with open(log, "w") as out:
        head = subprocess.Popen(
            [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
             "--num-cpus", "2", *dashboard, "--ray-client-server-port", str(free_port()),
             "--dashboard-agent-listen-port", str(free_port()), "--disable-usage-stats", "--temp-dir", temp_dir],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while "Ray runtime started" not in log.read_text():
        if head.poll() is not None or time.monotonic() > deadline:
            stop_session(head.pid, leader_first=True)
            raise RuntimeError(f"ray start --head did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return head, f"127.0.0.1:{port}"


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """The scalars of one TensorBoard run folder, by tag: (step, value) in the order they were written."""
    from tensorflow.compat.v1.train import summary_iterator

    found: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in summary_iterator(str(path)):
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, value.simple_value))
    return found


def history_steps(history: Path, fold: str, name: str) -> list[tuple[int, float]]:
    """A dvclive step file's rows, the step made TensorBoard's (the epoch from 0)."""
    with open(history / "plots/metrics" / fold / f"{name}.tsv") as handle:
        return [(int(row["step"]) - 1, float(row[name])) for row in csv.DictReader(handle, delimiter="\t")]


def assert_same_as_history(events: Path, history: Path, n_folds: int, metric: str) -> None:
    """Every fold's TensorBoard scalars hold its history's values at the same epochs (float32 against six
    significant digits), the training ones under `train`, the held-out ones under `validation`."""
    from kerasflow.tasks.outputs.live import fold_folders, history_names

    for fold in fold_folders(n_folds):
        train, validation = scalars(events / fold / "train"), scalars(events / fold / "validation")
        assert set(train) == {"epoch_loss", f"epoch_{metric}"} and set(validation) == set(train)
        for name in history_names(metric):
            part, tag = (validation, f"epoch_{name[4:]}") if name.startswith("val_") else (train, f"epoch_{name}")
            expected = history_steps(history, fold, name)
            assert [step for step, _ in part[tag]] == [step for step, _ in expected], (fold, name)
            assert [value for _, value in part[tag]] == pytest.approx([value for _, value in expected], rel=1e-5)
