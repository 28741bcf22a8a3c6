"""`kerasflow schedule`: the pipeline served by Prefect on a cron, against a real `prefect server start`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time

import pytest
from helpers import BIN
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from kerasflow.flows.cli import main

DEPLOYMENT = "kerasflow-scheduled/iris"


async def _deployment(name: str):
    async with get_client() as client:
        return await client.read_deployment_by_name(name)


def _wait_for_deployment(server: subprocess.Popen, log_path, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return asyncio.run(_deployment(DEPLOYMENT))
        except Exception:  # not registered yet: the serving process is still importing
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no deployment {DEPLOYMENT}; serve log:\n{log_path.read_text()}")
            time.sleep(1)


def test_a_scheduled_deployment_runs_to_completed_on_a_real_server(project, prefect_server):
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    log_path = project / "serve.log"
    with open(log_path, "w") as log:
        served = subprocess.Popen([str(BIN / "kerasflow"), "schedule", "iris", "--cron", "0 3 * * *"],
                                  cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        try:
            with temporary_settings(updates={PREFECT_API_URL: prefect_server}):
                deployment = _wait_for_deployment(served, log_path)
                assert [s.schedule.cron for s in deployment.schedules] == ["0 3 * * *"]
                assert deployment.parameters["experiments"] == ["iris"]

                run = run_deployment(DEPLOYMENT, timeout=400, poll_interval=2)
            assert run.state.is_completed(), f"{run.state}; serve log:\n{log_path.read_text()}"
            metrics = json.loads((project / "results/iris/metrics.json").read_text())
            assert metrics["metric"] == "accuracy" and len(metrics["folds"]) == 3
            assert "| iris | accuracy |" in (project / "reports/summary.md").read_text()
        finally:
            os.killpg(served.pid, signal.SIGINT)
            try:
                served.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(served.pid, signal.SIGKILL)


@pytest.mark.timeout(120)  # were the check ever lost, serving would block here
def test_a_bad_cron_or_experiment_exits_2_before_serving(project, monkeypatch, capsys):
    """Refused before anything is served. In this process: `kerasflow.flows.cli.main`, what the console script runs (the
    console script's exit status and one-line message are tested in tests/faults/test_bad_input.py)."""
    monkeypatch.chdir(project)
    assert main(["schedule", "iris", "--cron", "every night"]) == 2
    assert capsys.readouterr().err == ("kerasflow: error: `--cron` must be a cron expression such as '0 3 * * *'. "
                                       "Received: 'every night'\n")

    assert main(["schedule", "irsi", "--cron", "0 3 * * *"]) == 2
    unknown = capsys.readouterr().err
    assert "irsi" in unknown and "iris" in unknown
