"""Shared fixtures: small real data, a project folder, one real Prefect server and one kept-running Ray for the
whole run, embedded Ray.

Fixtures only; the helpers tests import are in helpers.py."""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kerasflow.tasks.config.backend import set_backend_defaults

# The backends in this process as `kerasflow` sets them up (TensorFlow quiet, deterministic, no oneDNN custom ops),
# JAX's compiled programs kept in a folder of this session's, not the user's: no test loads an earlier session's.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="kerasflow-tests-jax-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
set_backend_defaults()
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# A temporary Prefect server (kerasflow's early one, or Prefect's own) gets 2 minutes to answer, not Prefect's 20 s:
# on CI's two cores, loaded by three test workers, one once took longer and the run went on without it.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
# Prefect's home (its profiles, the local server kerasflow may keep there) is the session's own: no test talks to a
# server the user keeps running.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="kerasflow-tests-prefect-home-")
atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], ignore_errors=True)
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
# Every Ray node the suite starts (embedded `ray.init()`, `cluster_utils`, the `kerasflow` processes it runs)
# listens and is reached on 127.0.0.1 only: Ray then takes the machine for a single-node, loopback cluster, as on
# macOS. Set before anything imports Ray, which reads it once.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# Every Ray the suite starts or joins uses Ray's token authentication, as an embedded `ray.init()` does by default,
# with one token for the run (made by the first process, inherited by pytest-xdist's workers and the commands they
# run): Ray reads its mode once a process, so a test process can then join the run's kept-running head
# (`ray_server`) after starting Ray of its own, and no test writes the user's ~/.ray/auth_token.
os.environ["RAY_AUTH_MODE"] = "token"
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(16))

# Prefect configures logging when it is first imported, closing every handler already there; TensorFlow's absl
# handler holds the stderr pytest captures, so Prefect must come first or a test that imports it after
# TensorFlow closes pytest's own capture.
import prefect.main  # noqa: E402,F401
from helpers import BIN, make_project, start_ray_head, start_server, stop_session  # noqa: E402

from kerasflow.flows.prefect_server import free_port  # noqa: E402


@pytest.fixture(scope="session")
def bundled_data(tmp_path_factory) -> Path:
    """The bundled CSVs, written once per session by the same code `kerasflow data` runs."""
    from kerasflow.tasks.data.bundled import write_bundled

    out = tmp_path_factory.mktemp("bundled") / "data"
    write_bundled(out)
    return out


@pytest.fixture
def project(tmp_path, bundled_data) -> Path:
    """A working folder with data/ (iris and diabetes) and the tiny params.yaml."""
    return make_project(tmp_path, bundled_data)


SHARED = "KERASFLOW_TESTS_SHARED"
"""The variable naming a folder the run's processes share (the Prefect server's state): set by pytest-xdist's
controller, or by the one process of a run without it, and inherited by the workers it starts."""
_OWNS_SHARED = pytest.StashKey[bool]()


def pytest_configure(config: pytest.Config) -> None:
    if SHARED not in os.environ:
        os.environ[SHARED] = tempfile.mkdtemp(prefix="kerasflow-tests-shared-")
        config.stash[_OWNS_SHARED] = True


LONGEST_FIRST = ("test_ray_head.py", "test_schedule.py", "faults/test_sweep_faults.py", "test_cluster.py",
                 "test_dvc.py", "test_stacked.py", "faults/test_interrupted_runs.py", "test_continue.py",
                 "test_fuzz.py", "test_cli.py", "test_examples.py", "faults/test_bad_input.py", "test_backend.py",
                 "test_sweep.py")
"""The test files that take a worker longest (80 to 300 s each in `pytest --durations=0 -n 3 --dist loadfile` on
2 cores, 12-07), longest first; the others follow in their own order. `make test` hands files to its workers in
the order collected (`--no-loadscope-reorder`); pytest-xdist's default, the files with most tests first, left these
few-test files for last, one running alone at the end."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Collect the files of :data:`LONGEST_FIRST` first, in that order, each file's tests in their own."""
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    tests = Path(__file__).parent
    items.sort(key=lambda item: rank.get(item.path.relative_to(tests).as_posix() if item.path.is_relative_to(tests)
                                         else "", len(rank)))


def pytest_unconfigure(config: pytest.Config) -> None:
    """The run's end (the controller's, after every worker's): the Prefect server and the Ray head stop, the shared
    folders go."""
    if config.stash.get(_OWNS_SHARED, False):
        shared = Path(os.environ.pop(SHARED))
        for state in (shared / "prefect-server.json", shared / "ray-head.json"):
            if state.is_file():
                found = json.loads(state.read_text())
                stop_session(found["pid"], leader_first=state.name == "ray-head.json")
                if "temp_dir" in found:
                    shutil.rmtree(found["temp_dir"], ignore_errors=True)
        shutil.rmtree(shared, ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_server() -> str:
    """A real `prefect server start` on 127.0.0.1, its API URL: one for the whole run, started by the first worker
    that needs it (the others wait on its lock) and stopped at the run's end (pytest_unconfigure): one server, not
    one a worker, as each takes seconds of CPU to start and some more every minute it runs."""
    shared = Path(os.environ[SHARED])
    with open(shared / "prefect-server.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = shared / "prefect-server.json"
        if not state.is_file():
            home = shared / "prefect-home"
            home.mkdir()
            port = free_port()
            url = f"http://127.0.0.1:{port}/api"
            env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
            env.pop("PREFECT_API_URL", None)
            server = start_server([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                  env, home / "server.log", f"{url}/health")
            state.write_text(json.dumps({"url": url, "pid": server.pid}))
        return json.loads(state.read_text())["url"]


@pytest.fixture(scope="module")
def configured_server(prefect_server: str) -> Iterator[str]:
    """The run's Prefect server as a user's `PREFECT_API_URL`, for a module that runs flows in this process: they
    (this thread and Prefect's workers) report to it, and `kerasflow.flows.cli.main`, which looks for a server in
    the environment, starts no temporary one. Set for the whole module, in Prefect's settings and in the
    environment the commands its tests start inherit."""
    from prefect.context import refresh_global_settings_context
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import temporary_settings

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFECT_API_URL", prefect_server)
        refresh_global_settings_context()
        with temporary_settings(updates={"api.url": prefect_server}):
            yield prefect_server
            # The runs' last logs and events are sent in the background: sent now, before the server stops.
            APILogWorker.drain_all(timeout=5)
            EventsWorker.drain_all(timeout=5)
    refresh_global_settings_context()


# Sweeps (tests/test_sweep.py, tests/test_cluster.py, tests/test_logical_gpus.py, tests/faults/test_sweep_faults.py):
# a small grid on the breast-cancer data, swept in this process by the flow's own task functions.


@pytest.fixture
def cancer_project(tmp_path, bundled_data, monkeypatch):
    """A working folder holding data/breast_cancer.csv, made the current directory."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data/breast_cancer.csv").write_bytes((bundled_data / "breast_cancer.csv").read_bytes())
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def ray_server() -> dict[str, str]:
    """A Ray kept running between commands, as README says to start one: a real `ray start --head` on 127.0.0.1
    with the run's token (helpers.start_ray_head), one for the whole run like the Prefect server (the first worker
    that needs it starts it, under a lock; pytest_unconfigure stops it). Returns what a driver joins it with:
    RAY_ADDRESS, RAY_AUTH_MODE and RAY_AUTH_TOKEN.

    Sweeps there train in its warm trainers (flows/warm_trainers.py), which import Keras once for the run, where
    each sweep on a Ray of its own starts Ray and imports Keras in every trial process. Tests of an embedded Ray
    (`local_ray`: the test process's own; `kerasflow tune` without RAY_ADDRESS: the command's) do not use it."""
    shared = Path(os.environ[SHARED])
    with open(shared / "ray-head.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = shared / "ray-head.json"
        if not state.is_file():
            temp_dir = tempfile.mkdtemp(prefix="kf-ray-", dir="/tmp")
            head, address = start_ray_head(shared / "ray-head.log", os.environ["RAY_AUTH_TOKEN"], temp_dir)
            state.write_text(json.dumps({"address": address, "pid": head.pid, "temp_dir": temp_dir}))
        address = json.loads(state.read_text())["address"]
    return {"RAY_ADDRESS": address, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": os.environ["RAY_AUTH_TOKEN"]}


@pytest.fixture(scope="module")
def kept_ray(ray_server):
    """This process joined to the run's kept-running Ray (`ray_server`) for a module's in-process sweeps."""
    import ray

    from kerasflow.flows.ray_cluster import connect

    ray.shutdown()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in ray_server.items():
            patch.setenv(name, value)
        connect()
        yield
        ray.shutdown()


@pytest.fixture(scope="module")
def local_ray():
    """One embedded Ray cluster (2 CPUs) for a module's in-process sweeps."""
    import ray

    from kerasflow.flows.ray_cluster import connect

    ray.shutdown()
    connect()
    yield
    ray.shutdown()


