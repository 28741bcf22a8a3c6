"""kerasflow's fixed start-up cost on a tiny job: `kerasflow run` (Prefect flow, temporary server) against the
same training through kerasflow's plain functions and against bare Keras; the separate costs of importing
Keras, starting Prefect's temporary server and starting Ray; and, with --dvc, this project's `dvc repro` when
nothing has changed.

Run from the repository root (after `make install` and `kerasflow data`):

    .venv/bin/python bench/overhead.py                          # iris_mlp at 5 epochs, 3 repeats of each process
    .venv/bin/python bench/overhead.py --repeats 1 --epochs 1   # a quick look
    .venv/bin/python bench/overhead.py --backend jax            # every process on Keras' JAX backend
    .venv/bin/python bench/overhead.py --dvc                    # only `dvc repro` with nothing changed (see below)
    .venv/bin/python bench/overhead.py --experiment cancer_mlp --epochs 150   # the books' 12-8-1, 10 folds

With `--experiment`, another of params.yaml's experiments (dense layers only, for the bare Keras loop) is the job.

The tiny job is params.yaml's `iris_mlp` (150 rows, 10-fold repeated 3×: 30 folds, 4-4-6-3 MLP, batch 5) with
`--epochs` epochs: cross-validation, the refit on all rows, the results written. Every measurement is a fresh
process, as a user's command is, timed from outside (wall seconds); the processes of one repeat run one after
another and the repeats are interleaved, so drift on a noisy machine hits them all alike; each row is the median
over the repeats. All run with `KERAS_BACKEND` set to `--backend` (default tensorflow), the backends set up as
`kerasflow run` sets them (`tasks/config/backend.py`: deterministic kernels, no oneDNN custom ops, JAX's
compilation cache)
and no `PREFECT_API_URL` (so `kerasflow run` and the trivial flow start Prefect's temporary local server, as with a
default set-up; a `PREFECT_API_URL` set in a Prefect profile instead of the environment would defeat this). The
first process to start Prefect's server on a new `PREFECT_HOME` also creates its database; with 3 or more repeats
the median leaves that out.

- python:              `python -c pass`: the interpreter alone;
- import keras:        `python -c "import keras"`;
- import prefect:      `python -c "from prefect import flow"`;
- prefect flow:        the same, then one trivial `@flow` run: the temporary server's start and one flow run;
- ray:                 `kerasflow.flows.ray_cluster.connect()` (kerasflow's `ray.init`) and `ray.shutdown()`, timed
                       inside (`inner`), as `kerasflow tune` pays it;
- bare keras:          this script (`--child bare`): the books' loop, a fresh `Sequential` compiled and fitted
                       per fold on kerasflow's folds and scalers, then one fit on all rows; `inner` = training;
- kerasflow functions: this script (`--child functions`): the steps of the Prefect flow called as plain
                       functions (`load_data.fn`, ..., `write_results.fn`, the report's collect and render), no
                       Prefect run; the same imports as `kerasflow run`; `inner` = the work after imports;
- kerasflow run:       `kerasflow --params TMP/params.yaml run iris_mlp --results TMP/results`;
- kerasflow run, server: the same with `PREFECT_API_URL` pointing at a Prefect server this script started
                       (`prefect server start`, its own `PREFECT_HOME`) before the repeats and stops after them:
                       how a team with a long-running server runs the pipeline. The server's own start is not
                       counted; it is printed.

The fixed cost of `kerasflow run` is its wall time less the work it does (`kerasflow functions`' inner time, its
steps one after another): interpreter, imports, the data check before the flow, Prefect's server and task runs,
less what the flow saves by training the refit beside the folds (flows/pipeline.py) where the functions train
them in turn. Its share of a 3-minute
job is fixed / 180 s (issue 7's target: <= 5%), with the temporary server and against a running one. A bare
Keras script pays some of it too (interpreter, `import keras`, reading the data: its wall less its inner time);
what `kerasflow run` adds beyond that is printed as well.

--dvc times `dvc repro` (all of dvc.yaml, from the environment's bin folder) in the current directory and
checks from its output that no stage ran. To guarantee it retrains nothing, it first runs `dvc status --json`
and refuses (exit status 2) unless that reports nothing changed: regenerate the results first (`make run
FULL=1`, or `dvc repro`). It exits 1 if a stage ran after all.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from kerasflow.tasks.config.backend import backend_settings

JOB_SECONDS = 180.0
TARGET_SHARE = 0.05
BIN = Path(sys.executable).parent
INNER_MARK = "OVERHEAD_INNER "

TRIVIAL_FLOW = """
from prefect import flow

@flow(name="noop")
def noop() -> int:
    return 1

noop()
"""

RAY_START = f"""
import os
import time
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray on 127.0.0.1 only, as in the tests
import ray
from kerasflow.flows.ray_cluster import connect

start = time.perf_counter()
connect()
ray.shutdown()
print({INNER_MARK!r} + str(time.perf_counter() - start))
"""


def tiny_params(name: str, epochs: int) -> dict:
    """params.yaml's experiment `name`, `epochs` epochs, as a params file of its own."""
    import yaml

    raw = yaml.safe_load(Path("params.yaml").read_text())
    experiment = raw["experiments"][name]
    experiment["train"]["epochs"] = epochs
    return {"experiments": {name: experiment}, "continued": {}, "sweeps": {}}


# --- children: the work itself, in a fresh process ---------------------------------------------------------------

def child_functions(name: str, params_file: Path, results_dir: Path) -> None:
    """The Prefect flow's steps as plain functions: what `kerasflow run` does, without Prefect running."""
    from kerasflow.flows import pipeline  # the imports `kerasflow run` pays, Prefect's included
    from kerasflow.tasks.config.schema import load_params
    from kerasflow.tasks.report.collect import collect
    from kerasflow.tasks.report.markdown import render_markdown

    start = time.perf_counter()
    spec = load_params(params_file).experiments[name]
    timing: dict[str, float] = {}
    table, labels = pipeline.load_data.fn(name, spec)
    folds = pipeline.preprocess_folds.fn(spec, table, labels, None)
    on_ray = pipeline.on_cluster(spec)
    cv = pipeline.cross_validate.fn(name, spec, folds, results_dir, on_ray)
    final = pipeline.refit.fn(name, spec, table, labels, None, on_ray)
    pipeline.write_results.fn(name, spec, cv, final, labels.codec, results_dir, timing, start)
    render_markdown(collect(results_dir, {name: spec}))
    print(INNER_MARK + str(time.perf_counter() - start), flush=True)


def child_bare(name: str, params_file: Path) -> None:
    """The books' loop on kerasflow's folds: a fresh model compiled and fitted per fold, then on all rows."""
    import keras
    from sklearn.preprocessing import StandardScaler

    from kerasflow.tasks.config.layers import DenseLayer
    from kerasflow.tasks.config.schema import load_params
    from kerasflow.tasks.data.table import load_table
    from kerasflow.tasks.training.evaluate import encode_labels, prepare_folds

    spec = load_params(params_file).experiments[name]
    if not all(isinstance(layer, DenseLayer) for layer in spec.model.layers):
        raise SystemExit(f"bare keras: {name} must be made of dense layers")
    table = load_table(spec.dataset)
    labels = encode_labels(spec, table)
    folds = prepare_folds(spec, table, labels)

    def books_model(n_features: int) -> keras.Model:
        model = keras.Sequential([keras.Input((n_features,))]
                                 + [keras.layers.Dense(layer.units, activation=layer.activation)
                                    for layer in spec.model.layers])
        model.compile(optimizer=spec.train.optimizer, loss=spec.loss, metrics=["accuracy"])
        return model

    start = time.perf_counter()
    keras.utils.set_random_seed(spec.train.seed)
    for fold in folds:
        model = books_model(fold.X_train.shape[1])
        model.fit(fold.X_train, fold.y_train, epochs=spec.train.epochs, batch_size=spec.train.batch_size, verbose=0)
        model.evaluate(fold.X_test, fold.y_test, verbose=0)
    X = StandardScaler().fit_transform(table.X.to_numpy(dtype="float32"))
    books_model(X.shape[1]).fit(X, labels.codes, epochs=spec.train.epochs, batch_size=spec.train.batch_size,
                                verbose=0)
    print(INNER_MARK + str(time.perf_counter() - start), flush=True)


# --- the parent: fresh processes, timed from outside --------------------------------------------------------------

def child_env(backend: str) -> dict[str, str]:
    env = {**os.environ, "KERAS_BACKEND": backend, **backend_settings(), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    env.pop("RAY_ADDRESS", None)  # a local Ray, as `kerasflow tune` starts on one machine
    return env


@contextlib.contextmanager
def prefect_server(home: Path, backend: str) -> Iterator[str]:
    """A Prefect server (`prefect server start`) on a free local port, with its own `PREFECT_HOME`; yields its
    API URL once it answers `/api/health`, and stops it on exit."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    env = {**child_env(backend), "PREFECT_HOME": str(home)}
    start = time.perf_counter()
    server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if server.poll() is not None:
                sys.exit(f"`prefect server start` exited with status {server.returncode}")
            if time.perf_counter() - start > 120:
                sys.exit(f"the Prefect server did not answer {url}/health within 120 s")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            time.sleep(0.5)
        print(f"  prefect server up at {url} after {time.perf_counter() - start:.1f} s (not counted)",
              file=sys.stderr, flush=True)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def timed_process(command: list[str], what: str, backend: str,
                  api_url: str | None = None) -> tuple[float, float | None]:
    """Wall seconds of a fresh process on Keras' `backend`, and the `inner` seconds it printed (if any); a failure
    stops the bench. With `api_url`, the process runs its flows against that Prefect server."""
    env = child_env(backend) if api_url is None else {**child_env(backend), "PREFECT_API_URL": api_url}
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{what} failed (exit status {done.returncode}):\n{done.stderr[-4000:]}")
    inner = [float(line[len(INNER_MARK):]) for line in done.stdout.splitlines() if line.startswith(INNER_MARK)]
    return wall, (inner[-1] if inner else None)


def measurements(name: str, work: Path, epochs: int) -> dict[str, list[str]]:
    """Each measured process's command line; `{results}` is replaced by a fresh folder per run."""
    params_file = work / "params.yaml"
    python, me = str(sys.executable), str(Path(__file__).resolve())
    child = [python, me, "--child", "{child}", "--experiment", name, "--epochs", str(epochs), "--params-file",
             str(params_file), "--results", "{results}"]
    run = [str(BIN / "kerasflow"), "--params", str(params_file), "run", name, "--results", "{results}"]
    return {
        "python": [python, "-c", "pass"],
        "import keras": [python, "-c", "import keras"],
        "import prefect": [python, "-c", "from prefect import flow"],
        "prefect flow": [python, "-c", TRIVIAL_FLOW],
        "ray": [python, "-c", RAY_START],
        "bare keras": [arg.replace("{child}", "bare") for arg in child],
        "kerasflow functions": [arg.replace("{child}", "functions") for arg in child],
        "kerasflow run": run,
        "kerasflow run, server": run,  # the same command, run against the bench's Prefect server (ON_SERVER)
    }

ON_SERVER = {"kerasflow run, server"}
"""The measurements run against the Prefect server the bench starts."""


LABELS = {
    "python": "python -c pass",
    "import keras": 'python -c "import keras"',
    "import prefect": 'python -c "from prefect import flow"',
    "prefect flow": "the same + a trivial @flow run (temporary server)",
    "ray": "ray: kerasflow.flows.ray_cluster.connect() + ray.shutdown()",
    "bare keras": "bare keras: books' loop, folds + refit",
    "kerasflow functions": "kerasflow functions (the flow's steps, no Prefect)",
    "kerasflow run": "kerasflow run (Prefect flow, temporary server)",
    "kerasflow run, server": "kerasflow run, PREFECT_API_URL: a running server",
}


def overhead(experiment: str, epochs: int, repeats: int, backend: str) -> None:
    import yaml

    walls: dict[str, list[float]] = {}
    inners: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="kerasflow-overhead-") as tmp:
        work = Path(tmp)
        (work / "params.yaml").write_text(yaml.safe_dump(tiny_params(experiment, epochs), sort_keys=False))
        commands = measurements(experiment, work, epochs)
        with prefect_server(work / "prefect-home", backend) as api_url:
            for repeat in range(repeats):
                for name, command in commands.items():
                    results = work / f"results-{repeat}-{name.replace(' ', '_').replace(',', '')}"
                    wall, inner = timed_process([arg.replace("{results}", str(results)) for arg in command], name,
                                                backend, api_url if name in ON_SERVER else None)
                    walls.setdefault(name, []).append(wall)
                    if inner is not None:
                        inners.setdefault(name, []).append(inner)
                    print(f"  repeat {repeat + 1}/{repeats} {name:<20} {wall:7.2f} s"
                          + (f"  (inner {inner:.2f} s)" if inner is not None else ""), file=sys.stderr, flush=True)

    wall = {name: statistics.median(values) for name, values in walls.items()}
    inner = {name: statistics.median(values) for name, values in inners.items()}
    print(f"job: {experiment}, {epochs} epochs, its folds + refit; fresh processes, median of {repeats}; "
          f"{os.cpu_count()} cores; backend={backend}")
    print(f"{'process':<52} {'wall s':>7} {'inner s':>8}  all walls")
    for name, label in LABELS.items():
        inner_s = f"{inner[name]:8.2f}" if name in inner else f"{'':>8}"
        print(f"{label:<52} {wall[name]:7.2f} {inner_s}  {' '.join(f'{v:.2f}' for v in walls[name])}")

    work_s = inner["kerasflow functions"]
    fixed = wall["kerasflow run"] - work_s
    ray_s = inner["ray"]
    rows = [
        (f"import keras ({backend})", wall["import keras"] - wall["python"]),
        ("kerasflow's imports (functions: wall - inner - python)",
         wall["kerasflow functions"] - work_s - wall["python"]),
        ("Prefect temporary server + one flow run (flow - import)", wall["prefect flow"] - wall["import prefect"]),
        ("ray.init + shutdown (connect, inner)", ray_s),
        ("Prefect in kerasflow run (run - functions, walls)", wall["kerasflow run"] - wall["kerasflow functions"]),
    ]
    print("\nfixed costs (seconds)")
    for label, seconds in rows:
        print(f"  {label:<58} {seconds:7.2f}")
    verdict = "met" if fixed / JOB_SECONDS <= TARGET_SHARE else "not met"
    print(f"  {'kerasflow run fixed cost (run wall - functions inner)':<58} {fixed:7.2f}   "
          f"= {100 * fixed / JOB_SECONDS:.1f}% of a {JOB_SECONDS:.0f} s job (target <= {100 * TARGET_SHARE:.0f}%: "
          f"{verdict})")
    served = wall["kerasflow run, server"] - work_s
    verdict = "met" if served / JOB_SECONDS <= TARGET_SHARE else "not met"
    print(f"  {'the same against a running Prefect server':<58} {served:7.2f}   "
          f"= {100 * served / JOB_SECONDS:.1f}% of a {JOB_SECONDS:.0f} s job (target <= {100 * TARGET_SHARE:.0f}%: "
          f"{verdict})")
    print(f"  {'+ ray.init, as kerasflow tune pays it (sum, not measured)':<58} {fixed + ray_s:7.2f}   "
          f"= {100 * (fixed + ray_s) / JOB_SECONDS:.1f}% of a {JOB_SECONDS:.0f} s job")
    bare_start = wall["bare keras"] - inner["bare keras"]
    print(f"  {'a bare Keras script pays itself (bare wall - inner)':<58} {bare_start:7.2f}")
    for label, seconds in (("kerasflow run beyond that", fixed - bare_start),
                           ("the same against a running Prefect server", served - bare_start)):
        print(f"  {label:<58} {seconds:7.2f}   = {100 * seconds / JOB_SECONDS:.1f}% of a {JOB_SECONDS:.0f} s job")
    print(f"\ntiny job end to end: kerasflow run {wall['kerasflow run']:.2f} s, bare keras script "
          f"{wall['bare keras']:.2f} s ({wall['kerasflow run'] / wall['bare keras']:.2f}x); training alone: kerasflow "
          f"functions {work_s:.2f} s, bare keras {inner['bare keras']:.2f} s "
          f"({inner['bare keras'] / work_s:.2f}x faster)")
    print(f"kerasflow run wall / its work (functions inner): {wall['kerasflow run'] / work_s:.2f}x; against a running "
          f"Prefect server {wall['kerasflow run, server'] / work_s:.2f}x (target <= 2x)")


# --- --dvc: this project's `dvc repro` with nothing changed -----------------------------------------------------

def dvc_env() -> dict[str, str]:
    # The stages call `kerasflow` from the environment, as `make run` arranges.
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1"}


def dvc_status() -> tuple[float, dict | None, str]:
    """Seconds of `dvc status --json`, what it reported (None when it failed or was not JSON), its raw output."""
    start = time.perf_counter()
    done = subprocess.run([str(BIN / "dvc"), "status", "--json"], env=dvc_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    try:
        status = json.loads(done.stdout) if done.returncode == 0 else None
    except json.JSONDecodeError:
        status = None
    return seconds, status if isinstance(status, dict) else None, (done.stdout + done.stderr).strip()


def repro_ran_nothing(output: str) -> bool:
    r"""Whether `dvc repro`'s output shows no stage running: up to date, every stage "didn't change, skipping".

    Examples
    --------
    >>> repro_ran_nothing("Stage 'report' didn't change, skipping\nData and pipelines are up to date.")
    True
    >>> repro_ran_nothing("Running stage 'evaluate@iris_mlp':\n> kerasflow run iris_mlp")
    False
    """
    return "Running stage" not in output and "Data and pipelines are up to date" in output


def dvc_part() -> int:
    status_s, status, raw = dvc_status()
    if status is None or status:
        changed = ", ".join(status) if status else f"(no JSON report)\n{raw[-2000:]}"
        print(f"refusing to run `dvc repro`: `dvc status --json` does not report everything up to date, so a "
              f"stage would run (and retrain). Regenerate the results first (`make run FULL=1`); `dvc status` "
              f"shows why. Changed: {changed}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    done = subprocess.run([str(BIN / "dvc"), "repro"], env=dvc_env(), capture_output=True, text=True)
    repro_s = time.perf_counter() - start
    output = (done.stdout + done.stderr).strip()
    skipped = sum("didn't change, skipping" in line for line in output.splitlines())
    print(f"dvc status --json: {status_s:.2f} s (nothing changed)")
    print(f"dvc repro, nothing changed: {repro_s:.2f} s, exit status {done.returncode}, "
          f"{skipped} stage(s) skipped")
    if done.returncode != 0 or not repro_ran_nothing(output):
        print(f"warning: `dvc repro` ran a stage or failed; its output:\n{output[-4000:]}", file=sys.stderr)
        return 1
    print("no stage ran")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="iris_mlp", help="params.yaml's experiment (default: iris_mlp)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the job (default: 5)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each process; the median is shown")
    parser.add_argument("--backend", choices=("tensorflow", "jax"), default="tensorflow",
                        help="Keras backend of every measured process (default: tensorflow)")
    parser.add_argument("--dvc", action="store_true",
                        help="only time this project's `dvc repro` with nothing changed (refuses otherwise)")
    parser.add_argument("--child", choices=("bare", "functions"), help=argparse.SUPPRESS)
    parser.add_argument("--params-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--results", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.epochs < 1 or args.repeats < 1:
        parser.error(f"`--epochs` and `--repeats` must be >= 1. Received: {args.epochs}, {args.repeats}")

    if args.child == "functions":
        child_functions(args.experiment, args.params_file, args.results)
    elif args.child == "bare":
        child_bare(args.experiment, args.params_file)
    elif args.dvc:
        sys.exit(dvc_part())
    else:
        overhead(args.experiment, args.epochs, args.repeats, args.backend)


if __name__ == "__main__":
    main()
