"""Shared fixtures: small real data, a tiny params file, Prefect's test harness and a real Prefect server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def tiny_params() -> dict:
    """Two fast experiments on bundled data: a stacked MLP (classification) and a regression."""
    dense = [{"type": "dense", "units": 6, "activation": "relu"}]
    return {"experiments": {
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
    }, "sweeps": {}}


@pytest.fixture(scope="session")
def bundled_data(tmp_path_factory) -> Path:
    """The bundled CSVs, written once per session by the same code `kerasflow data` runs."""
    from tasks.bundled import write_bundled

    out = tmp_path_factory.mktemp("bundled") / "data"
    write_bundled(out)
    return out


@pytest.fixture
def project(tmp_path, bundled_data) -> Path:
    """A working folder with data/ (iris and diabetes) and the tiny params.yaml."""
    (tmp_path / "data").mkdir()
    for name in ("iris.csv", "diabetes.csv"):
        shutil.copy(bundled_data / name, tmp_path / "data" / name)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    return tmp_path


@pytest.fixture(scope="session")
def prefect_harness():
    """Prefect's own test harness: flows run against a temporary database, once per session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory) -> str:
    """A real `prefect server start` on 127.0.0.1, started and stopped here; yields its API URL."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    log = open(home / "server.log", "w")
    server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise RuntimeError(f"prefect server did not start; see {home / 'server.log'}")
        time.sleep(0.5)
    try:
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def run_cli(args: list[str], cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the installed `kerasflow` console script as a user would."""
    return subprocess.run([str(BIN / "kerasflow"), *args], cwd=cwd, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)
