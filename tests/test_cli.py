"""The `kerasflow` command as a user runs it: help, a user's header-less CSV, a Prefect server.

Bad input (params, data, predict rows) is tested case by case in tests/faults/test_bad_input.py.
"""

from __future__ import annotations

import json
import re
import socket
import urllib.request

import yaml

from conftest import run_cli, tiny_params


def test_help_lists_the_commands(tmp_path):
    result = run_cli(["--help"], cwd=tmp_path)
    assert result.returncode == 0
    for command in ("data", "list", "run", "report", "--params"):
        assert command in result.stdout


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
    metrics = json.loads((project / "results/mine/metrics.json").read_text())
    assert metrics["metric"] == "accuracy" and metrics["n_folds"] == 3 and metrics["mean"] > 0.6
    saved = json.loads((project / "results/mine/model/preprocessing.json").read_text())
    assert saved["features"]["columns"] == ["0", "1", "2", "3"]

    # With PREFECT_API_URL set, the runs are recorded on that server (not a temporary one).
    request = urllib.request.Request(f"{prefect_server}/flow_runs/filter", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        runs = json.loads(response.read())
    assert any(run["state_type"] == "COMPLETED" for run in runs)
    assert "Starting temporary server" not in result.stderr


def _temporary_server_port(output: str) -> int:
    found = re.search(r"Starting temporary server on http://127\.0\.0\.1:(\d+)", output)
    assert found, output[-3000:]
    return int(found[1])


def _port_is_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_with_no_prefect_server_set_a_run_starts_prefects_temporary_one_and_stops_it(project, tmp_path):
    """The default with nothing set: Prefect's temporary server serves the run and is stopped when the command ends;
    a command that fails before its flows starts none."""
    env = {"PREFECT_API_URL": "", "PREFECT_HOME": str(tmp_path / "prefect_home")}
    result = run_cli(["run", "iris", "--smoke-test"], cwd=project, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "iris: accuracy" in result.stdout
    assert result.stderr.count("Starting temporary server") == 1
    assert _port_is_closed(_temporary_server_port(result.stderr))

    (project / "data/iris.csv").unlink()
    failed = run_cli(["run", "iris", "--smoke-test"], cwd=project, env=env)
    assert failed.returncode == 2 and failed.stderr.strip().splitlines() == [
        "kerasflow: error: data/iris.csv: file not found (params.yaml:experiments.iris.dataset.file)"]
