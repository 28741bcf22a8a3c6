"""Sweeps on an existing cluster, as a user starts one: a real `ray start --head` on 127.0.0.1 with Ray's token
authentication on and its dashboard (Ray Jobs) bound to 127.0.0.1, stopped at the end.

- joined through `RAY_ADDRESS` with `RAY_AUTH_MODE=token` and the token, the sweep runs there, in warm trainers
  (flows/warm_trainers.py) that the next sweep reuses, with the same scores as in the trials' own processes; a
  trial whose process is killed stops its trainer's training and is retried from its checkpoint, its histories
  whole;
- with no token, the wrong one, or no head at the address, `kerasflow tune` exits 2 in seconds with one line saying
  which (Ray's own connect retries for ~20 s, then raises a traceback);
- `ray job submit --working-dir . -- kerasflow tune <experiment>` runs the sweep as a Ray job and its results come
  back.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import psutil
import pytest
import yaml
from helpers import BIN, asha_params, read_trials, start_ray_head, stop_session, sweep_params, whole_histories

from kerasflow.flows.prefect_server import free_port
from kerasflow.flows.ray_cluster import check_head
from kerasflow.tasks.config.errors import SweepError
from kerasflow.tasks.outputs.metrics import read_sweep_best

pytestmark = pytest.mark.slow


class Head(NamedTuple):
    address: str  # the GCS address, RAY_ADDRESS's value
    dashboard: str  # the dashboard's URL, for `ray job submit`
    token: str
    pid: int  # `ray start`'s: Ray's workers are among its descendants

    @property
    def joined(self) -> dict[str, str]:
        """The environment a driver joins the head with, token and all."""
        return {"RAY_ADDRESS": self.address, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory) -> Iterator[Head]:
    """A head of its own (helpers.start_ray_head), its dashboard on for `ray job submit`."""
    token, dashboard = secrets.token_hex(16), free_port()
    temp_dir = tempfile.mkdtemp(prefix="kf-ray-", dir="/tmp")
    head, address = start_ray_head(tmp_path_factory.mktemp("ray-head") / "head.log", token, temp_dir, dashboard)
    try:
        yield Head(address, f"http://127.0.0.1:{dashboard}", token, head.pid)
    finally:
        stop_session(head.pid, leader_first=True)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def on_the_runs_prefect_server(prefect_server, monkeypatch):
    """The `kerasflow tune` drivers below record their flow runs on the run's Prefect server rather than each
    starting a temporary one (`ray job submit`'s job is told it in its runtime environment)."""
    monkeypatch.setenv("PREFECT_API_URL", prefect_server)


@pytest.fixture
def sweep_project(tmp_path, bundled_data) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data/breast_cancer.csv").write_bytes((bundled_data / "breast_cancer.csv").read_bytes())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(sweep_params(epochs=2), sort_keys=False))
    return tmp_path


def _driver_env(env: dict[str, str]) -> dict[str, str]:
    """This process's environment with `env`'s Ray settings in place of any it has (the suite's own kept Ray)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH"))}
    return {**clean, **env}


def _tune(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "kerasflow"), "tune", "cancer", *args], cwd=project, env=_driver_env(env),
                          capture_output=True, text=True, timeout=600)


def test_a_driver_without_the_token_is_refused_in_seconds_with_one_line(ray_head, sweep_project):
    """The one line is :func:`check_head`'s, asked before `ray.init`, whose ~20 s of retries would end in a
    traceback."""
    address = ray_head.address
    result = _tune(sweep_project, {"RAY_ADDRESS": address})
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [
        f"kerasflow: error: RAY_ADDRESS={address}: the cluster uses Ray's token authentication and this driver "
        "sends no token: set RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH, "
        "or ~/.ray/auth_token); `ray get-auth-token` on the head prints it"]
    assert not (sweep_project / "results").exists()


def test_a_wrong_or_missing_token_or_no_head_is_named(ray_head, tmp_path, monkeypatch):
    """The same check in this process (the command's one-line report of it is tested above)."""
    address = ray_head.address
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "not-the-token")
    with pytest.raises(SweepError, match="the cluster refused the token from RAY_AUTH_TOKEN"):
        check_head(address)
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(SweepError, match="RAY_AUTH_MODE=token but no token found"):
        check_head(address)
    nobody = f"127.0.0.1:{free_port()}"
    with pytest.raises(SweepError, match=f"RAY_ADDRESS={nobody}: no Ray head answers there"):
        check_head(nobody)


def test_a_sweep_asking_for_more_than_any_node_is_refused_in_one_line(ray_head, sweep_project):
    """Joined with the token, the refusal is the command's only line: Ray's notes on joining stay out of it."""
    raw = sweep_params(epochs=2, gpu=1)
    (sweep_project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    result = _tune(sweep_project, ray_head.joined)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [
        "kerasflow: error: sweeps.cancer: each trial asks for cpu=1, gpu=1 but no node of the cluster has that much "
        "(127.0.0.1: 2 CPU, 0 GPU)"]
    assert not (sweep_project / "results").exists()


def _trainer_pids(tune_dir: Path) -> set[int]:
    """The warm trainers' processes that trained a sweep's trials (from Ray Tune's results); none if none did."""
    reports = [json.loads(line) for results in (tune_dir / "ray/sweep").glob("*/result.json")
               for line in results.read_text().splitlines()]
    return {report["trainer_pid"] for report in reports if "trainer_pid" in report}


def test_sweeps_on_the_cluster_train_in_warm_trainers_that_later_sweeps_reuse(ray_head, sweep_project):
    """With the token the sweep runs on the cluster: quietly in warm trainers it leaves there, which the next sweep
    trains in; with `--verbose` in the trials' own processes, whose output it shows. All three score alike."""
    output = {}
    for run, flags in (("first", ()), ("second", ()), ("verbose", ("--verbose",))):
        result = _tune(sweep_project, ray_head.joined, "--results", run, *flags)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "cancer: best accuracy" in result.stdout
        if not flags:  # the command's one line, none of Ray Tune's
            assert len(result.stdout.splitlines()) == 1, result.stdout
        output[run] = result.stdout + result.stderr
    tune_dirs = {run: sweep_project / run / "cancer/tune" for run in output}
    first, second = _trainer_pids(tune_dirs["first"]), _trainer_pids(tune_dirs["second"])
    assert first and second and second <= first, (first, second)
    assert not _trainer_pids(tune_dirs["verbose"])
    assert "(run_trial_process pid=" in output["verbose"]  # the trials' own output, sent by Ray
    scores = {run: sorted((row["config_id"], row["fold_scores"]) for row in read_trials(tune_dir))
              for run, tune_dir in tune_dirs.items()}
    assert len(scores["first"]) == 4
    assert scores["first"] == scores["second"] == scores["verbose"]


def _reports(trial_dir: Path) -> list[dict]:
    """The reports Ray Tune has logged for a trial so far (a line being written is left out)."""
    reports = []
    for line in (trial_dir / "result.json").read_text().splitlines() if (trial_dir / "result.json").is_file() else []:
        try:
            reports.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return reports


def test_a_trial_asha_stops_in_a_warm_trainer_logs_no_epoch_past_its_last_report(ray_head, sweep_project):
    """A warm trainer trains ahead of Ray Tune unless it waits: it logs an epoch only once Tune took the last
    report, so the hopeless trial ASHA stops holds every fold's epochs up to the one it stopped at, and no more."""
    (sweep_project / "params.yaml").write_text(yaml.safe_dump(asha_params(epochs=40), sort_keys=False))
    result = _tune(sweep_project, ray_head.joined)
    assert result.returncode == 0, result.stderr[-3000:]
    tune_dir = sweep_project / "results/cancer/tune"
    assert _trainer_pids(tune_dir)
    rows = whole_histories(tune_dir)
    epochs = {float(row["param:train.learning_rate"]): int(row["epochs"]) for row in rows}
    assert epochs[0.05] == 40 and epochs[1e-7] < 40


def test_a_trial_killed_in_a_warm_trainer_stops_its_training_and_is_retried_with_whole_histories(ray_head,
                                                                                                 sweep_project):
    """SIGKILL a trial's process, once it has a checkpoint of its own, while a warm trainer trains for it: the
    trainer sees its trial's process end and stops that training by itself within seconds (it would end itself
    after 10 s) and stays warm; Ray Tune retries the trial from a checkpoint it had written, and each config's
    folds hold every epoch once (none lost, none logged twice)."""
    epochs, every = 500, 100
    (sweep_project / "params.yaml").write_text(yaml.safe_dump(
        sweep_params(epochs=epochs, checkpoint_every=every, max_concurrent_trials=1), sort_keys=False))
    driver = subprocess.Popen([str(BIN / "kerasflow"), "tune", "cancer"], cwd=sweep_project,
                              env=_driver_env(ray_head.joined), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    sweep_dir = sweep_project / "results/cancer/tune/ray/sweep"
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and time.monotonic() < deadline and driver.poll() is None:
        trials = [p for p in psutil.Process(ray_head.pid).children(recursive=True) if "ImplicitFunc" in _title(p)]
        for trial_dir in (d for d in sweep_dir.glob("*/") if any(d.glob("checkpoint_*"))):
            reports = _reports(trial_dir)
            # Training, well before its end, and Ray Tune holds a checkpoint: it has logged the report that carries
            # one. A checkpoint folder on disk whose report it has not taken yet is not Tune's: the retry would start
            # from scratch.
            if len(trials) == 1 and reports and every <= reports[-1]["epoch"] < epochs - every:
                os.kill(trials[0].pid, signal.SIGKILL)
                killed = trial_dir, reports[-1]["trainer_pid"]
                break
        time.sleep(0.05)
    assert killed is not None, "no trial was seen training in a warm trainer past a checkpoint"
    trial_dir, trainer = killed
    # The epochs of the checkpoints the killed trial had written (checkpoint_000000 after epoch `every`, one every
    # `every` epochs after): a trial writes each before the driver logs its report, so the log may lag behind them.
    written = {every * (1 + int(path.name.removeprefix("checkpoint_"))) for path in trial_dir.glob("checkpoint_*")}
    output, _ = driver.communicate(timeout=600)
    assert driver.returncode == 0, output[-3000:]
    assert psutil.pid_exists(trainer), "the killed trial's trainer trained on until it ended itself"
    reports = _reports(trial_dir)
    retried = next(report["epoch"] for report in reports if report["started_at"] != reports[0]["started_at"])
    assert retried - 1 in written, f"the retry's first epoch is {retried}: not one after a checkpoint {sorted(written)}"
    rows = whole_histories(sweep_project / "results/cancer/tune")
    assert len(rows) == 4 and all(row["status"] == "ok" and row["epochs"] == str(epochs) for row in rows)
    for row in rows:
        history = sweep_project / "results/cancer/tune/history" / row["config_id"]
        steps = (history / "plots/metrics/fold_01/val_accuracy.tsv").read_text().splitlines()[1:]
        assert [int(line.split("\t")[0]) for line in steps] == list(range(1, epochs + 1))


def _title(process: psutil.Process) -> str:
    """A process's title (a Ray worker's names its actor class: `ray::ImplicitFunc`)."""
    try:
        return " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return ""


def test_ray_job_submit_runs_the_sweep_and_its_results_come_back(ray_head, sweep_project, tmp_path, prefect_server):
    results = tmp_path / "job-results"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}, "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": ray_head.token}
    # The job runs in the head's environment: the run's Prefect server is named in the job's own.
    runtime_env = json.dumps({"env_vars": {"PREFECT_API_URL": prefect_server}})
    job = subprocess.run([str(BIN / "ray"), "job", "submit", "--address", ray_head.dashboard, "--working-dir", ".",
                          "--runtime-env-json", runtime_env,
                          "--", "kerasflow", "tune", "cancer", "--results", str(results)],
                         cwd=sweep_project, env=env, capture_output=True, text=True, timeout=600)
    assert job.returncode == 0, (job.stdout + job.stderr)[-5000:]
    assert "cancer: best accuracy" in job.stdout and "succeeded" in job.stdout + job.stderr
    best = read_sweep_best(results / "cancer/tune")
    assert best["n_configs"] == 4 and best["metric"] == "accuracy"
    assert (results / "cancer/tune/best_model/model.keras").is_file()
