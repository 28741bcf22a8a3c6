"""MLflow tracking against a real `mlflow server` on 127.0.0.1 (a temporary SQLite store, artifacts served by it):
an experiment's run and a sweep's parent and nested runs, read back through MLflow's client."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import BIN, read_trials, run_checked, served, tiny_params

from kerasflow.flows.prefect_server import free_port
from kerasflow.tasks.outputs.metrics import read_experiment

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory) -> str:
    """`mlflow server` on 127.0.0.1 with a temporary backend store and artifact folder; yields its URI."""
    home = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    uri = f"http://127.0.0.1:{port}"
    with served([str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                 "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
                 "--artifacts-destination", str(home / "artifacts")], env, home / "server.log", f"{uri}/health"):
        yield uri


def test_an_experiment_and_a_sweep_become_mlflow_runs(project, prefect_server, mlflow_server, ray_server, tmp_path):
    from mlflow import MlflowClient

    params = tiny_params()
    params["tracking"] = {"mlflow": mlflow_server}
    params["experiments"]["iris"]["train"]["epochs"] = 3
    params["sweeps"] = {"iris": {"space": {"train": {"optimizer": {"grid": ["adam", "sgd"]}}}, "keep_checkpoints": 1}}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PREFECT_API_URL": prefect_server}
    env.pop("MLFLOW_TRACKING_URI", None)
    run_checked(["kerasflow", "run", "iris"], project, env)
    run_checked(["kerasflow", "tune", "iris"], project, {**env, **ray_server})

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("iris")
    runs = {run.data.tags["kerasflow.kind"]: run for run in client.search_runs([experiment.experiment_id])
            if run.data.tags["kerasflow.kind"] != "config"}

    # The experiment: its params, its scores (mean, std, each fold), each fold's epochs and the refit model.
    run, record = runs["experiment"], read_experiment(project / "results/iris")
    assert run.data.params["train.epochs"] == "3" and run.data.params["train.optimizer"] == "adam"
    assert json.loads(run.data.params["model.layers"])[-1]["activation"] == "softmax"
    assert run.data.metrics["accuracy"] == pytest.approx(record["mean"])
    assert run.data.metrics["accuracy_std"] == pytest.approx(record["std"])
    folds = client.get_metric_history(run.info.run_id, "accuracy_fold")
    folds.sort(key=lambda m: m.step)
    assert [m.step for m in folds] == [0, 1, 2]
    assert [m.value for m in folds] == pytest.approx(record["folds"])
    for fold in range(3):
        epochs = client.get_metric_history(run.info.run_id, f"fold_{fold:02d}/val_loss")
        assert sorted(m.step for m in epochs) == [1, 2, 3]
    assert {a.path for a in client.list_artifacts(run.info.run_id, "model")} == {"model/model.keras",
                                                                                 "model/preprocessing.json"}
    fetched = Path(client.download_artifacts(run.info.run_id, "model/model.keras", str(tmp_path)))
    assert fetched.read_bytes() == (project / "results/iris/model/model.keras").read_bytes()

    # The sweep: a parent with the best config's params and score, one finished nested run per config.
    parent, trials = runs["sweep"], read_trials(project / "results/iris/tune")
    assert parent.data.params["train.optimizer"] == trials[0]["param:train.optimizer"]
    assert parent.data.metrics["accuracy"] == pytest.approx(float(trials[0]["score"]))
    children = client.search_runs([experiment.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    by_config = {child.info.run_name: child for child in children}
    assert set(by_config) == {row["config_id"] for row in trials}
    for row in trials:
        child = by_config[row["config_id"]]
        assert child.info.status == "FINISHED"
        assert child.data.params == {"train.optimizer": row["param:train.optimizer"]}
        assert child.data.metrics["accuracy"] == pytest.approx(float(row["score"]))
        assert len(client.get_metric_history(child.info.run_id, "fold_02/loss")) == 3
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {"model", "trials.csv"}


def test_no_mlflow_server_is_one_line_before_anything_runs(project):
    params = tiny_params()
    params["tracking"] = {"mlflow": f"http://127.0.0.1:{free_port()}"}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"}  # never reached: the check comes first
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run([str(BIN / "kerasflow"), "run", "iris"], cwd=project, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(
        "kerasflow: error: params.yaml:tracking.mlflow: no MLflow server answers at http://127.0.0.1:")
    assert not (project / "results").exists()
