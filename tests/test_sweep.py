"""Ray Tune sweeps on a real local Ray cluster: grid, random, best checkpoint, failures, resume, resources."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest
import ray
import yaml

from conftest import BIN, run_cli
from flows.pipeline import load_data
from flows.sweep import SweepError, connect, export_best, run_sweep
from tasks.data import load_table
from tasks.evaluate import encode_labels, fit_split
from tasks.results import load_model
from tasks.spec import parse_params
from tasks.split import make_splits
from tasks.train import predict, score
from tasks.tune import scoring_spec


def sweep_params(epochs: int = 3, **sweep) -> dict:
    return {
        "experiments": {"cancer": {
            "dataset": {"file": "data/breast_cancer.csv", "target": "benign", "task": "binary"},
            "preprocess": {"scale": "standard"},
            "model": {"layers": [{"type": "dense", "units": 8, "activation": "relu"},
                                 {"type": "dense", "units": 1, "activation": "sigmoid"}]},
            "train": {"optimizer": "adam", "learning_rate": 0.01, "epochs": epochs, "batch_size": 32, "seed": 1},
            "evaluate": {"n_splits": 2, "stratify": True, "seed": 1},
        }},
        "sweeps": {"cancer": {"space": {"train.optimizer": {"grid": ["adam", "sgd"]},
                                        "model.widths": {"grid": [[4], [8, 4]]}}, **sweep}},
    }


@pytest.fixture
def cancer_project(tmp_path, bundled_data, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data/breast_cancer.csv").write_bytes((bundled_data / "breast_cancer.csv").read_bytes())
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def local_ray():
    """One embedded Ray cluster (2 CPUs) for this module's in-process sweeps."""
    ray.shutdown()
    connect()
    yield
    ray.shutdown()


def _sweep(raw: dict, out: Path, resume: bool = False) -> dict:
    params = parse_params(raw)
    spec, sweep = params.experiments["cancer"], params.sweeps["cancer"]
    table, labels = load_data.fn("cancer", spec)
    grid = run_sweep.fn("cancer", spec, sweep, table, labels, out, resume)
    return export_best.fn("cancer", spec, sweep, grid, table, labels, out)


def _rows(out: Path) -> list[dict]:
    with open(out / "trials.csv") as handle:
        return list(csv.DictReader(handle))


def test_grid_of_four_with_kfold_scoring_and_best_holdout_model_reloads(cancer_project, local_ray):
    out = cancer_project / "tune"
    best = _sweep(sweep_params(), out)
    rows = _rows(out)
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    assert {(r["param:train.optimizer"], r["param:model.widths"]) for r in rows} == {
        ("adam", "[4]"), ("adam", "[8, 4]"), ("sgd", "[4]"), ("sgd", "[8, 4]")}
    assert [float(r["score"]) for r in rows] == sorted((float(r["score"]) for r in rows), reverse=True)
    assert best["n_trials"] == 4 and best["score"] == pytest.approx(float(rows[0]["score"]))
    assert (out / "best_model/model.keras").is_file()

    # Hold-out scoring: the exported model is the best trial's checkpoint and reproduces its score.
    holdout = sweep_params(epochs=4, scoring="holdout", keep_checkpoints=1, checkpoint_every=2)
    best = _sweep(holdout, cancer_project / "tune_holdout")
    params = parse_params(holdout)
    spec = params.experiments["cancer"].with_overrides(best["params"])
    table = load_table(spec.dataset)
    labels = encode_labels(spec, table)
    (split,) = make_splits(scoring_spec(spec, params.sweeps["cancer"]).evaluate, labels.codes)
    fold, _ = fit_split(spec, table, labels, split)
    model, preprocessor, codec = load_model(cancer_project / "tune_holdout/best_model")
    X_test = preprocessor.transform(table.X.iloc[split.test_index])
    assert score(spec, fold.y_test, predict(model, X_test)) == pytest.approx(best["score"], abs=1e-6)
    # Only the best N checkpoints are kept per trial.
    for trial_dir in (cancer_project / "tune_holdout/ray/sweep").glob("*trial*"):
        assert len(list(trial_dir.glob("checkpoint_*"))) <= 1


def test_random_search_draws_num_samples_reproducibly(cancer_project, local_ray):
    space = {"train.learning_rate": {"loguniform": [0.001, 0.1]}, "train.batch_size": {"choice": [16, 32, 64]}}
    drawn = []
    for run in range(2):
        raw = sweep_params(epochs=1, algorithm="random", num_samples=3, seed=5)
        raw["sweeps"]["cancer"]["space"] = space
        _sweep(raw, cancer_project / f"random{run}")
        drawn.append(sorted((r["param:train.learning_rate"], r["param:train.batch_size"])
                            for r in _rows(cancer_project / f"random{run}")))
    assert len(drawn[0]) == 3
    assert drawn[0] == drawn[1]
    assert all(0.001 <= float(lr) <= 0.1 for lr, _ in drawn[0])


def test_asha_stops_a_hopeless_trial_at_its_grace_epoch(cancer_project, local_ray):
    """Trials run one at a time, the good learning rate first: ASHA must stop the hopeless one early."""
    raw = sweep_params(epochs=12, scheduler="asha", grace_period=2, max_concurrent_trials=1)
    raw["sweeps"]["cancer"]["space"] = {"train.learning_rate": {"grid": [0.05, 1e-7]}}
    _sweep(raw, cancer_project / "tune")
    epochs = {float(r["param:train.learning_rate"]): int(r["epochs"]) for r in _rows(cancer_project / "tune")}
    assert epochs[0.05] == 12
    assert epochs[1e-7] < 12


def test_optuna_search_runs_num_samples_trials_in_range(cancer_project, local_ray):
    raw = sweep_params(epochs=2, algorithm="optuna", num_samples=3, seed=3)
    raw["sweeps"]["cancer"]["space"] = {"train.learning_rate": {"loguniform": [0.001, 0.1]},
                                        "model.widths": {"choice": [[4], [8, 4]]}}
    best = _sweep(raw, cancer_project / "tune")
    rows = _rows(cancer_project / "tune")
    assert len(rows) == 3 and all(r["status"] == "ok" for r in rows)
    assert all(0.001 <= float(r["param:train.learning_rate"]) <= 0.1 for r in rows)
    assert best["params"]["model.widths"] in ([4], [8, 4])


def test_infeasible_resources_fail_in_seconds(cancer_project, local_ray):
    start = time.monotonic()
    with pytest.raises(SweepError, match="asks for cpu=1, gpu=1 but no node of the cluster has that much"):
        _sweep(sweep_params(gpu=1), cancer_project / "tune")
    assert time.monotonic() - start < 30


def test_a_killed_trial_process_is_retried_and_the_sweep_completes(cancer_project, local_ray):
    """SIGKILL a trial's worker mid-training: Ray restarts the trial and every trial ends with a result."""
    killed: list[int] = []

    def kill_one_trial():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            for proc in psutil.process_iter(["pid", "cmdline"]):
                if "ImplicitFunc" in " ".join(proc.info["cmdline"] or []) and any(
                        (cancer_project / "tune/ray/sweep").glob("*trial*/checkpoint_*")):
                    os.kill(proc.info["pid"], signal.SIGKILL)
                    killed.append(proc.info["pid"])
                    return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_one_trial)
    killer.start()
    best = _sweep(sweep_params(epochs=60, checkpoint_every=5, max_concurrent_trials=1), cancer_project / "tune")
    killer.join()
    assert killed, "no trial process was found to kill"
    rows = _rows(cancer_project / "tune")
    assert len(rows) == 4 and all(r["status"] == "ok" and r["epochs"] == "60" for r in rows)
    assert best["n_errors"] == 0


def test_a_killed_sweep_resumes_without_rerunning_finished_trials(cancer_project):
    """SIGKILL the whole `kerasflow tune` process group once a trial has finished; --resume completes it."""
    ray.shutdown()  # the driver under test starts its own Ray, as a user's would
    (cancer_project / "params.yaml").write_text(yaml.safe_dump(sweep_params(epochs=40, max_concurrent_trials=1)))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    driver = subprocess.Popen([str(BIN / "kerasflow"), "tune", "cancer"], cwd=cancer_project, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    sweep_dir = cancer_project / "results/cancer/tune/ray/sweep"
    finished: dict[Path, float] = {}
    deadline = time.monotonic() + 300
    while not finished and time.monotonic() < deadline and driver.poll() is None:
        # Finished as Ray itself has saved it (what --resume reads), not merely reported its last epoch.
        for trial_dir in _terminated_trials(sweep_dir):
            finished[trial_dir / "result.json"] = (trial_dir / "result.json").stat().st_mtime
        time.sleep(0.1)
    assert finished and driver.poll() is None, "the sweep ended before it could be killed"
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    assert len(finished) < 4

    resumed = run_cli(["tune", "cancer", "--resume"], cwd=cancer_project, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = _rows(cancer_project / "results/cancer/tune")
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    for path, mtime in finished.items():
        assert path.stat().st_mtime == mtime, f"finished trial {path.parent.name} was run again"


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
