"""The `kerasflow` command as a user runs it: help, a user's header-less CSV, a Prefect server.

Bad input (params, data, predict rows) is tested case by case in tests/faults/test_bad_input.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sqlite3
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import psutil
import pytest
import yaml
from helpers import flow_runs_in, prefect_api, run_cli, tiny_params

from kerasflow.flows.prefect_server import check_configured_api, free_port
from kerasflow.tasks.config.errors import ServiceError
from kerasflow.tasks.outputs.metrics import read_experiment


def test_help_lists_the_commands(tmp_path):
    result = run_cli(["--help"], cwd=tmp_path)
    assert result.returncode == 0
    for command in ("data", "list", "run", "report", "--params"):
        assert command in result.stdout


def test_commands_that_train_nothing_import_no_keras(project, prefect_server):
    """Keras' import takes seconds: `kerasflow list`, `report` and a params file with a bad key answer without it,
    and a bad Keras name is still found (the second pass) by the commands that build models."""
    import subprocess
    import sys

    def imports_keras(argv: list[str]) -> tuple[int, bool]:
        code = ("import sys; from kerasflow.flows.cli import main; status = main(" + repr(argv) + "); "
                "print(status, 'keras' in sys.modules)")
        done = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True, check=True,
                              env={**os.environ, "PREFECT_API_URL": prefect_server})
        status, keras = done.stdout.split()[-2:]
        return int(status), keras == "True"

    assert imports_keras(["list"]) == (0, False)
    raw = tiny_params()
    raw["experiments"]["iris"]["train"]["epoch"] = raw["experiments"]["iris"]["train"].pop("epochs")
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    assert imports_keras(["run", "iris"]) == (2, False)
    raw["experiments"]["iris"]["train"]["epochs"] = raw["experiments"]["iris"]["train"].pop("epoch")
    raw["experiments"]["iris"]["model"]["layers"][0]["activation"] = "relux"
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    assert imports_keras(["list"]) == (0, False)
    assert imports_keras(["report"]) == (0, False)
    assert "| iris |" in (project / "reports/summary.md").read_text()
    assert imports_keras(["run", "iris"]) == (2, True)


def test_a_users_headerless_csv_runs_by_editing_params_alone(project, prefect_server):
    rows = (project / "data/iris.csv").read_text().splitlines()[1:]
    (project / "data/mine.csv").write_text("\n".join(rows) + "\n")
    raw = tiny_params()
    mine = raw["experiments"]["iris"]
    mine["dataset"] = {"file": "data/mine.csv", "header": False, "target": 4, "task": "multiclass"}
    raw["experiments"] = {"mine": mine}
    (project / "params.yaml").write_text(yaml.safe_dump(raw))

    listed = run_cli(["list"], cwd=project)
    assert listed.stdout.startswith("mine\tdata/mine.csv\tmulticlass\tkfold")
    result = run_cli(["run", "mine"], cwd=project, env={"PREFECT_API_URL": prefect_server})
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = read_experiment(project / "results/mine")
    assert metrics["metric"] == "accuracy" and metrics["n_folds"] == 3 and metrics["mean"] > 0.6
    assert result.stdout == (f"mine: accuracy {metrics['mean']:.4f} ± {metrics['std']:.4f} over 3 folds "
                             f"-> results/mine\n")
    saved = json.loads((project / "results/mine/model/preprocessing.json").read_text())
    assert saved["features"]["columns"] == ["0", "1", "2", "3"]

    # With PREFECT_API_URL set, the runs are recorded on that server (not a temporary one).
    (experiment_run,) = prefect_api(f"{prefect_server}/flow_runs/filter", {
        "flow_runs": {"id": {"any_": flow_runs_in(result.stderr)}},
        "flows": {"name": {"any_": ["kerasflow-experiment"]}}})
    assert experiment_run["parameters"]["name"] == "mine"
    assert experiment_run["state_type"] == "COMPLETED"
    assert "Starting temporary server" not in result.stderr
    # There Prefect's settings decide on heartbeats (on by default): they let that server notice a run that died.
    heartbeats = {"event": {"name": ["prefect.flow-run.heartbeat"]},
                  "resource": {"id": [f"prefect.flow-run.{experiment_run['id']}"]}}
    deadline = time.monotonic() + 30  # the server stores events in batches, every few seconds
    while not prefect_api(f"{prefect_server}/events/filter", {"filter": heartbeats})["events"]:
        assert time.monotonic() < deadline, "no heartbeat of the experiment's flow run reached the server"
        time.sleep(1)


def test_a_hold_out_prints_its_one_score_not_a_spread_over_one_fold():
    from kerasflow.flows.cli import score_line

    held_out = {"metric": "accuracy", "mean": 0.861, "std": 0.0, "n_folds": 1}
    assert score_line(held_out) == "accuracy 0.8610 on the held-out rows"


def _temporary_server_port(output: str) -> int:
    found = re.search(r"Starting temporary server on http://127\.0\.0\.1:(\d+)", output)
    assert found, output[-3000:]
    return int(found[1])


def _port_is_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _servers_of(prefect_home: Path) -> list[psutil.Process]:
    """Prefect API server processes (uvicorn) still running with `prefect_home` as their PREFECT_HOME."""
    found = []
    for proc in psutil.process_iter():
        try:
            if "uvicorn" in proc.cmdline() and proc.environ().get("PREFECT_HOME") == str(prefect_home):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _events_stored(database: Path) -> Counter[str]:
    """How many events of each name a stopped Prefect server left in its SQLite database."""
    with contextlib.closing(sqlite3.connect(database)) as db:
        return Counter(name for name, in db.execute("SELECT event FROM events"))


def test_with_no_prefect_server_set_a_run_starts_a_temporary_one_and_stops_it(project, tmp_path):
    """The default with nothing set: a temporary server (started by kerasflow as the command starts, so that it
    boots during the imports) serves the run and is stopped when the command ends; a command that fails before its
    flows prints its one message and leaves no server behind."""
    home = tmp_path / "prefect_home"
    env = {"PREFECT_API_URL": "", "PREFECT_HOME": str(home)}
    result = run_cli(["run", "iris", "--smoke-test", "--results", "results"], cwd=project, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "iris: accuracy" in result.stdout
    assert result.stderr.count("Starting temporary server") == 1
    assert "View at" not in result.stderr  # no links to a UI that is not served
    assert "Error" not in result.stderr, result.stderr[-3000:]  # every log reached the server before it stopped
    assert _port_is_closed(_temporary_server_port(result.stderr))
    assert _servers_of(home) == []
    # Its runs sent no heartbeats: they would tell a server that outlives a run that the run died; this one does not.
    # (Task-run events come from the command, as heartbeats would: they did reach the server.)
    recorded = _events_stored(home / "prefect.db")
    assert recorded["prefect.task-run.Completed"] > 0 and recorded["prefect.flow-run.heartbeat"] == 0, recorded

    (project / "data/iris.csv").unlink()
    failed = run_cli(["run", "iris", "--smoke-test", "--results", "results"], cwd=project, env=env)
    assert failed.returncode == 2 and failed.stderr.strip().splitlines() == [
        "kerasflow: error: data/iris.csv: file not found (params.yaml:experiments.iris.dataset.file)"]
    assert _servers_of(home) == []


def test_a_prefect_server_set_where_none_answers_is_named_in_one_line_before_anything_is_written(project):
    """A PREFECT_API_URL (a server stopped, a port mistyped) with nothing behind it: one line naming it, exit 2,
    and no results folder, not Prefect's traceback from the first flow."""
    url = f"http://127.0.0.1:{free_port()}/api"
    result = run_cli(["run", "iris", "--results", "results"], cwd=project, env={"PREFECT_API_URL": url})
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"kerasflow: error: PREFECT_API_URL={url}: no Prefect server answers there ([Errno 111] Connection refused); "
        "start it (`kerasflow server start` for kerasflow's local one), or unset PREFECT_API_URL so that kerasflow "
        "starts a temporary one"]
    assert not (project / "results").exists()


def test_a_prefect_api_url_that_is_no_url_or_answers_no_http_is_refused_too():
    """Not only a closed port: a URL Python cannot read, and a port where something else answers (not HTTP), are
    refused as having no Prefect server, not left to end the command in a traceback."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)

        def banner() -> None:
            connection, _ = other.accept()
            with connection:
                connection.recv(1024)
                connection.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

        thread = threading.Thread(target=banner, daemon=True)
        thread.start()
        for url in ("http://127.0.0.1:abc/api", f"http://127.0.0.1:{other.getsockname()[1]}/api"):
            with temporary_settings(updates={PREFECT_API_URL: url}), pytest.raises(
                    ServiceError, match=f"^PREFECT_API_URL={re.escape(url)}: no Prefect server answers there "):
                check_configured_api()
        thread.join(timeout=10)


def test_a_server_named_in_prefect_toml_is_used_and_no_temporary_one(project, prefect_server, tmp_path,
                                                                      monkeypatch):
    """Prefect's own settings files count as much as PREFECT_API_URL: the early-started server is dropped unused."""
    home = tmp_path / "prefect_home"
    (project / "prefect.toml").write_text(f'[api]\nurl = "{prefect_server}"\n')
    monkeypatch.delenv("PREFECT_API_URL", raising=False)  # unset: even empty, the variable would win over the file
    result = run_cli(["run", "iris", "--smoke-test", "--results", "results"], cwd=project,
                     env={"PREFECT_HOME": str(home)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Starting temporary server" not in result.stderr
    flow_run_ids = flow_runs_in(result.stderr)
    assert flow_run_ids, result.stderr[-3000:]  # the configured server has a UI to link to
    with urllib.request.urlopen(f"{prefect_server}/flow_runs/{flow_run_ids[0]}", timeout=10) as response:
        assert json.loads(response.read())["state_type"] == "COMPLETED"
    assert _servers_of(home) == []


def test_a_temporary_server_in_use_has_prefect_point_at_it_without_heartbeats_until_it_stops(monkeypatch):
    """In this process: while in use, Prefect's settings name the server and send no heartbeats, even inside an
    outer settings context; once stopped, the settings and the environment are as before."""
    from prefect.settings import (
        PREFECT_API_URL,
        get_current_settings,
        temporary_settings,
    )

    from kerasflow.flows.prefect_server import TemporaryServer

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):  # whatever an earlier test set: no server named
        before = get_current_settings()
        server = TemporaryServer.launch()
        try:
            server.use()
            in_use = get_current_settings()
            assert in_use.api.url == os.environ["PREFECT_API_URL"] == server.url
            assert in_use.flows.heartbeat_frequency is None
        finally:
            server.stop()
        after = get_current_settings()
        assert after.api.url is None and after.flows.heartbeat_frequency == before.flows.heartbeat_frequency > 0
    assert "PREFECT_API_URL" not in os.environ
    assert server.process is None and server.log is None


def test_an_early_server_that_did_not_come_up_leaves_the_start_to_prefect(monkeypatch, capsys):
    """Its process gone before the first flow: one note, Prefect's settings untouched (Prefect starts its own)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from kerasflow.flows.prefect_server import TemporaryServer

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    server = TemporaryServer.launch()
    server.process.kill()
    server.process.wait()
    with temporary_settings(restore_defaults={PREFECT_API_URL}):  # whatever an earlier test set: no server named
        server.use()
        assert PREFECT_API_URL.value() is None
    assert "PREFECT_API_URL" not in os.environ
    assert capsys.readouterr().err.startswith(
        "kerasflow: the early Prefect server did not come up (exit status -9); Prefect starts its own")
    assert server.process is None and server.log is None
