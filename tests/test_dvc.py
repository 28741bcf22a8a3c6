"""Real DVC in a temporary git repo: repro, nothing-to-do, a changed param reruns only its stage, exp run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import yaml

from conftest import BIN, ROOT


def _run(args: list[str], cwd, env) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture
def repo(project, prefect_server):
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, project / name)
    for package in ("tasks", "flows"):
        shutil.copytree(ROOT / package, project / package, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PREFECT_API_URL": prefect_server,
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    for args in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"],
                 ["dvc", "add", "-q", "data"], ["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        _run(args, project, env)
    return project, env


def test_repro_then_nothing_then_only_the_changed_experiment(repo):
    path, env = repo
    first = _run(["dvc", "repro"], path, env)
    for stage in ("evaluate@iris", "evaluate@diabetes", "report"):
        assert f"Running stage '{stage}'" in first.stdout
    assert json.loads((path / "results/iris/metrics.json").read_text())["n_folds"] == 3
    assert (path / "results/iris/model/model.keras").is_file()
    assert "| diabetes | mse |" in (path / "reports/summary.md").read_text()

    second = _run(["dvc", "repro"], path, env)
    assert "Running stage" not in second.stdout
    assert "Data and pipelines are up to date" in second.stdout

    params = yaml.safe_load((path / "params.yaml").read_text())
    params["experiments"]["iris"]["train"]["epochs"] = 10
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = _run(["dvc", "status"], path, env).stdout
    assert "evaluate@iris" in status and "evaluate@diabetes" not in status
    third = _run(["dvc", "repro"], path, env)
    assert "Running stage 'evaluate@iris'" in third.stdout
    assert "Running stage 'evaluate@diabetes'" not in third.stdout

    _run(["git", "add", "-A"], path, env)
    _run(["git", "commit", "-qm", "baseline"], path, env)
    _run(["dvc", "exp", "run", "-S", "experiments.diabetes.train.epochs=1"], path, env)
    diff = _run(["dvc", "metrics", "diff", "--json"], path, env).stdout
    changed = json.loads(diff)["results/diabetes/metrics.json"]
    assert changed["mean"]["old"] != changed["mean"]["new"]
    assert "results/iris/metrics.json" not in json.loads(diff) or not json.loads(diff)["results/iris/metrics.json"]
