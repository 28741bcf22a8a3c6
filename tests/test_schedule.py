"""`kerasflow schedule`: deployments in a Prefect work pool, run by real workers on real servers on 127.0.0.1.

- With no server configured, the command starts kerasflow's local server (with its scheduler) and a worker, both
  kept running: a one-minute cron fires and its run writes results; a triggered run does too; a later `kerasflow
  run` uses the same server, and so does `--serve`, which a Ctrl-C stops and pauses; `kerasflow server stop`
  ends both.
- With a server configured, it deploys there and a worker the user starts (here, the test) runs the deployment.
- `--serve` serves the schedule from the command itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import psutil
import pytest
import yaml
from helpers import BIN, run_cli, stop_session
from prefect.client.orchestration import get_client
from prefect.client.schemas import filters
from prefect.client.schemas.objects import DeploymentStatus, StateType
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from kerasflow.flows.cli import main
from kerasflow.flows.local_server import ANSWER_WAIT, LocalServer, process_start
from kerasflow.flows.prefect_server import free_port
from kerasflow.flows.schedule import record_deployment
from kerasflow.tasks.outputs.metrics import read_experiment

DEPLOYMENT = "kerasflow-scheduled/iris"
SERVED = "kerasflow-scheduled/diabetes"


async def _deployment(name: str):
    async with get_client() as client:
        return await client.read_deployment_by_name(name)


async def _completed_runs(deployment_id) -> list:
    async with get_client() as client:
        return await client.read_flow_runs(
            deployment_filter=filters.DeploymentFilter(id=filters.DeploymentFilterId(any_=[deployment_id])),
            flow_run_filter=filters.FlowRunFilter(state=filters.FlowRunFilterState(
                type=filters.FlowRunFilterStateType(any_=[StateType.COMPLETED]))))


def _wait_for(condition, what: str, log: Path, timeout: float):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} in {timeout:g} s; log:\n{log.read_text()[-5000:]}")
        time.sleep(2)
    return result


def _iris_metrics(results: Path) -> dict:
    metrics = read_experiment(results / "iris")
    assert metrics["metric"] == "accuracy" and len(metrics["folds"]) == 3
    return metrics


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_with_no_server_configured_the_cron_fires_on_a_local_server_and_worker_that_outlive_the_command(
        project, tmp_path):
    home = tmp_path / "prefect-home"
    env = {**{k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}, "PREFECT_HOME": str(home)}

    def kerasflow(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "kerasflow"), *args], cwd=project, env=env, capture_output=True, text=True,
                              timeout=600)

    try:
        scheduled = kerasflow("schedule", "iris", "--cron", "* * * * *")
        assert scheduled.returncode == 0, scheduled.stderr[-3000:]
        assert f"{DEPLOYMENT}: deployed on cron '* * * * *' to work pool '{project.name}'" in scheduled.stdout
        assert "kerasflow server stop" in scheduled.stdout
        state = json.loads((home / "kerasflow-server.json").read_text())
        assert state["url"].startswith("http://127.0.0.1:") and list(state["workers"]) == [project.name]
        deployments = yaml.safe_load((project / "prefect.yaml").read_text())["deployments"]
        assert [(d["name"], d["schedules"], d["work_pool"]["name"]) for d in deployments] == [
            ("iris", [{"cron": "* * * * *"}], project.name)]

        with temporary_settings(updates={PREFECT_API_URL: state["url"]}):
            deployment = asyncio.run(_deployment(DEPLOYMENT))
            assert deployment.work_pool_name == project.name
            # The scheduler's run, at the top of a minute: made by the server, not by this test.
            runs = _wait_for(lambda: [r for r in asyncio.run(_completed_runs(deployment.id)) if r.auto_scheduled],
                             "completed scheduled run", home / f"kerasflow-worker-{project.name}.log", timeout=200)
        assert runs[0].parameters["results_dir"] == "results"
        _iris_metrics(project / "results")
        assert "| iris | accuracy |" in (project / "reports/summary.md").read_text()

        listening = {conn.laddr.ip for proc in psutil.process_iter() if _group(proc.pid) in _groups(state)
                     for conn in _connections(proc) if conn.status == psutil.CONN_LISTEN}
        assert listening == {"127.0.0.1"}

        # A later command with no server configured uses the same server: its run is listed there.
        with temporary_settings(updates={PREFECT_API_URL: state["url"]}):
            before = asyncio.run(_experiment_runs())
        ran = kerasflow("run", "diabetes", "--smoke-test", "--results", "results")
        assert ran.returncode == 0, ran.stderr[-3000:]
        assert "Starting temporary server" not in ran.stderr
        with temporary_settings(updates={PREFECT_API_URL: state["url"]}):
            assert asyncio.run(_experiment_runs()) - before == {"diabetes"}

        # `--serve` with no server configured serves on the same server, and says it stays after the command;
        # interrupted once it serves (its runner has polled the server), it stops and pauses its schedule.
        serve_log = home / "serve.log"
        with open(serve_log, "w") as log:
            # No core file from the SIGABRT of `_end`: only the stacks Python's faulthandler writes to the log.
            serving = subprocess.Popen(["sh", "-c", 'ulimit -c 0 && exec "$0" "$@"', str(BIN / "kerasflow"),
                                        "schedule", "diabetes", "--cron", "0 3 * * *", "--serve"], cwd=project,
                                       env={**env, "PYTHONFAULTHANDLER": "1"}, stdout=subprocess.PIPE, stderr=log,
                                       text=True, start_new_session=True)
        try:
            said = serving.stdout.readline().strip()
            assert said == (f"serving from this command on kerasflow's local Prefect server, "
                            f"{state['url'].removesuffix('/api')}, which keeps running after it (kerasflow server "
                            f"stop)"), serve_log.read_text()[-3000:]
            with temporary_settings(updates={PREFECT_API_URL: state["url"]}):
                _wait_for(lambda: _running(serving, serve_log) and _polled(asyncio.run(_deployment_or_none(SERVED))),
                          "polled served deployment", serve_log, timeout=120)
                os.killpg(serving.pid, signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    serving.communicate(timeout=60)
        finally:
            _end(serving, serve_log)
        assert serving.returncode == 0, serve_log.read_text()[-5000:]
        with temporary_settings(updates={PREFECT_API_URL: state["url"]}):
            assert asyncio.run(_deployment(SERVED)).paused
    finally:
        stopped = kerasflow("server", "stop")
    assert stopped.returncode == 0 and stopped.stdout.strip() == "stopped", stopped.stderr
    assert not (home / "kerasflow-server.json").exists()
    assert [p.info for p in psutil.process_iter(["pid", "name", "status"])
            if _group(p.pid) in _groups(state) and p.info["status"] != psutil.STATUS_ZOMBIE] == []
    status = kerasflow("server", "status")
    assert (status.returncode, status.stdout.strip()) == (1, "not running")


def _polled(deployment) -> bool:
    """Whether a runner or worker has asked the server for `deployment`'s runs (None: not registered yet)."""
    return deployment is not None and deployment.status == DeploymentStatus.READY


def _running(process: subprocess.Popen, log: Path) -> bool:
    """True while `process` runs; an assertion error with its log once it has exited."""
    assert process.poll() is None, f"exit status {process.returncode}; log:\n{log.read_text()[-5000:]}"
    return True


def _end(process: subprocess.Popen, log: Path) -> None:
    """Kill `process`'s session (what is left of it), if it still runs first dumping its threads' stacks to `log`
    (the process runs with Python's faulthandler, which writes them on SIGABRT): why it did not stop is then in
    its log."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGABRT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.communicate()


def _groups(state: dict) -> set[int]:
    """The process groups of the local server and its workers, as kerasflow-server.json records them."""
    return {state["pid"], *state["workers"].values()}


def _connections(process: psutil.Process) -> list:
    try:
        return process.net_connections(kind="inet")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def _group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


async def _experiment_runs() -> set[str]:
    """The `name` parameter of every experiment flow run on the server: the experiments run there."""
    async with get_client() as client:
        runs = await client.read_flow_runs(flow_filter=filters.FlowFilter(
            name=filters.FlowFilterName(any_=["kerasflow-experiment"])))
    return {run.parameters["name"] for run in runs}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_on_a_configured_server_a_worker_the_user_starts_runs_the_deployment(project, prefect_server, tmp_path):
    env = {"PREFECT_API_URL": prefect_server, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    scheduled = run_cli(["schedule", "iris", "--cron", "0 3 * * *"], cwd=project, env=env)
    assert scheduled.returncode == 0, scheduled.stderr[-3000:]
    assert f"a worker runs them: prefect worker start --pool {project.name}" in scheduled.stdout
    assert not (tmp_path / "prefect-home/kerasflow-server.json").exists()  # no local server of kerasflow's

    log = tmp_path / "worker.log"
    with open(log, "w") as out:
        worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", project.name],
                                  env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        with temporary_settings(updates={PREFECT_API_URL: prefect_server}):
            run = run_deployment(DEPLOYMENT, timeout=300, poll_interval=2)
        assert run.state.is_completed(), f"{run.state}; worker log:\n{log.read_text()[-5000:]}"
        _iris_metrics(project / "results")
    finally:
        # Killed for sure: a worker left polling the pool would take the next test's run of the same deployment.
        stop_session(worker.pid)


def test_a_deployment_is_named_by_its_experiments_in_any_order_and_recorded_once(tmp_path):
    prefect_file = tmp_path / "prefect.yaml"
    args = (Path("params.yaml"), Path("results"), Path("reports/summary.md"))
    assert record_deployment(prefect_file, ["iris", "diabetes"], "0 3 * * *", *args) == ("diabetes+iris",
                                                                                          tmp_path.name)
    assert record_deployment(prefect_file, ["diabetes", "iris"], "0 4 * * *", *args) == ("diabetes+iris",
                                                                                          tmp_path.name)
    record_deployment(prefect_file, ["iris"], "0 5 * * *", *args)
    project = yaml.safe_load(prefect_file.read_text())
    assert [(d["name"], d["schedules"][0]["cron"], d["parameters"]["experiments"])
            for d in project["deployments"]] == [("diabetes+iris", "0 4 * * *", ["diabetes", "iris"]),
                                                  ("iris", "0 5 * * *", ["iris"])]


async def _deployment_or_none(name: str):
    try:
        return await _deployment(name)
    except Exception:  # not registered yet: the serving process is still importing
        return None


@pytest.mark.slow
def test_serve_runs_the_deployment_from_the_command_itself(project, prefect_server):
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    log_path = project / "serve.log"
    with open(log_path, "w") as log:
        served = subprocess.Popen([str(BIN / "kerasflow"), "schedule", "iris", "--cron", "0 3 * * *", "--serve"],
                                  cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        with temporary_settings(updates={PREFECT_API_URL: prefect_server}):
            deployment = _wait_for(lambda: served.poll() is None and asyncio.run(_deployment_or_none(DEPLOYMENT)),
                                   "deployment", log_path, timeout=180)
            assert [s.schedule.cron for s in deployment.schedules] == ["0 3 * * *"]
            run = run_deployment(DEPLOYMENT, timeout=400, poll_interval=2)
        assert run.state.is_completed(), f"{run.state}; serve log:\n{log_path.read_text()}"
        _iris_metrics(project / "results")
        assert not (project / "prefect.yaml").exists()  # served, not deployed
    finally:
        os.killpg(served.pid, signal.SIGINT)
        try:
            served.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(served.pid, signal.SIGKILL)


@pytest.mark.timeout(120)  # were the check ever lost, serving would block here
def test_a_bad_cron_or_experiment_exits_2_before_anything_starts(project, monkeypatch, capsys, tmp_path):
    """Refused before any server starts. In this process: `kerasflow.flows.cli.main`, what the console script runs
    (the console script's exit status and one-line message are tested in tests/faults/test_bad_input.py)."""
    monkeypatch.chdir(project)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    assert main(["schedule", "iris", "--cron", "every night"]) == 2
    assert capsys.readouterr().err == ("kerasflow: error: `--cron` must be a cron expression such as '0 3 * * *'. "
                                       "Received: 'every night'\n")

    assert main(["schedule", "irsi", "--cron", "0 3 * * *"]) == 2
    unknown = capsys.readouterr().err
    assert "irsi" in unknown and "iris" in unknown
    assert LocalServer.recorded() is None and not (project / "prefect.yaml").exists()

    (project / "prefect.yaml").write_text("deployments: []\n")  # no project name: no work pool to deploy to
    assert main(["schedule", "iris", "--cron", "0 3 * * *"]) == 2
    assert capsys.readouterr().err == ("kerasflow: error: prefect.yaml: expected a mapping with the project's "
                                       "`name:` (the work pool's name)\n")
    (project / "prefect.yaml").write_text("name: mine\ndeployments: [nightly]\n")
    assert main(["schedule", "iris", "--cron", "0 3 * * *"]) == 2
    assert capsys.readouterr().err == ("kerasflow: error: prefect.yaml: `deployments:` must be a list of mappings, "
                                       "one a deployment (Prefect's prefect.yaml)\n")
    (project / "prefect.yaml").write_bytes("name: caf\u00e9\n".encode("latin-1"))
    assert main(["schedule", "iris", "--cron", "0 3 * * *"]) == 2
    assert capsys.readouterr().err.startswith("kerasflow: error: prefect.yaml: not UTF-8 text (byte 9: ")
    (project / "prefect.yaml").unlink()
    (project / "prefect.yaml").mkdir()
    assert main(["schedule", "iris", "--cron", "0 3 * * *"]) == 2
    assert capsys.readouterr().err == ("kerasflow: error: prefect.yaml: cannot be read (Is a directory); expected a "
                                       "YAML file\n")
    assert LocalServer.recorded() is None


@pytest.mark.slow
def test_a_recorded_server_that_runs_but_does_not_answer_is_refused_not_doubled(tmp_path):
    """The recorded server's process runs (here a session leader recorded with its start time) but its API does not
    answer within ANSWER_WAIT: `kerasflow server start` says so in one line, exit 2, and starts no second server on
    its database, nor signals the process."""
    hung = subprocess.Popen(["sleep", "120"], start_new_session=True)
    home = tmp_path / "prefect-home"
    home.mkdir()
    env = {"PREFECT_HOME": str(home)}
    try:
        url = f"http://127.0.0.1:{free_port()}/api"
        (home / "kerasflow-server.json").write_text(json.dumps({
            "url": url, "pid": hung.pid, "workers": {}, "started": {str(hung.pid): process_start(hung.pid)}}))
        started = run_cli(["server", "start"], cwd=tmp_path, env=env)
        assert started.returncode == 2
        assert started.stderr.strip().splitlines() == [
            f"kerasflow: error: kerasflow's local Prefect server (process {hung.pid}) runs but has not answered at "
            f"{url} for {ANSWER_WAIT:g} s; `kerasflow server stop` ends it and its workers"]
        assert hung.poll() is None and not (home / "kerasflow-server.log").exists()
    finally:
        hung.kill()
        hung.wait()


@pytest.mark.slow
def test_server_commands_signal_recorded_processes_only_while_they_are_the_recorded_ones(tmp_path):
    """A state file whose pids the system has since given to other processes (after a reboot, say; here a session
    leader, as a user's shell is): `kerasflow server status` finds no server, and `server stop` forgets the record
    without a signal to the stranger. A server that died with its worker still running: the next start stops that
    worker, which would poll a dead API for good, and records only its own."""
    stranger = subprocess.Popen(["sleep", "120"], start_new_session=True)
    orphan = subprocess.Popen(["sleep", "120"], start_new_session=True)  # the dead server's worker
    home = tmp_path / "prefect-home"
    home.mkdir()
    env = {"PREFECT_HOME": str(home)}
    try:
        earlier = f"{uuid.uuid4()}:{process_start(stranger.pid).split(':')[-1]}"  # the same ticks, another boot
        (home / "kerasflow-server.json").write_text(json.dumps({
            "url": "http://127.0.0.1:9/api", "pid": stranger.pid, "workers": {"pool": stranger.pid},
            "started": {str(stranger.pid): earlier}}))
        status = run_cli(["server", "status"], cwd=tmp_path, env=env)
        assert (status.returncode, status.stdout.strip()) == (1, "not running")
        stopped = run_cli(["server", "stop"], cwd=tmp_path, env=env)
        assert (stopped.returncode, stopped.stdout.strip()) == (0, "stopped")
        assert stranger.poll() is None and not (home / "kerasflow-server.json").exists()
        # Recorded by a kerasflow that kept no start times: the stranger runs no Prefect, so it is none of these.
        (home / "kerasflow-server.json").write_text(json.dumps({
            "url": "http://127.0.0.1:9/api", "pid": stranger.pid, "workers": {}}))
        assert run_cli(["server", "stop"], cwd=tmp_path, env=env).stdout.strip() == "stopped"
        assert stranger.poll() is None

        (home / "kerasflow-server.json").write_text(json.dumps({
            "url": "http://127.0.0.1:9/api", "pid": 0, "workers": {"pool": orphan.pid},
            "started": {str(orphan.pid): process_start(orphan.pid)}}))
        started = run_cli(["server", "start"], cwd=tmp_path, env=env)
        assert started.returncode == 0, started.stderr[-3000:]
        assert orphan.wait(timeout=30) == -signal.SIGTERM and stranger.poll() is None
        state = json.loads((home / "kerasflow-server.json").read_text())
        assert state["workers"] == {} and list(state["started"]) == [str(state["pid"])]
    finally:
        run_cli(["server", "stop"], cwd=tmp_path, env=env)
        for process in (stranger, orphan):
            process.kill()
            process.wait()
