"""Security defaults: local servers listen on 127.0.0.1, model files run no code, nothing unpickles user files,
and secrets in the environment reach no log, result or report."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import psutil
import pytest
from helpers import ROOT, flow_runs_in, prefect_api, run_cli

from faults.support import kill_group, start_cli, wait_for

LOOPBACK = {"127.0.0.1", "::1"}


def _listening(process: psutil.Process) -> list[tuple[str, str, int]]:
    """(process name, address, port) of every listening TCP socket of `process` and its descendants."""
    found = []
    for proc in [process, *process.children(recursive=True)]:
        try:
            found += [(proc.name(), c.laddr.ip, c.laddr.port) for c in proc.net_connections(kind="inet")
                      if c.status == psutil.CONN_LISTEN]
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.mark.slow
def test_the_temporary_prefect_server_listens_on_127_0_0_1_only_and_dies_with_the_command(project, tmp_path_factory):
    """No PREFECT_API_URL: `kerasflow run` starts Prefect's temporary server, which must not be reachable from
    other machines, and must not outlive the command even when the command is SIGKILLed (no clean-up runs). The run
    is held at its last write (KERASFLOW_FAULT) while its sockets are inspected."""
    env = {"PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-home")), "PREFECT_API_URL": "",
           "KERASFLOW_FAULT": "stall:write:metrics.json"}
    log = project.parent / f"{project.name}-server.log"
    run = start_cli(["run", "iris", "--smoke-test", "--results", "results"], project, env, log)
    try:
        wait_for(lambda: "stalling at write:metrics.json" in log.read_text(), run, log, what="the run's last write")
        command = psutil.Process(run.pid)
        sockets = _listening(command)
        servers = [proc for proc in command.children(recursive=True) if "uvicorn" in proc.cmdline()]
        os.kill(run.pid, signal.SIGKILL)  # the command only: its server is not signalled by anyone but the kernel
        run.wait(timeout=60)
        _, alive = psutil.wait_procs(servers, timeout=30)
    finally:
        kill_group(run)
    assert "Starting temporary server on http://127.0.0.1:" in log.read_text()
    assert sockets, "the temporary server was not found listening"
    assert {address for _, address, _ in sockets} <= LOOPBACK, sockets
    assert len(servers) == 1 and not alive, f"server processes {servers}, alive after the command's death: {alive}"


RAY_PROBE = """
import json, psutil, ray, urllib.request
from kerasflow.flows.ray_cluster import connect
connect()
context = ray.init(ignore_reinit_error=True)
pages = []
for proc in psutil.Process().children(recursive=True):
    try:
        sockets = [c.laddr for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    except psutil.NoSuchProcess:
        continue
    for address in sockets:
        host = "127.0.0.1" if address.ip in ("0.0.0.0", "::") else address.ip
        try:
            with urllib.request.urlopen(f"http://{host}:{address.port}/", timeout=3) as response:
                body = response.read(4096).decode(errors="replace").lower()
        except Exception:
            continue
        pages.append({"process": proc.name(), "ip": address.ip, "port": address.port, "html": "<html" in body})
ray.shutdown()
print(json.dumps({"dashboard_url": context.dashboard_url, "pages": pages}))
"""


@pytest.mark.slow
def test_rays_dashboard_is_off_and_no_web_page_is_served_beyond_localhost(tmp_path):
    """`kerasflow.flows.ray_cluster.connect()` as `kerasflow tune` calls it, in a fresh process with a fresh local
    Ray."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    result = subprocess.run([sys.executable, "-c", RAY_PROBE], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    dashboard = probe["dashboard_url"] or ""
    assert dashboard == "" or dashboard.split(":")[0] in LOOPBACK, dashboard
    exposed = [page for page in probe["pages"] if page["html"] and page["ip"] not in LOOPBACK]
    assert exposed == [], exposed


def _model_folder(folder: Path, layer_factory) -> Path:
    """A model folder as `kerasflow run` leaves one, but with a model made by `layer_factory` (unsafe on purpose)."""
    import keras

    from kerasflow.tasks.data.preprocess import Preprocessor

    folder.mkdir(parents=True)
    X = pd.DataFrame({"a": [0.0, 1.0, 2.0], "b": [1.0, 0.0, 1.0]})
    model = keras.Sequential([keras.Input(shape=(2,)), layer_factory(), keras.layers.Dense(1)])
    model.save(folder / "model.keras")
    state = {"task": "regression", "target": "y", "header": True, "features": Preprocessor().fit(X).to_dict(),
             "labels": None}
    (folder / "preprocessing.json").write_text(json.dumps(state))
    (folder.parent / "rows.csv").write_text("a,b\n0.5,1.0\n")
    return folder


def test_predict_refuses_a_model_file_that_would_run_code(tmp_path):
    """A Lambda layer holds Python bytecode; Keras' safe_mode refuses to load it, so the code never runs."""
    import keras

    marker = tmp_path / "code-ran"
    payload = eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).touch(), x)[1]")  # the attacker's code
    folder = _model_folder(tmp_path / "model", lambda: keras.layers.Lambda(payload))
    marker.unlink(missing_ok=True)  # building the model ran it once, here in the test

    result = run_cli(["predict", "--model", "model", "--input", "rows.csv", "--output", "out.csv"], cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("kerasflow: error: model/model.keras: cannot load the model") and "safe_mode" in message
    assert not marker.exists(), "the model file's code ran"
    assert not (tmp_path / "out.csv").exists()

    # The payload is live: loading the same file without safe_mode does run it. kerasflow's refusal is the guard.
    keras.saving.load_model(folder / "model.keras", safe_mode=False)
    assert marker.exists()


UNSAFE_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
UNSAFE_CALLS = {"read_pickle", "unsafe_load", "full_load", "eval", "exec"}


def _unsafe_uses(path: Path) -> list[str]:
    """Lines of `path` that could run code from a file: pickle-like modules, `allow_pickle=True`, `yaml.load`
    without the safe loader, eval/exec, and Keras loads that turn `safe_mode` off."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [f"{where} imports {alias.name}" for alias in node.names
                      if alias.name.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNSAFE_MODULES:
            found.append(f"{where} imports from {node.module}")
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            keywords = {k.arg: k.value for k in node.keywords}
            if name in UNSAFE_CALLS:
                found.append(f"{where} calls {name}")
            if name == "load" and isinstance(node.func, ast.Attribute) and getattr(node.func.value, "id", "") == "yaml":
                found.append(f"{where} calls yaml.load")
            for flag, unsafe in (("allow_pickle", True), ("safe_mode", False)):
                value = keywords.get(flag)
                if isinstance(value, ast.Constant) and value.value is unsafe:
                    found.append(f"{where} passes {flag}={unsafe}")
            if name == "load_model" and not (isinstance(keywords.get("safe_mode"), ast.Constant)
                                             and keywords["safe_mode"].value is True):
                found.append(f"{where} loads a Keras model without an explicit safe_mode=True")
    return found


def test_no_module_unpickles_or_evaluates_what_it_reads():
    sources = sorted((ROOT / "tasks").rglob("*.py")) + sorted((ROOT / "flows").rglob("*.py"))
    assert len(sources) > 10
    assert [line for path in sources for line in _unsafe_uses(path)] == []


def test_the_unsafe_use_check_finds_what_it_looks_for(tmp_path):
    """The scanner above, on a file of the very things it must catch."""
    bad = tmp_path / "sample.py"
    bad.write_text("import pickle\nimport yaml, numpy as np, keras\nyaml.load(open('p'))\n"
                   "np.load('x', allow_pickle=True)\nkeras.saving.load_model('m.keras', safe_mode=False)\neval('1')\n")
    found = _unsafe_uses(bad)
    assert [line.split(" ", 1)[1] for line in found] == [
        "imports pickle", "calls yaml.load", "passes allow_pickle=True", "passes safe_mode=False",
        "loads a Keras model without an explicit safe_mode=True", "calls eval"]


SECRET = "kf-sentinel-3f9a1c"


@pytest.mark.slow
def test_secrets_in_the_environment_reach_no_output_result_report_or_prefect_log(project, prefect_server):
    env = {"PREFECT_API_URL": prefect_server, "AWS_SECRET_ACCESS_KEY": SECRET, "PREFECT_API_KEY": SECRET,
           "KERASFLOW_DB_PASSWORD": SECRET, "RAY_ADDRESS_TOKEN": SECRET}
    result = run_cli(["run", "iris", "--smoke-test", "--results", "results", "--report",
                                   "reports/summary.md"], cwd=project, env=env)
    assert result.returncode == 0, result.stderr[-3000:]

    assert SECRET not in result.stdout + result.stderr
    written = [path for path in project.rglob("*") if path.is_file()]
    assert any(path.name == "metrics.json" for path in written) and any(path.suffix == ".html" for path in written)
    assert [str(path) for path in written if SECRET.encode() in path.read_bytes()] == []
    # What this run sent to the server (which other tests' runs share): its logs, artifacts and flow runs.
    runs = {"any_": flow_runs_in(result.stderr)}
    for endpoint, body in (("/logs/filter", {"logs": {"flow_run_id": runs}}),
                           ("/artifacts/filter", {"artifacts": {"flow_run_id": runs}}),
                           ("/flow_runs/filter", {"flow_runs": {"id": runs}})):
        sent = prefect_api(f"{prefect_server}{endpoint}", body)
        assert sent and SECRET not in json.dumps(sent), endpoint
