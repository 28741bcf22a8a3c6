"""Sweeps survive faults: a trial's process killed mid-training, the sweep's driver killed and resumed,
checkpoints kept to `keep_checkpoints` per trial so a long sweep cannot fill the disk, and ASHA stopping a trial
with its history whole up to the epoch it stopped at.

Real Ray (an embedded local cluster), real processes, real SIGKILLs (`os.kill`, `os.killpg`). The sweep helpers
and fixtures are in tests/helpers.py and tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil
import ray
import yaml
from helpers import BIN, asha_params, read_trials, run_cli, sweep_and_export, sweep_params, whole_histories

from kerasflow.tasks.config.schema import parse_params
from kerasflow.tasks.outputs.live import FOLDS_PLOT
from kerasflow.tasks.report import tables
from kerasflow.tasks.report.collect import collect


def test_checkpoints_beyond_keep_checkpoints_are_deleted(cancer_project, local_ray):
    """A checkpoint every epoch for 6 epochs, keep 2: each trial's folder ends with its 2 best, not 6."""
    raw = sweep_params(epochs=6, keep_checkpoints=2, checkpoint_every=1)
    raw["sweeps"]["cancer"]["space"] = {"train.batch_size": {"grid": [16, 32]}}  # two programs, so two trials
    sweep_and_export(raw, cancer_project / "tune")
    trial_dirs = [path for path in (cancer_project / "tune/ray/sweep").iterdir() if (path / "result.json").is_file()]
    assert len(trial_dirs) == 2
    for trial_dir in trial_dirs:
        results = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
        saved = [row["checkpoint_dir_name"] for row in results if row.get("checkpoint_dir_name")]
        assert len(saved) == 6, f"{trial_dir.name} reported {len(saved)} checkpoints, not one per epoch"
        kept = sorted(path.name for path in trial_dir.glob("checkpoint_*"))
        assert len(kept) == 2 and set(kept) <= set(saved), kept
        # The kept ones are the best by score (accuracy: higher), as CheckpointConfig's score attribute says.
        score = {row["checkpoint_dir_name"]: row["score"] for row in results if row.get("checkpoint_dir_name")}
        assert min(score[name] for name in kept) >= max(score[name] for name in set(saved) - set(kept))


def test_asha_stops_a_hopeless_trial_at_its_grace_epoch(cancer_project, local_ray):
    """Trials run one at a time, each in its own process, the good learning rate first: ASHA must stop the hopeless
    one early, its history written up to the epoch it stopped at (the same in warm trainers: tests/test_ray_head.py)."""
    sweep_and_export(asha_params(epochs=12), cancer_project / "tune")
    rows = whole_histories(cancer_project / "tune")
    epochs = {float(row["param:train.learning_rate"]): int(row["epochs"]) for row in rows}
    assert epochs[0.05] == 12 and epochs[1e-7] < 12
    # The stopped config ranks after the finished one, and is not paired with it: its scores are from an earlier
    # epoch.
    assert [(row["status"], row["tied_with_best"]) for row in rows] == [("ok", "True"), ("stopped", "")]


def test_a_killed_trial_process_is_retried_and_the_sweep_completes(cancer_project, local_ray):
    """SIGKILL a trial's worker mid-training: Ray restarts the trial (from its last checkpoint when it has one: the
    killed trial may be one that has none yet; tests/test_ray_head.py kills one after its own) and every trial
    ends with a result and a whole history."""
    killed: list[int] = []

    def kill_one_trial():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            # This test's Ray workers only (descendants of this process): another test may run a sweep beside it.
            for proc in psutil.Process().children(recursive=True):
                if "ImplicitFunc" in " ".join(_cmdline(proc)) and any(
                        (cancer_project / "tune/ray/sweep").glob("*trial*/checkpoint_*")):
                    os.kill(proc.pid, signal.SIGKILL)
                    killed.append(proc.pid)
                    return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_one_trial)
    killer.start()
    best = sweep_and_export(sweep_params(epochs=60, checkpoint_every=5, max_concurrent_trials=1),
                            cancer_project / "tune")
    killer.join()
    assert killed, "no trial process was found to kill"
    rows = read_trials(cancer_project / "tune")
    assert len(rows) == 4 and all(r["status"] == "ok" and r["epochs"] == "60" for r in rows)
    assert best["n_errors"] == 0
    for row in rows:  # the retried trial's history: every fold's epochs once, none lost or logged twice
        table = json.loads((cancer_project / "tune/history" / row["config_id"] / FOLDS_PLOT).read_text())
        assert sorted((r["fold"], r["epoch"]) for r in table) == [(f, e) for f in (0, 1) for e in range(1, 61)]


def test_a_killed_sweep_resumes_without_rerunning_finished_trials(cancer_project, prefect_server):
    """SIGKILL the whole `kerasflow tune` process group once a trial has finished; --resume completes it."""
    ray.shutdown()  # the driver under test starts its own Ray, as a user's would
    raw = sweep_params(epochs=40, max_concurrent_trials=1)
    (cancer_project / "params.yaml").write_text(yaml.safe_dump(raw))
    # A running Prefect server: both commands would otherwise each start (and wait for) a temporary one.
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PREFECT_API_URL": prefect_server}
    # Ray saves the sweep's state every 10 s by default: on a fast machine every trial can end between two saves,
    # leaving nothing to resume. Saved every second, a finished trial is seen while the next one trains.
    env["TUNE_GLOBAL_CHECKPOINT_S"] = "1"
    driver = subprocess.Popen([str(BIN / "kerasflow"), "tune", "cancer"], cwd=cancer_project, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    sweep_dir = cancer_project / "results/cancer/tune/ray/sweep"
    finished: list[Path] = []
    deadline = time.monotonic() + 300
    while not finished and time.monotonic() < deadline and driver.poll() is None:
        # Finished as Ray itself has saved it (what --resume reads), not merely reported its last epoch.
        finished = [trial_dir / "result.json" for trial_dir in _terminated_trials(sweep_dir)]
        time.sleep(0.1)
    assert finished and driver.poll() is None, "the sweep ended before it could be killed"
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    assert len(finished) < 4
    # Taken once the driver is dead: its result logger may still flush a finished trial's last row after Ray has
    # saved the trial as TERMINATED, so a time taken before the kill can race with that flush.
    mtimes = {path: path.stat().st_mtime for path in finished}
    # The report says the sweep has not finished, and how to finish it.
    with contextlib.chdir(cancer_project):
        killed = collect(cancer_project / "results", parse_params(raw).experiments)
    (row,) = tables.sweeps(killed).to_dict("records")
    assert row["unfinished"].startswith("A sweep started ") and row["unfinished"].endswith(
        "has exported no results (it stopped, failed or is still running): `kerasflow tune cancer --resume` "
        "finishes a stopped one.")

    resumed = run_cli(["tune", "cancer", "--resume"], cwd=cancer_project, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert len(resumed.stdout.splitlines()) == 1, resumed.stdout  # the command's line, none of Ray Tune's
    rows = read_trials(cancer_project / "results/cancer/tune")
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    for path, mtime in mtimes.items():
        assert path.stat().st_mtime == mtime, f"finished trial {path.parent.name} was run again"
    with contextlib.chdir(cancer_project):
        resumed_report = collect(cancer_project / "results", parse_params(raw).experiments)
    (row,) = tables.sweeps(resumed_report).to_dict("records")
    assert "unfinished" not in row and row["configs"] == 4 and row["seconds"].endswith(" (the resume's)")
    settings = json.loads((cancer_project / "results/cancer/tune/ray/settings.json").read_text())
    sweep = json.loads((cancer_project / "results/cancer/tune/sweep.json").read_text())
    assert sweep["started_at"] == settings["started_at"] and "finished_at" in settings and sweep["resumed"]


def test_an_interrupted_sweep_exports_nothing_and_says_how_to_finish_it(cancer_project, prefect_server, ray_server):
    """Ctrl-C (SIGINT to the command's process group, as a terminal sends it) while a trial trains: the command
    exports nothing (Ray Tune's own handler would have ended the sweep early and let it export the trials so far as
    the whole grid) and ends in one line naming --resume, exit status 130."""
    raw = sweep_params(epochs=2000, max_concurrent_trials=1)
    (cancer_project / "params.yaml").write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PREFECT_API_URL": prefect_server,
           **ray_server}
    driver = subprocess.Popen([str(BIN / "kerasflow"), "tune", "cancer"], cwd=cancer_project, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    sweep_dir = cancer_project / "results/cancer/tune/ray/sweep"
    deadline = time.monotonic() + 300
    while driver.poll() is None and time.monotonic() < deadline and not any(
            path.stat().st_size for path in sweep_dir.glob("*/result.json")):
        time.sleep(0.1)
    assert driver.poll() is None, "the sweep ended before it could be interrupted"
    os.killpg(driver.pid, signal.SIGINT)
    _, err = driver.communicate(timeout=300)
    assert driver.returncode == 130 and "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1] == "kerasflow: interrupted; `kerasflow tune cancer --resume` finishes the sweep"
    assert not (cancer_project / "results/cancer/tune/trials.csv").exists()


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def _terminated_trials(sweep_dir: Path) -> list[Path]:
    """Trial folders whose status in Ray's latest saved experiment state is TERMINATED."""
    states = sorted(sweep_dir.glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    if not states:
        return []
    try:
        trials = [json.loads(trial) for trial, _ in json.loads(states[-1].read_text())["trial_data"]]
    except (json.JSONDecodeError, KeyError):
        return []  # caught mid-write; the next poll reads it whole
    return [sweep_dir / t["relative_logdir"] for t in trials if t["status"] == "TERMINATED"]
