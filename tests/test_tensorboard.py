"""TensorBoard logging (`tracking: {tensorboard: <folder>}`): a run's and a sweep's folds as event files, read back
with TensorFlow's reader of TensorBoard's files and compared with the dvclive history the same run wrote."""

from __future__ import annotations

import pytest
import yaml
from helpers import assert_same_as_history, read_trials, run_in_process, scalars, sweep_params, tiny_params

from kerasflow.tasks.outputs.live import HistoryFolder, fold_folders, history_names


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


@pytest.mark.slow
def test_a_sweeps_configs_each_log_their_folds(cancer_project, kept_ray):
    from kerasflow.flows.pipeline import load_data
    from kerasflow.flows.sweep import export_best, run_sweep
    from kerasflow.tasks.config.schema import parse_params

    params = parse_params(sweep_params())
    spec, sweep = params.experiments["cancer"], params.sweeps["cancer"]
    table, labels = load_data.fn("cancer", spec)
    out, tb = cancer_project / "tune", cancer_project / "tb"
    grid = run_sweep.fn("cancer", spec, sweep, table, labels, out, False, tb)
    export_best.fn("cancer", spec, sweep, grid, table, labels, out)
    # Four configs in two stacked trials (tests/test_sweep.py), trained in the kept Ray's warm trainers.
    rows = read_trials(out)
    assert sorted(path.name for path in tb.iterdir()) == sorted(row["config_id"] for row in rows)
    for row in rows:
        assert_same_as_history(tb / row["config_id"], out / "history" / row["config_id"], 2, "accuracy")


def test_a_tensorboard_folder_that_cannot_be_made_is_one_line_before_anything_runs(project, monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # never reached: the check comes first
    params = tiny_params()
    (project / "tb").write_text("a file, not a folder")
    params["tracking"] = {"tensorboard": "tb"}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status, _, err = run_in_process(["run", "iris"], project)
    assert status == 2
    assert err.strip().splitlines() == [
        "kerasflow: error: params.yaml:tracking.tensorboard: cannot make the folder tb (File exists)"]
    assert not (project / "results").exists()
