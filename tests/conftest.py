"""Shared fixtures: small real data, a project folder, Prefect's test harness and a real Prefect server, Ray.

Fixtures only; the helpers tests import are in helpers.py."""

from __future__ import annotations

import atexit
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
from helpers import BIN, make_project, served  # noqa: E402

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


@pytest.fixture(scope="session")
def prefect_harness():
    """Prefect's own test harness: flows run against a temporary database, once per session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory) -> str:
    """A real `prefect server start` on 127.0.0.1, started and stopped here; yields its API URL."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    url = f"http://127.0.0.1:{port}/api"
    with served([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)], env,
                home / "server.log", f"{url}/health"):
        yield url


# Sweeps (tests/test_sweep.py, tests/test_cluster.py, tests/faults/test_sweep_faults.py): a small grid on the
# breast-cancer data, swept in this process by the flow's own task functions.


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


