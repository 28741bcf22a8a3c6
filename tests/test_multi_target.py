"""Several target columns (`dataset.target: [a, b]`): one regression model with an output unit a column, as the
books' multiple-output and multiple parallel series listings. Linnerud's three body measures from three exercises
(scikit-learn's bundled data), and parallel series forecast together from their shared windows."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from helpers import written_run
from mlflow import MlflowClient

from kerasflow.tasks.config.errors import DataError, ParamsError
from kerasflow.tasks.config.schema import DatasetSpec, parse_params
from kerasflow.tasks.data.table import load_table
from kerasflow.tasks.outputs.metrics import read_experiment, write_experiment
from kerasflow.tasks.outputs.mlflow_runs import log_experiment
from kerasflow.tasks.outputs.predict import predict_table
from kerasflow.tasks.outputs.results import write_model, write_predictions
from kerasflow.tasks.report import tables
from kerasflow.tasks.report.collect import collect
from kerasflow.tasks.report.html import render_html
from kerasflow.tasks.training.evaluate import (
    CVResult,
    cross_validate,
    encode_labels,
    prepare_folds,
    refit,
    supervised,
)
from kerasflow.tasks.training.start import load_start
from kerasflow.tasks.training.train import FoldResult, predict

pytestmark = pytest.mark.slow
TARGETS = ["weight", "waist", "pulse"]


def _spec(dataset: dict | None = None, preprocess: dict | None = None, evaluate: dict | None = None,
          units: int = 3, name: str = "linnerud"):
    raw = {"experiments": {name: {
        "dataset": {"file": "data/linnerud.csv", "target": TARGETS, "task": "regression", **(dataset or {})},
        "preprocess": {"scale": "standard", "scale_target": True, **(preprocess or {})},
        "model": {"layers": [{"type": "dense", "units": 8, "activation": "relu"}, {"type": "dense", "units": units}]},
        "train": {"optimizer": "adam", "learning_rate": 0.05, "epochs": 30, "batch_size": 4, "seed": 3},
        "evaluate": {"method": "kfold", "n_splits": 4, "shuffle": True, "seed": 1, "metric": "rmse",
                     **(evaluate or {})}}},
        "continued": {}, "sweeps": {}}
    return parse_params(raw, source="listing.yaml").experiments[name]


@pytest.fixture
def linnerud(tmp_path, bundled_data, monkeypatch):
    (tmp_path / "data").mkdir()
    shutil.copy(bundled_data / "linnerud.csv", tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    return pd.read_csv(tmp_path / "data/linnerud.csv")


def test_the_targets_are_read_apart_from_the_features(linnerud):
    table = load_table(_spec().dataset)
    assert list(table.X.columns) == ["chins", "situps", "jumps"] and table.targets == TARGETS
    np.testing.assert_array_equal(table.y.to_numpy(), linnerud[TARGETS].to_numpy())
    assert _spec(dataset={"target": ["pulse"]}).dataset.target == "pulse"  # a list of one is that column


@pytest.mark.parametrize("stack", [True, False], ids=["stacked", "fold-by-fold"])
def test_each_target_is_scaled_trained_and_scored_on_its_own_column(linnerud, stack):
    """Each fold scales each target by its own training rows' mean and std (their units differ), predicts it back
    in its units, and scores it alone beside the score over all the targets' values."""
    spec = _spec(evaluate={"stack_folds": stack})
    table = load_table(spec.dataset)
    folds = prepare_folds(spec, table, encode_labels(spec, table))
    for fold in folds:
        scale, offset = fold.target_scale
        np.testing.assert_allclose(scale, fold.y_train.std(axis=0), rtol=1e-6)
        np.testing.assert_allclose(offset, fold.y_train.mean(axis=0), rtol=1e-6)
    result = cross_validate(spec, folds)
    assert result.stacked == stack
    for j, target in enumerate(TARGETS):
        for fold, data, alone in zip(result.folds, folds, result.target_scores[target]):
            assert fold.y_pred.shape == data.y_test.shape == (len(data.y_test), 3)
            assert alone == pytest.approx(np.sqrt(np.mean((fold.y_pred[:, j] - data.y_test[:, j]) ** 2)), rel=1e-5)
    for fold, data in zip(result.folds, folds):
        assert fold.score == pytest.approx(np.sqrt(np.mean((fold.y_pred - data.y_test) ** 2)), rel=1e-5)
    # Scaled back in the model: each column's predictions are in its own units (weight ~180 lb, pulse ~55).
    predicted = np.concatenate([fold.y_pred for fold in result.folds])
    assert 120 < predicted[:, 0].mean() < 240 and 40 < predicted[:, 2].mean() < 75


@pytest.mark.parametrize("stack", [True, False], ids=["stacked", "fold-by-fold"])
def test_the_loss_is_taken_in_scaled_units_each_column_weighing_alike(linnerud, stack):
    """The books scale every series and fit the loss to the scaled values: each column's squared error counts over
    its own training spread, not its range in the data (weight's would outweigh pulse's some tenfold). The held-out
    loss of each epoch is the mean squared error of the scaled columns, the metric (rmse) in the data's units."""
    spec = _spec(evaluate={"stack_folds": stack})
    table = load_table(spec.dataset)
    folds = prepare_folds(spec, table, encode_labels(spec, table))
    result = cross_validate(spec, folds)
    assert result.stacked == stack
    for fold, data in zip(result.folds, folds):
        scale, offset = (np.asarray(values) for values in data.target_scale)
        scaled = ((fold.y_pred - offset) / scale - (data.y_test - offset) / scale) ** 2
        assert fold.history["val_loss"][-1] == pytest.approx(float(np.mean(scaled)), rel=1e-4)
        assert fold.history["val_rmse"][-1] == pytest.approx(fold.score, rel=1e-5)
        assert fold.history["loss"][0] < 10  # scaled columns: no squared error in pounds


def test_stacked_folds_give_the_folds_trained_one_by_one(linnerud):
    spec = _spec()
    table = load_table(spec.dataset)
    folds = prepare_folds(spec, table, encode_labels(spec, table))
    stacked, separate = cross_validate(spec, folds), cross_validate(_spec(evaluate={"stack_folds": False}), folds)
    assert stacked.stacked and not separate.stacked
    for fold, alone in zip(stacked.folds, separate.folds):
        np.testing.assert_allclose(fold.y_pred, alone.y_pred, rtol=1e-4)
    for target in TARGETS:
        assert stacked.target_scores[target] == pytest.approx(separate.target_scores[target], rel=1e-4)


def test_metrics_json_holds_each_targets_scores(linnerud, tmp_path):
    spec = _spec(evaluate={"n_splits": 3})
    table = load_table(spec.dataset)
    result = cross_validate(spec, prepare_folds(spec, table, encode_labels(spec, table)))
    write_experiment(tmp_path, result.summary())
    scores = json.loads((tmp_path / "metrics.json").read_text())
    assert set(scores) == {"rmse", "targets"} and set(scores["targets"]) == set(TARGETS)
    for target in TARGETS:
        assert scores["targets"][target]["rmse"]["folds"] == pytest.approx(result.target_scores[target])
        assert scores["targets"][target]["rmse"]["mean"] == pytest.approx(np.mean(result.target_scores[target]))
    assert read_experiment(tmp_path)["targets"]["pulse"] == scores["targets"]["pulse"]["rmse"]
    assert "targets" not in json.loads((tmp_path / "run.json").read_text())
    lines = write_predictions(tmp_path, result, None, TARGETS).read_text().splitlines()
    assert lines[0] == "fold,row,target,true,predicted"
    first = lines[1:4]
    assert [line.split(",")[2] for line in first] == TARGETS and len({line.split(",")[1] for line in first}) == 1
    assert len(lines) == 1 + 3 * len(table.y)


def test_the_saved_model_predicts_every_target_by_name(linnerud, tmp_path):
    spec = _spec()
    table = load_table(spec.dataset)
    final = refit(spec, table, encode_labels(spec, table))
    folder = write_model(tmp_path / "model", spec, final)
    assert json.loads((folder / "preprocessing.json").read_text())["target"] == TARGETS
    expected = predict(final.model, final.preprocessor.transform(table.X))
    for rows in (linnerud, linnerud.drop(columns=TARGETS)):  # the targets may be in the file, or not
        got = predict_table(folder, rows)
        assert list(got.columns) == [f"prediction_{t}" for t in TARGETS]
        np.testing.assert_allclose(got.to_numpy(), expected, rtol=1e-5)
    with pytest.raises(DataError, match=r"missing column\(s\) \['jumps'\]; expected the feature columns \['chins', "
                                        r"'situps', 'jumps'\] \(the targets \['weight', 'waist', 'pulse'\] may"):
        predict_table(folder, linnerud.drop(columns=["jumps"]))


def test_a_header_less_file_names_its_targets_by_index(tmp_path, linnerud):
    """Targets at the last three 0-based indices (counted from the end); new rows may come with them or without."""
    linnerud.to_csv(tmp_path / "data/bare.csv", index=False, header=False)
    spec = _spec(dataset={"file": "data/bare.csv", "header": False, "target": [-3, -2, -1]})
    table = load_table(spec.dataset)
    assert table.targets == ["-3", "-2", "-1"] and list(table.X.columns) == ["0", "1", "2"]
    final = refit(spec, table, encode_labels(spec, table))
    folder = write_model(tmp_path / "model", spec, final)
    bare = pd.read_csv(tmp_path / "data/bare.csv", header=None)
    np.testing.assert_allclose(predict_table(folder, bare).to_numpy(),
                               predict_table(folder, bare.iloc[:, :3]).to_numpy())
    with pytest.raises(DataError, match=r"found 5 columns, expected 3 feature columns, or 6 with the targets at "
                                        r"0-based indices \[3, 4, 5\] \(a header-less file"):
        predict_table(folder, bare.iloc[:, :5])


@pytest.mark.parametrize("dataset, message", [
    ({"target": ["weight", "waist", "weight"]}, "names column(s) ['weight'] more than once"),
    ({"target": ["weight", "waist"], "task": "binary"},
     "several target columns, one output unit each, are a regression's or a multilabel task's; task 'binary' "
     "predicts one column (its classes)"),
])
def test_a_bad_target_list_is_refused_by_its_key(dataset, message):
    with pytest.raises(ParamsError) as info:
        _spec(dataset=dataset)
    assert f"listing.yaml:experiments.linnerud.dataset.target: {message}" in str(info.value)


def test_targets_that_name_one_column_twice_by_index_are_refused(tmp_path, linnerud):
    linnerud.to_csv(tmp_path / "bare.csv", index=False, header=False)
    with pytest.raises(DataError, match=r"bare.csv: dataset.target names a column more than once \('5', '5'\)"):
        load_table(DatasetSpec(file="bare.csv", header=False, target=[5, -1], task="regression"), root=tmp_path)


def test_a_last_layer_of_the_wrong_width_names_the_targets(linnerud):
    spec = _spec(units=1)
    with pytest.raises(DataError, match=r"the last Dense layer must have 3 unit\(s\) for task 'regression' on "
                                        r"data/linnerud.csv \(3 numeric targets: dataset.target\)"):
        encode_labels(spec, load_table(spec.dataset), "linnerud")


@pytest.fixture
def parallel(tmp_path, monkeypatch):
    """Three parallel series (the books' in_seq1, in_seq2 and their sum, with noise) and a step counter."""
    rng = np.random.default_rng(5)
    step = np.arange(160)
    a = 20 + 10 * np.sin(step / 6) + rng.normal(scale=0.2, size=160)
    b = 10 + 5 * np.cos(step / 9) + rng.normal(scale=0.2, size=160)
    frame = pd.DataFrame({"step": step, "a": a, "b": b, "total": a + b})
    (tmp_path / "data").mkdir()
    frame.to_csv(tmp_path / "data/parallel.csv", index=False)
    monkeypatch.chdir(tmp_path)
    return frame


def _parallel_spec(**preprocess):
    outputs = 3 * preprocess.get("steps_out", 1)
    raw = {"experiments": {"parallel": {
        "dataset": {"file": "data/parallel.csv", "target": ["a", "b", "total"], "task": "regression"},
        "preprocess": {"scale": "minmax", "scale_target": True, "lookback": 3, **preprocess},
        "model": {"layers": [{"type": "reshape", "target_shape": [3, 3]}, {"type": "lstm", "units": 16},
                             {"type": "dense", "units": outputs}]},
        "train": {"optimizer": "adam", "learning_rate": 0.01, "epochs": 40, "batch_size": 16, "seed": 4},
        "evaluate": {"method": "holdout", "test_size": 0.25, "shuffle": False, "metric": "mae"}}},
        "continued": {}, "sweeps": {}}
    return parse_params(raw).experiments["parallel"]


def test_parallel_series_forecast_each_series_from_all_of_their_windows(parallel, tmp_path):
    """Every window holds each series' last 3 values, time-major; the naive forecast is each series' last value;
    the saved model forecasts the next step of each from the file's consecutive rows."""
    spec = _parallel_spec()
    table = load_table(spec.dataset)
    rows, labels = supervised(spec, table, encode_labels(spec, table))
    assert list(rows.X.columns) == ["a_lag_3", "b_lag_3", "total_lag_3", "a_lag_2", "b_lag_2", "total_lag_2",
                                    "a_lag_1", "b_lag_1", "total_lag_1"]
    np.testing.assert_allclose(rows.X.iloc[0].to_numpy(), parallel[["a", "b", "total"]].iloc[:3].to_numpy().ravel())
    np.testing.assert_allclose(labels.codes, parallel[["a", "b", "total"]].iloc[3:].to_numpy())
    folds = prepare_folds(spec, table, encode_labels(spec, table))
    result = cross_validate(spec, folds)
    held_out = folds[0].test_rows
    np.testing.assert_allclose(folds[0].naive_test, parallel[["a", "b", "total"]].iloc[held_out - 1].to_numpy(),
                               rtol=1e-6)
    assert result.baseline[0] == pytest.approx(
        np.mean(np.abs(folds[0].naive_test - folds[0].y_test)), rel=1e-5)
    assert result.scores[0] < result.baseline[0]  # the model beats the series' last values
    for j, target in enumerate(["a", "b", "total"]):
        assert result.target_baselines[target][0] == pytest.approx(
            np.mean(np.abs(folds[0].naive_test[:, j] - folds[0].y_test[:, j])), rel=1e-5)
    assert np.mean([result.target_baselines[t][0] for t in ("a", "b", "total")]) == pytest.approx(
        result.baseline[0], rel=1e-5)
    final = refit(spec, table, encode_labels(spec, table))
    folder = write_model(tmp_path / "model", spec, final)
    windows = predict_table(folder, rows.X)
    from_rows = predict_table(folder, parallel)
    assert list(from_rows.columns) == ["prediction_a", "prediction_b", "prediction_total"]
    np.testing.assert_allclose(from_rows.to_numpy()[:-1], windows.to_numpy(), rtol=1e-5)
    assert from_rows.index[0] == 2  # the first window ends at row 2 and forecasts row 3


def test_parallel_series_forecast_several_steps_of_each(parallel, tmp_path):
    """The books' multiple parallel input and multi-step output: 2 steps of 3 series, 6 outputs step-major (each
    series' next value, then the one after), each series scaled by its values at both steps, scored, written and
    predicted a step and series each."""
    spec = _parallel_spec(steps_out=2)
    names, series = ["a", "b", "total"], parallel[["a", "b", "total"]].to_numpy()
    table = load_table(spec.dataset)
    _, labels = supervised(spec, table, encode_labels(spec, table))
    np.testing.assert_allclose(labels.codes[0], np.concatenate([series[3], series[4]]))
    folds = prepare_folds(spec, table, encode_labels(spec, table))
    scale, offset = folds[0].target_scale
    y_train = folds[0].y_train
    assert scale[:3] == scale[3:] and offset[:3] == offset[3:]
    np.testing.assert_allclose(offset[:3], y_train.reshape(-1, 3).min(axis=0), rtol=1e-6)
    np.testing.assert_allclose(folds[0].naive_test, np.tile(series[folds[0].test_rows - 1], 2), rtol=1e-6)
    result = cross_validate(spec, folds)
    fold, data = result.folds[0], folds[0]
    for j, name in enumerate(names):
        assert fold.target_scores[name] == pytest.approx(
            np.mean(np.abs(fold.y_pred[:, [j, j + 3]] - data.y_test[:, [j, j + 3]])), rel=1e-5)
        assert result.target_baselines[name][0] == pytest.approx(
            np.mean(np.abs(data.naive_test[:, [j, j + 3]] - data.y_test[:, [j, j + 3]])), rel=1e-5)
    lines = write_predictions(tmp_path, result, None, names).read_text().splitlines()
    first = int(data.test_rows[0])
    assert lines[0] == "fold,row,step,target,true,predicted" and len(lines) == 1 + 6 * len(data.test_rows)
    assert [line.split(",")[1:4] for line in lines[1:7]] == [
        [str(first + step), str(step + 1), name] for step in range(2) for name in names]
    assert float(lines[4].split(",")[4]) == pytest.approx(series[first + 1, 0], rel=1e-5)
    final = refit(spec, table, encode_labels(spec, table))
    got = predict_table(write_model(tmp_path / "model", spec, final), parallel)
    assert list(got.columns) == [f"prediction_{name}_{step}" for step in (1, 2) for name in names]
    # Its outputs are 2 steps of each: continuing it for one step, or building it for 3 outputs, is refused.
    again = spec.with_overrides({"train.init_from": str(tmp_path / "model"), "preprocess.steps_out": 1,
                                 "model.layers[2].units": 3})
    with pytest.raises(ParamsError, match=r"preprocess.steps_out: 1, but the model in .* forecasts 2 step\(s\) of "
                                          r"each target: make them equal"):
        load_start(again, "again")
    with pytest.raises(DataError, match=r"must have 6 unit\(s\) for task 'regression' on data/parallel.csv \(2 "
                                        r"steps of 3 numeric targets: preprocess.steps_out x dataset.target\)"):
        encode_labels(spec.with_overrides({"model.layers[2].units": 3}), table)


def test_the_report_and_mlflow_show_each_targets_scores(parallel, tmp_path):
    """A run written as the experiment flow writes it: the report's scores table has a row a target beside the
    experiment's, with its naive forecast, a residual plot each (their units differ), and MLflow a metric each."""
    spec, results = _parallel_spec(), tmp_path / "results"
    cv = written_run("parallel", spec, results)
    metrics = json.loads((results / "parallel/metrics.json").read_text())
    assert metrics["targets"]["total"]["baseline"]["mae"]["folds"] == pytest.approx(cv.target_baselines["total"])
    content = collect(results, {"parallel": spec})
    rows = tables.scores(content).to_dict("records")
    assert [row["experiment"] for row in rows] == ["parallel", "parallel: a", "parallel: b", "parallel: total"]
    for row, target in zip(rows[1:], ["a", "b", "total"]):
        assert row["mean ± std"] == f"{np.mean(cv.target_scores[target]):.4f}"  # a hold-out's one score
        assert row["naive last value"] == round(np.mean(cv.target_baselines[target]), 4)
    assert content.experiments[0].data.target == "a, b, total"
    assert tables.balance_text(content.experiments[0].data).startswith(
        f"a: mean {parallel['a'].mean():.4g}, std {parallel['a'].std(ddof=0):.4g}")
    page = render_html(content)
    assert [f"residuals of held-out predictions of {t}" in page for t in ("a", "b", "total")] == [True] * 3

    run_id = log_experiment(f"sqlite:///{tmp_path / 'mlflow.db'}", "parallel", spec, results / "parallel")
    logged = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(run_id).data.metrics
    for target in ("a", "b", "total"):
        assert logged[f"targets.{target}.mae"] == pytest.approx(np.mean(cv.target_scores[target]))


def test_continuing_a_model_takes_its_targets_in_their_order(linnerud, tmp_path):
    spec = _spec()
    table = load_table(spec.dataset)
    write_model(tmp_path / "model", spec, refit(spec, table, encode_labels(spec, table)))
    raw = {"dataset": {"file": "data/linnerud.csv", "target": ["waist", "weight", "pulse"], "task": "regression"},
           "preprocess": {"scale": "standard", "scale_target": True},
           "model": {"layers": [{"type": "dense", "units": 8, "activation": "relu"}, {"type": "dense", "units": 3}]},
           "train": {"epochs": 2, "batch_size": 4, "init_from": str(tmp_path / "model")}}
    first = {"linnerud": _spec().model_dump(mode="json", exclude_none=True)}
    swapped = parse_params({"experiments": first, "continued": {"again": raw}, "sweeps": {}},
                           source="listing.yaml").continued["again"]
    with pytest.raises(ParamsError, match=r"listing.yaml:continued.again.dataset.target: \['waist', 'weight', "
                                          r"'pulse'\], but the model in .* predicts \['weight', 'waist', 'pulse'\], "
                                          r"an output each in that order"):
        load_start(swapped, "again")
    raw["dataset"]["target"] = TARGETS
    same = parse_params({"experiments": first, "continued": {"again": raw}, "sweeps": {}}).continued["again"]
    assert load_start(same, "again").target_scale is not None


def test_a_diverged_fold_has_no_score_of_any_target():
    """Fold 1's loss turned NaN: it has no score, and none of its targets has one; metrics.json holds no NaN."""
    nan = float("nan")
    folds = [FoldResult(score=1.5, history={"loss": [0.5, 0.4]}, n_train=8, n_test=2,
                        target_scores={"a": 1.0, "b": 2.0}),
             FoldResult(score=nan, history={"loss": [0.5, nan]}, n_train=8, n_test=2,
                        target_scores={"a": nan, "b": nan})]
    summary = CVResult(metric="rmse", higher_is_better=False, folds=folds, stacked=True, seconds=1.0).summary()
    assert summary["folds"] == [1.5, None] and summary["diverged_at_epoch"] == [2]
    assert summary["targets"] == {"a": {"mean": None, "std": None, "folds": [1.0, None]},
                                  "b": {"mean": None, "std": None, "folds": [2.0, None]}}
    json.dumps(summary, allow_nan=False)
