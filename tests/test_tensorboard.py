"""TensorBoard logging (`tracking: {tensorboard: <folder>}`): a run's and a sweep's folds as event files, read back
with TensorFlow's reader of TensorBoard's files and compared with the dvclive history the same run wrote, and
served by a real `tensorboard` on 127.0.0.1, read through its HTTP API as its dashboards read them."""

from __future__ import annotations

import json
import os
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from helpers import (
    BIN,
    assert_same_as_history,
    history_steps,
    read_trials,
    run_in_process,
    scalars,
    served,
    sweep_params,
    tiny_params,
)

from kerasflow.flows.prefect_server import free_port
from kerasflow.tasks.outputs.live import HistoryFolder, fold_folders, history_names


@contextmanager
def tensorboard(logdir: Path) -> Iterator[Callable[..., object]]:
    """`tensorboard --logdir <logdir>` on 127.0.0.1 (its own defaults otherwise); yields a function that fetches
    one of its HTTP API's paths as JSON (POSTing `body` if given)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with served([str(BIN / "tensorboard"), "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port)],
                dict(os.environ), logdir.parent / "tensorboard.log", f"{url}/data/runs"):

        def fetch(path: str, body: dict | None = None) -> object:
            data = None if body is None else json.dumps(body).encode()
            request = urllib.request.Request(f"{url}{path}", data=data, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())

        yield fetch


def loaded_runs(fetch: Callable[..., object], expected: set[str]) -> list[str]:
    """TensorBoard's runs once it has loaded at least `expected` (it reads the folder in the background)."""
    deadline = time.monotonic() + 120
    while not expected <= set(runs := fetch("/data/runs")):
        assert time.monotonic() < deadline, f"TensorBoard loaded {runs}, not {expected}"
        time.sleep(1)
    return runs


def test_a_history_folder_logs_its_rows_as_tensorboard_scalars(tmp_path):
    names = history_names("accuracy", learning_rate=True)
    folder = HistoryFolder(tmp_path / "history", fold_folders(2), names, tensorboard=tmp_path / "tb")
    folder.add(0, 1, [0.5, 0.75, 0.25, 0.125, 0.01])
    folder.add(1, 1, [float("nan"), None, 0.5, 0.25, 0.01])  # a diverged fold: no step for its NaN, as in the TSV
    folder.add(0, 2, [0.25, 0.5, 0.5, 0.25, 0.005])
    folder.flush()
    folder.close()
    assert scalars(tmp_path / "tb/fold_00/train") == {
        "epoch_loss": [(0, 0.5), (1, 0.25)], "epoch_accuracy": [(0, 0.25), (1, 0.5)],
        "epoch_learning_rate": [(0, pytest.approx(0.01)), (1, pytest.approx(0.005))]}
    assert scalars(tmp_path / "tb/fold_00/validation") == {"epoch_loss": [(0, 0.75), (1, 0.5)],
                                                           "epoch_accuracy": [(0, 0.125), (1, 0.25)]}
    assert scalars(tmp_path / "tb/fold_01/train") == {"epoch_accuracy": [(0, 0.5)],
                                                      "epoch_learning_rate": [(0, pytest.approx(0.01))]}
    assert scalars(tmp_path / "tb/fold_01/validation") == {"epoch_accuracy": [(0, 0.25)]}

    # Resumed after epoch 1 (a sweep's trial from its checkpoint) into a new folder: the kept rows are logged again.
    resumed = HistoryFolder(tmp_path / "history", fold_folders(2), names, resume_epoch=1,
                            tensorboard=tmp_path / "tb_resumed")
    resumed.add(0, 2, [0.125, 0.25, 0.75, 0.5, 0.005])
    resumed.close()
    assert scalars(tmp_path / "tb_resumed/fold_00/train")["epoch_loss"] == [(0, 0.5), (1, 0.125)]


@pytest.mark.slow
def test_a_runs_folds_are_tensorboard_runs_beside_its_history(project, configured_server):
    params = tiny_params()
    params["tracking"] = {"tensorboard": "tb"}
    params["experiments"]["iris"]["train"]["epochs"] = 4
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status, _, err = run_in_process(["run", "iris"], project)
    assert status == 0, err
    runs = list((project / "tb/iris").iterdir())
    assert len(runs) == 1 and runs[0].name[:8].isdigit()  # the run's start, 20261207-081502
    assert_same_as_history(runs[0], project / "results/iris/history", 3, "accuracy")
    assert sorted(path.name for path in runs[0].iterdir()) == fold_folders(3)

    # TensorBoard itself shows each fold's part as a run, its scalars the history's.
    with tensorboard(project / "tb") as fetch:
        expected = {f"iris/{runs[0].name}/{fold}/{part}" for fold in fold_folders(3)
                    for part in ("train", "validation")}
        assert set(loaded_runs(fetch, expected)) == expected
        for fold in fold_folders(3):
            query = urllib.parse.urlencode({"run": f"iris/{runs[0].name}/{fold}/validation", "tag": "epoch_accuracy"})
            shown = fetch(f"/data/plugin/scalars/scalars?{query}")
            expected_values = history_steps(project / "results/iris/history", fold, "val_accuracy")
            assert [(step, value) for _, step, value in shown] == [
                (step, pytest.approx(value, rel=1e-5)) for step, value in expected_values]


@pytest.mark.slow
def test_a_sweeps_configs_each_log_their_folds_and_are_hparams_sessions(cancer_project, kept_ray,
                                                                        configured_server):
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

    from kerasflow.flows.sweep import sweep_flow
    from kerasflow.tasks.config.schema import parse_params

    raw = sweep_params()
    raw["sweeps"]["cancer"]["space"]["train"]["batch_size"] = {"grid": [32]}  # a number among the params
    params = parse_params(raw)
    sweep_flow("cancer", params.experiments["cancer"], params.sweeps["cancer"], cancer_project / "results",
               tensorboard=cancer_project / "tb")
    # Four configs in two stacked trials (tests/test_sweep.py), trained in the kept Ray's warm trainers.
    out = cancer_project / "results/cancer/tune"
    rows = read_trials(out)
    (events,) = (cancer_project / "tb/cancer").iterdir()
    assert events.name.startswith("tune-")
    assert sorted(path.name for path in events.iterdir()) == sorted(row["config_id"] for row in rows)
    for row in rows:
        assert_same_as_history(events / row["config_id"], out / "history" / row["config_id"], 2, "accuracy")
        # The config as an HParams session: its params (numbers as numbers) and its score.
        session = scalars(events / row["config_id"])
        assert session["accuracy"] == [(0, pytest.approx(float(row["score"])))]
        assert session["accuracy_std"] == [(0, pytest.approx(float(row["score_std"])))]
        start = session_start(events / row["config_id"], HParamsPluginData)
        assert {key: value.WhichOneof("kind") for key, value in start.hparams.items()} == {
            "train.optimizer": "string_value", "model.widths": "string_value", "train.batch_size": "number_value"}
        assert start.hparams["train.batch_size"].number_value == 32

    # TensorBoard's HParams dashboard lists the sweep's params and its score.
    with tensorboard(cancer_project / "tb") as fetch:
        loaded_runs(fetch, {f"cancer/{events.name}/{row['config_id']}" for row in rows})
        experiment = fetch("/data/plugin/hparams/experiment", {"experimentName": ""})
        assert {info["name"] for info in experiment["hparamInfos"]} == {"train.optimizer", "model.widths",
                                                                         "train.batch_size"}
        assert {info["name"]["tag"] for info in experiment["metricInfos"]} >= {"accuracy", "accuracy_std"}
        assert start.hparams["train.optimizer"].string_value == row["param:train.optimizer"]
        assert start.hparams["model.widths"].string_value == row["param:model.widths"]


def session_start(folder: Path, plugin_data: type) -> object:
    """The HParams session start (the config's params) in a TensorBoard run folder's event files."""
    from tensorflow.compat.v1.train import summary_iterator

    for path in folder.glob("events.out.tfevents.*"):
        for event in summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == "_hparams_/session_start_info":
                    return plugin_data.FromString(value.metadata.plugin_data.content).session_start_info
    raise AssertionError(f"no HParams session in {folder}")


@pytest.mark.parametrize("command", [["run", "iris"], ["tune", "iris"], ["tune", "iris", "--nested", "2"],
                                     ["schedule", "iris", "--cron", "0 3 * * *"]])
def test_a_tensorboard_folder_that_cannot_be_made_is_one_line_before_anything_is_written(project, monkeypatch, command):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # never reached: the check comes first
    params = tiny_params()
    params["sweeps"] = {"iris": {"space": {"train": {"optimizer": {"grid": ["adam", "sgd"]}}}}}
    (project / "tb").write_text("a file, not a folder")
    params["tracking"] = {"tensorboard": "tb/logs"}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    before = sorted(path.relative_to(project) for path in project.rglob("*"))
    status, _, err = run_in_process(command, project)
    assert status == 2
    assert err.strip().splitlines() == [
        f"kerasflow: error: params.yaml:tracking.tensorboard: cannot make the folder tb/logs: {project / 'tb'} is a "
        f"file"]
    assert sorted(path.relative_to(project) for path in project.rglob("*")) == before
