"""Continued training (`train.init_from`, params.yaml's `continued:`): a model trained on from a saved model folder.

In process: the folds and the refit start from the saved weights, with the saved preprocessing, classes and target
scale (not refitted on the new rows); the stacked program's slots start from them as the per-fold models do. Through
DVC: the continue stage depends on the folder, so retraining the model it starts from reruns it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import git_dvc_repo, run_cli, tiny_params

from kerasflow.flows.cli import check_data
from kerasflow.tasks.config.errors import DataError, ParamsError
from kerasflow.tasks.config.schema import parse_params
from kerasflow.tasks.data.table import load_table
from kerasflow.tasks.outputs.predict import PREDICTION, predict_table
from kerasflow.tasks.outputs.results import load_model, write_model
from kerasflow.tasks.training.evaluate import cross_validate, encode_labels, prepare_folds, refit
from kerasflow.tasks.training.start import load_start


def _params(init_from: str, data_file: str = "data/iris_half.csv", **train) -> dict:
    """The tiny iris experiment, and `more`: the same model trained on from `init_from` on `data_file`, with SGD at a
    learning rate too small to move a weight, so that its predictions are the saved model's."""
    raw = tiny_params()
    more = json.loads(json.dumps(raw["experiments"]["iris"]))
    more["dataset"]["file"] = data_file
    more["train"] = {"optimizer": {"name": "sgd", "learning_rate": 1e-12}, "epochs": 2, "batch_size": 16,
                     "seed": 5, "init_from": init_from, **train}
    raw["continued"] = {"more": more}
    return raw


@pytest.fixture
def saved(project, monkeypatch):
    """`project` as the current folder, with the iris experiment's refitted model written to results/iris/model and
    half of iris's rows (every other one: all three classes, other means and deviations) as data/iris_half.csv."""
    monkeypatch.chdir(project)
    iris = parse_params(tiny_params()).experiments["iris"]
    table = load_table(iris.dataset)
    write_model(project / "results/iris/model", iris, refit(iris, table, encode_labels(iris, table, "iris")))
    rows = (project / "data/iris.csv").read_text().splitlines(keepends=True)
    (project / "data/iris_half.csv").write_text(rows[0] + "".join(rows[1::2]))
    return project


@pytest.mark.parametrize("stack_folds", [True, False], ids=["stacked", "per-fold"])
def test_folds_and_refit_start_from_the_saved_model_and_reuse_its_preprocessing(saved, stack_folds):
    raw = _params("results/iris/model")
    raw["continued"]["more"]["evaluate"]["stack_folds"] = stack_folds
    spec = parse_params(raw).continued["more"]
    start = load_start(spec, "more")
    table = load_table(spec.dataset)
    labels = encode_labels(spec, table, "more", start)
    result = cross_validate(spec, prepare_folds(spec, table, labels, start))
    assert result.stacked is stack_folds

    # Every held-out row is predicted as the saved model predicts it, with its own (all-rows) preprocessing: a
    # preprocessing refitted on these rows, or fresh weights, would move the probabilities.
    expected = predict_table(saved / "results/iris/model", table.X)[PREDICTION]
    classes = start.codec.classes_
    for fold in result.folds:
        assert [classes[c] for c in fold.y_pred] == expected.loc[fold.rows].tolist()

    final = refit(spec, table, labels, start=start)
    model, _, _ = load_model(saved / "results/iris/model")
    for ours, theirs in zip(final.model.get_weights(), model.get_weights()):
        np.testing.assert_allclose(ours, theirs, atol=1e-6)
    assert final.preprocessor.to_dict() == start.preprocessor.to_dict()
    assert final.codec.classes_ == classes


def test_a_continued_model_learns_on_from_the_saved_weights(saved):
    """With a real learning rate the model moves on from the saved weights: its first epoch's loss is the saved
    model's loss on those rows (about), far below a fresh model's first epoch."""
    raw = _params("results/iris/model", optimizer="adam", learning_rate=0.01)
    spec = parse_params(raw).continued["more"]
    fresh = spec.model_copy(update={"train": spec.train.model_copy(update={"init_from": None})})
    table = load_table(spec.dataset)
    start = load_start(spec, "more")
    continued = cross_validate(spec, prepare_folds(spec, table, encode_labels(spec, table, "more", start), start))
    scratch = cross_validate(fresh, prepare_folds(fresh, table, encode_labels(fresh, table, "more")))
    first = [fold.history["loss"][0] for fold in continued.folds]
    assert max(first) < 0.5 * min(fold.history["loss"][0] for fold in scratch.folds), (first, scratch.folds)


@pytest.mark.slow
def test_dvc_reruns_a_continued_experiment_when_the_model_it_starts_from_changes(project, prefect_server):
    """`continue@more` runs after `evaluate@iris` (whose model it starts from), records that folder in run.json and
    the report, and is out of date, with the report, when iris is retrained; nothing else is."""
    rows = (project / "data/iris.csv").read_text().splitlines(keepends=True)
    (project / "data/iris_half.csv").write_text(rows[0] + "".join(rows[1::2]))
    raw = _params("results/iris/model", optimizer="adam", learning_rate=0.01)
    del raw["experiments"]["diabetes"]
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    env = git_dvc_repo(project, prefect_server)

    def dvc(*args: str) -> str:
        done = subprocess.run(["dvc", *args], cwd=project, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return done.stdout

    ran = dvc("repro")
    assert ran.index("Running stage 'evaluate@iris'") < ran.index("Running stage 'continue@more'") < ran.index(
        "Running stage 'report'")
    record = json.loads((project / "results/more/run.json").read_text())
    assert record["init_from"]["path"] == "results/iris/model"
    assert set(json.loads((project / "results/more/metrics.json").read_text())) == {"accuracy"}
    assert "continues from" in (project / "reports/report.html").read_text()

    raw["experiments"]["iris"]["train"]["epochs"] = 3
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    dvc("repro", "evaluate@iris")
    status = json.loads(dvc("status", "--json"))
    assert set(status) == {"continue@more", "report"}
    assert any("results/iris/model" in json.dumps(change) for change in status["continue@more"])


def test_an_experiment_and_its_continuation_train_in_turn_where_others_go_side_by_side(tmp_path, monkeypatch):
    """On a Ray cluster a command's experiments train side by side, but for a continued one and the experiment
    whose model it starts from: it would read that model while the other writes it (or an earlier run's)."""
    from kerasflow.flows.pipeline import side_by_side

    monkeypatch.chdir(tmp_path)
    raw = _params("results/iris/model")
    for spec in (*raw["experiments"].values(), raw["continued"]["more"]):
        spec["evaluate"].update(parallel="ray", stack_folds=False)  # each fold a Ray task
    experiments = parse_params(raw).every_experiment
    assert list(experiments) == ["iris", "diabetes", "more"]
    assert side_by_side(experiments, tmp_path / "results") == ["diabetes"]
    assert side_by_side(experiments, tmp_path / "elsewhere") == ["iris", "diabetes", "more"]


def test_a_continuation_is_checked_before_the_experiment_it_continues_trains(saved):
    """Its data is read before anything trains, though its fit with the model waits for that model; one starting
    from the folder an experiment of the same command empties (no refit) is refused."""
    raw = _params("results/iris/model", data_file="data/nowhere.csv")
    with pytest.raises(DataError, match="data/nowhere.csv: file not found"):
        check_data(parse_params(raw).every_experiment, saved / "results")
    raw = _params("results/iris/model")
    raw["experiments"]["iris"]["evaluate"]["refit"] = False
    with pytest.raises(ParamsError, match=r"continued.more.train.init_from: results/iris/model is the model folder of "
                                          r"'iris', which this command runs before 'more' and which saves no model"):
        check_data(parse_params(raw).every_experiment, saved / "results")


@pytest.mark.slow
def test_a_smoke_test_leaves_results_alone_and_refits_the_model_its_continuation_starts_from(saved, prefect_server):
    """`--smoke-test` with no `--results` writes to a new temporary folder: the pipeline's results (DVC's outputs)
    stay byte for byte. It trains no refit, but for a model a continued experiment of the command starts from: the
    continuation then runs from the smoke run's model there, as it would from the full run's."""
    raw = _params("results/iris/model")
    del raw["experiments"]["diabetes"]
    (saved / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    before = {path: path.read_bytes() for path in (saved / "results").rglob("*") if path.is_file()}
    result = run_cli(["run", "--smoke-test"], cwd=saved, env={"PREFECT_API_URL": prefect_server})
    assert result.returncode == 0, result.stderr[-3000:]
    assert {path: path.read_bytes() for path in (saved / "results").rglob("*") if path.is_file()} == before
    smoke = Path(re.search(r"^more: .* -> (.+)/more$", result.stdout, re.MULTILINE).group(1))
    try:
        assert smoke.parent == Path(tempfile.gettempdir()) and smoke.name.startswith("kerasflow-smoke-")
        assert (smoke / "iris/model").is_dir() and not (smoke / "more/model").exists()
        record = json.loads((smoke / "more/run.json").read_text())
        assert record["init_from"]["path"] == str(smoke / "iris/model") and record["n_folds"] == 2
    finally:
        shutil.rmtree(smoke)
