"""Runs that fail or are killed: a transient failure is retried by Prefect; a run killed with SIGKILL while it
replaces its results leaves each one whole, the previous or the new, and no scores beside files they do not score;
the next run, and `dvc repro`, recover.

The faults are real: an exception raised inside the real Prefect task, and `os.kill(pid, SIGKILL)` on the real
`kerasflow` process. `KERASFLOW_FAULT` (tasks/runtime/faults.py) only chooses the moment, so the kill lands while a
result is being replaced rather than wherever a timer happens to fall.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import psutil
import pytest
import yaml
from helpers import BIN, flow_runs_in, git_dvc_repo, make_project, prefect_api, run_cli, run_in_process, tiny_params
from helpers import run_checked as _run

from faults.support import kill_group, snapshot, start_cli, wait_for
from kerasflow.tasks.outputs.metrics import read_experiment
from kerasflow.tasks.outputs.saved_model import read_saved

RESULT_FILES = ("metrics.json", "model/model.keras", "model/preprocessing.json")
NEW_EACH_RUN = ("metrics.json", "model/model.keras")
"""Of those, the files that differ whenever the run is repeated with other epochs (the preprocessing does not)."""


def _set_epochs(project: Path, epochs: int) -> None:
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["experiments"]["iris"]["train"]["epochs"] = epochs
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def _leftovers(folder: Path) -> list[str]:
    """The temporary folders of interrupted writes, `.<name>.<pid>.<random>` (see tasks/outputs/atomic.py)."""
    return sorted(path.name for path in folder.iterdir() if re.fullmatch(r"\..+\.\d+\.[a-z0-9_]{8}", path.name))


@pytest.mark.slow
def test_a_transient_failure_in_training_is_retried_by_prefect_and_the_run_completes(project, prefect_server):
    result = run_cli(["run", "iris"], cwd=project,
                     env={"PREFECT_API_URL": prefect_server, "KERASFLOW_FAULT": "raise:cross-validate"})

    assert result.returncode == 0, result.stderr[-3000:]
    # The first attempt really failed, inside the task, and Prefect said it would retry.
    assert "InjectedFault" in result.stderr and "injected failure at 'cross-validate'" in result.stderr
    assert "Retry" in result.stderr, result.stderr[-3000:]
    metrics = read_experiment(project / "results/iris")
    assert metrics["n_folds"] == 3 and len(metrics["folds"]) == 3
    # The server recorded one cross-validate task run that ran twice and completed.
    runs = prefect_api(f"{prefect_server}/task_runs/filter",
                       {"flow_runs": {"id": {"any_": flow_runs_in(result.stderr)}},
                        "task_runs": {"name": {"like_": "cross-validate"}}})
    assert [(run["run_count"], run["state_type"]) for run in runs] == [(2, "COMPLETED")]


RUN_WITH_REPORT = ["run", "iris", "--report", "reports/summary.md"]


@pytest.fixture(scope="module")
def after_a_run(tmp_path_factory, bundled_data, configured_server) -> Path:
    """The tiny project after one successful run with a report: what each kill below interrupts the next run of
    (each test works on a copy)."""
    project = make_project(tmp_path_factory.mktemp("after-a-run") / "project", bundled_data)
    status, _, err = run_in_process(RUN_WITH_REPORT, project)
    assert status == 0, err[-3000:]
    return project


@pytest.mark.slow
@pytest.mark.parametrize("target", ["model", "metrics.json", "summary.md"])
def test_a_run_killed_while_replacing_a_result_leaves_the_previous_one_intact(after_a_run, tmp_path, prefect_server,
                                                                               target):
    """SIGKILL the run once the new `target` is fully written beside the old one, before the rename."""
    env = {"PREFECT_API_URL": prefect_server}
    project = shutil.copytree(after_a_run, tmp_path / "project")
    before = snapshot(project)
    _set_epochs(project, 3)  # the interrupted run would write other numbers

    log = project.parent / f"{project.name}-killed.log"
    run = start_cli(RUN_WITH_REPORT, project, {**env, "KERASFLOW_FAULT": f"stall:write:{target}"}, log)
    wait_for(lambda: f"stalling at write:{target}" in log.read_text(), run, log, what=f"the stall at {target}")
    os.kill(run.pid, signal.SIGKILL)
    kill_group(run)  # reap it, and anything it started
    after = snapshot(project)

    # The run removed the previous scores as it began to train: killed before writing its own, it leaves none beside
    # its files. Every other result from `target` on is the previous one; what it had replaced before is its new one.
    replaced_before = {"model": (), "metrics.json": ("model/",), "summary.md": ("model/", "metrics.json")}[target]
    for name in RESULT_FILES:
        path = f"results/iris/{name}"
        if name == "metrics.json" and target != "summary.md":
            assert path not in after, "the previous run's scores were left beside the killed run's files"
        elif not name.startswith(replaced_before):
            assert after[path] == before[path], f"{path} changed although the run was killed before replacing it"
        elif name in NEW_EACH_RUN:
            assert after[path] != before[path], f"{path} should hold the killed run's complete result"
    assert after["reports/summary.md"] == before["reports/summary.md"]
    assert read_saved(project / "results/iris/model").features  # the model folder reads whole either way
    # Killed before its scores were written, the run leaves no record, neither its own nor the previous one's.
    assert (read_experiment(project / "results/iris") is None) == (target != "summary.md")
    if target == "model":
        assert not (project / "results/iris/run.json").exists()
    # The interrupted write left only a hidden temporary folder, named after the killed process.
    folder = project / ("reports" if target == "summary.md" else "results/iris")
    leftovers = _leftovers(folder)
    assert [name.split(".")[-2] for name in leftovers] == [str(run.pid)], leftovers
    assert (folder / leftovers[0] / target).exists()

    # The next run succeeds, writes every result anew and removes the dead process's temporary folder.
    status, _, err = run_in_process(RUN_WITH_REPORT, project)  # in this process: it needs none of its own
    assert status == 0, err[-3000:]
    assert _leftovers(folder) == []
    assert read_experiment(project / "results/iris")["n_folds"] == 3
    final = snapshot(project)
    assert all(final[f"results/iris/{name}"] != before[f"results/iris/{name}"] for name in NEW_EACH_RUN)


def _git_dvc_repo(project: Path, prefect_server: str) -> dict[str, str]:
    """The tiny project (iris only) as a git + DVC repo with this checkout's pipeline, committed."""
    raw = tiny_params()
    raw["experiments"] = {"iris": raw["experiments"]["iris"]}
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (project / "data/diabetes.csv").unlink()
    return git_dvc_repo(project, prefect_server)


@pytest.mark.slow
def test_a_temporary_prefect_server_that_dies_mid_run_ends_the_command_at_once_in_one_line(after_a_run, tmp_path):
    """The temporary server the command started is killed while the run writes its results: the command ends at
    once, not after Prefect's minutes of retries and tracebacks, with one line and exit status 1; the experiment
    reads as not run (its metrics.json withdrawn)."""
    env = {"PREFECT_API_URL": "", "PREFECT_HOME": str(tmp_path / "prefect-home"),
           "KERASFLOW_FAULT": "stall:write:metrics.json"}
    log = tmp_path / "run.log"
    project = shutil.copytree(after_a_run, tmp_path / "project")
    assert (project / "results/iris/metrics.json").is_file()
    run = start_cli(["run", "iris"], project, env, log)
    try:
        wait_for(lambda: "stalling at write:metrics.json" in log.read_text(), run, log, what="the run's last write")
        (server,) = [p for p in psutil.Process(run.pid).children(recursive=True) if "uvicorn" in _cmdline(p)]
        server.kill()
        run.wait(timeout=60)
    finally:
        kill_group(run)
    output = log.read_text()
    assert run.returncode == 1 and "Traceback" not in output, output[-3000:]
    assert output.splitlines()[-1].startswith(
        f"kerasflow: error: the temporary Prefect server this command started (process {server.pid}) ended during "
        "the run (killed by signal 9 (Killed)), and its flows cannot go on without it")
    assert not (project / "results/iris/metrics.json").exists()


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.NoSuchProcess:  # ended since it was listed
        return []


@pytest.mark.slow
def test_dvc_repro_killed_mid_stage_recovers_with_dvc_checkout_or_dvc_repro(project, prefect_server):
    """`dvc repro` and its stage SIGKILLed together (as a machine losing power would) while the model is being
    replaced. DVC removes a stage's outputs before running it, so here the previous outputs come back from DVC's
    cache and git (`dvc checkout`), byte for byte; and the next `dvc repro` reruns the stage and ends clean."""
    env = _git_dvc_repo(project, prefect_server)
    _run(["dvc", "repro"], project, env)
    _run(["git", "add", "-A"], project, env)
    _run(["git", "commit", "-qm", "results"], project, env)
    before = snapshot(project / "results/iris")
    _set_epochs(project, 3)

    log = project.parent / f"{project.name}-dvc.log"
    with open(log, "w") as handle:
        repro = subprocess.Popen([str(BIN / "dvc"), "repro"], cwd=project, env={**env, "KERASFLOW_FAULT":
                                 "stall:write:model"}, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    wait_for(lambda: "stalling at write:model" in log.read_text(), repro, log, what="the stall at the model")
    kill_group(repro)  # SIGKILL to DVC and the stage's kerasflow at once: neither gets to clean up
    assert "evaluate@iris" in _run(["dvc", "status"], project, env).stdout  # DVC sees the stage is out of date

    # The previous outputs, as dvc.lock and git recorded them: DVC's stale locks of the dead process do not block.
    _run(["dvc", "checkout", "--force"], project, env)
    _run(["git", "checkout", "--", "results"], project, env)
    restored = snapshot(project / "results/iris")
    for name in RESULT_FILES:
        assert restored[name] == before[name], f"results/iris/{name} did not come back as it was"

    recovered = _run(["dvc", "repro"], project, env)
    assert "Running stage 'evaluate@iris'" in recovered.stdout
    assert "Data and pipelines are up to date" in _run(["dvc", "status"], project, env).stdout
    assert _leftovers(project / "results/iris") == []  # the killed write's temporary folder is gone
    final = snapshot(project / "results/iris")
    assert all(final[name] != before[name] for name in NEW_EACH_RUN)
    assert read_saved(project / "results/iris/model").features == ["sepal_length", "sepal_width", "petal_length",
                                                                    "petal_width"]
