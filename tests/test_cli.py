"""The `kerasflow` command as a user runs it: help, a user's header-less CSV, a Prefect server.

Bad input (params, data, predict rows) is tested case by case in tests/faults/test_bad_input.py.
"""

from __future__ import annotations

import json
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
