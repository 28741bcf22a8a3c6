"""Shared fixtures: small real data, a project folder, one real Prefect server for the whole run, Ray.

Fixtures only; the helpers tests import are in helpers.py."""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import shutil
import tempfile
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

# Prefect configures logging when it is first imported, closing every handler already there; TensorFlow's absl
# handler holds the stderr pytest captures, so Prefect must come first or a test that imports it after
# TensorFlow closes pytest's own capture.
import prefect.main  # noqa: E402,F401
from helpers import BIN, make_project, start_server, stop_session  # noqa: E402

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


def pytest_unconfigure(config: pytest.Config) -> None:
    """The run's end (the controller's, after every worker's): the Prefect server stops, the shared folder goes."""
    if config.stash.get(_OWNS_SHARED, False):
        shared = Path(os.environ.pop(SHARED))
        state = shared / "prefect-server.json"
        if state.is_file():
            stop_session(json.loads(state.read_text())["pid"])
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


@pytest.fixture(scope="session")
def prefect_in_process(prefect_server):
    """Flows run in this process record their runs on the run's Prefect server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_server}):
        yield prefect_server


# Sweeps (tests/test_sweep.py, tests/test_cluster.py, tests/test_logical_gpus.py, tests/faults/test_sweep_faults.py):
# a small grid on the breast-cancer data, swept in this process by the flow's own task functions.


@pytest.fixture
def cancer_project(tmp_path, bundled_data, monkeypatch):
    """A working folder holding data/breast_cancer.csv, made the current directory."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data/breast_cancer.csv").write_bytes((bundled_data / "breast_cancer.csv").read_bytes())
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def local_ray():
    """One embedded Ray cluster (2 CPUs) for a module's in-process sweeps."""
    import ray

    from kerasflow.flows.ray_cluster import connect

    ray.shutdown()
    connect()
    yield
    ray.shutdown()


