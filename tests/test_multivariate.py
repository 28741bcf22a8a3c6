"""Multivariate series (`preprocess.lookback_columns`, `preprocess.horizon`): windows of several columns, a target
some steps ahead, encodings and scalers fitted on the training part only, and predictions from a file's rows.

The generated series stands in for the books' PM2.5 file (README: "Series"): a seasonal target whose next value
depends on two other columns' last values, a categorical column and a few missing values.
"""

from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from kerasflow.tasks.config.errors import DataError, ParamsError
from kerasflow.tasks.config.schema import PreprocessSpec, parse_params
from kerasflow.tasks.data.split import make_splits
from kerasflow.tasks.data.table import Table, load_table
from kerasflow.tasks.data.window import window_table
from kerasflow.tasks.outputs.predict import PREDICTION, predict_csv, predict_table
from kerasflow.tasks.outputs.results import write_model, write_predictions
from kerasflow.tasks.training.evaluate import cross_validate, encode_labels, fit_split, prepare_folds, refit, supervised
from kerasflow.tasks.training.train import predict

pytestmark = pytest.mark.slow
ROWS = 400


@pytest.fixture
def series(tmp_path, monkeypatch):
    """data/weather.csv: `step` (the row number, so a window's values say which rows they came from), `wind` (four
    directions), `dew` and `temp` (noise the target follows one step later), `pollution` (the target)."""
    rng = np.random.default_rng(3)
    step = np.arange(ROWS)
    dew, temp = rng.normal(size=ROWS), rng.normal(size=ROWS)
    pollution = 10 + 3 * np.sin(2 * np.pi * step / 24) + np.r_[0, 2 * dew[:-1] - 1.5 * temp[:-1]]
    pollution += rng.normal(scale=0.1, size=ROWS)
    frame = pd.DataFrame({"step": step.astype(float), "wind": np.array(["N", "E", "S", "W"])[step % 4],
                          "dew": dew, "temp": temp, "pollution": pollution})
    frame.loc[[50, 51, 120], "dew"] = np.nan
    (tmp_path / "data").mkdir()
    frame.to_csv(tmp_path / "data/weather.csv", index=False)
    monkeypatch.chdir(tmp_path)
    return frame


def _spec(**preprocess):
    raw = {"experiments": {"weather": {
        "dataset": {"file": "data/weather.csv", "target": "pollution", "task": "regression"},
        "preprocess": {"scale": "minmax", "categorical": "onehot", "impute": "mean", "lookback": 3, **preprocess},
        "model": {"layers": [{"type": "dense", "units": 16, "activation": "relu"}, {"type": "dense", "units": 1}]},
        "train": {"optimizer": "adam", "learning_rate": 0.01, "epochs": 60, "batch_size": 16, "seed": 2},
        "evaluate": {"method": "holdout", "test_size": 0.25, "shuffle": False, "metric": "rmse"}}},
        "continued": {}, "sweeps": {}}
    return parse_params(raw).experiments["weather"]


@pytest.mark.parametrize("method", ["holdout", "timeseries"])
def test_no_value_of_a_held_out_step_enters_a_training_window_or_a_scaler(series, method):
    spec = _spec(lookback_columns="all", horizon=2)
    spec = spec.model_copy(update={"evaluate": spec.evaluate.model_copy(update={"method": method, "n_splits": 3})})
    table = load_table(spec.dataset)
    rows, labels = supervised(spec, table, encode_labels(spec, table))
    # Each window's `step` values are its rows: the 3 steps ending 2 before its target.
    for lag in (4, 3, 2):
        np.testing.assert_array_equal(rows.X[f"step_lag_{lag}"].to_numpy(), rows.y.index.to_numpy() - lag)
    assert list(rows.X.columns[:5]) == ["pollution_lag_4", "step_lag_4", "wind_lag_4", "dew_lag_4", "temp_lag_4"]
    for split in make_splits(spec.evaluate, labels.codes):
        fold, preprocessor = fit_split(spec, rows, labels, split)
        first_held_out = rows.y.index[split.test_index].min()
        assert rows.X["step_lag_2"].iloc[split.train_index].max() < first_held_out
        # The min-max scaler saw training windows only: the largest row number it knows is before the held-out part.
        columns = preprocessor.columns_
        for lag in (4, 3, 2):
            j = columns.index(f"step_lag_{lag}")
            assert preprocessor.center_[j] + preprocessor.scale_[j] < first_held_out
        assert not np.isnan(fold.X_train).any() and not np.isnan(fold.X_test).any()  # dew's gaps imputed


def test_the_other_columns_make_the_forecast_and_predict_reads_a_files_rows(series, tmp_path):
    multivariate, univariate = _spec(lookback_columns=["dew", "temp"]), _spec()
    table = load_table(multivariate.dataset)
    scores = {}
    for name, spec in (("multivariate", multivariate), ("univariate", univariate)):
        scores[name] = cross_validate(spec, prepare_folds(spec, table, encode_labels(spec, table))).summary()["mean"]
    assert scores["multivariate"] < 0.5 * scores["univariate"], scores

    labels = encode_labels(multivariate, table)
    final = refit(multivariate, table, labels)
    folder = write_model(tmp_path / "model", multivariate, final)
    rows, _ = supervised(multivariate, table, labels)
    expected = predict(final.model, final.preprocessor.transform(rows.X)).reshape(-1)
    recent = series.iloc[-10:].drop(columns=["step", "wind"])  # the columns the windows read, target included
    got = predict_table(folder, recent)
    # One forecast per window of 3 rows, indexed by its last row, for the step after it.
    assert got.index.tolist() == list(range(ROWS - 8, ROWS))
    np.testing.assert_allclose(got[PREDICTION].to_numpy()[:-1], expected[-7:], rtol=1e-5)
    # Rows reaching dew's gap (rows 50 and 51) are filled by the saved preprocessing, as the training windows were.
    gappy = series.iloc[45:58].drop(columns=["step", "wind"])
    got = predict_table(folder, gappy, source="recent.csv")
    by_target = pd.Series(expected, index=rows.y.index)
    np.testing.assert_allclose(got[PREDICTION].to_numpy(), by_target.loc[got.index + 1].to_numpy(), rtol=1e-5)


def test_sampled_windows_are_kerass_timeseries_windows_and_predict_reads_them_from_a_files_rows(series, tmp_path):
    """The books' Jena chapter samples its 10-minute rows hourly: `sampling_rate` steps apart, as Keras'
    timeseries_dataset_from_array does; horizon still counts rows."""
    spec = _spec(lookback_columns=["dew", "temp"], lookback=4, sampling_rate=3, horizon=2)
    table = load_table(spec.dataset)
    labels = encode_labels(spec, table)
    rows, encoded = supervised(spec, table, labels)
    assert list(rows.X.columns[:3]) == ["pollution_lag_11", "dew_lag_11", "temp_lag_11"]
    # Keras' windows of the same rows: steps i, i + 3, i + 6, i + 9, each step's values the target's first.
    data = series[["pollution", "dew", "temp"]].to_numpy(np.float32)
    span = 10
    dataset = keras.utils.timeseries_dataset_from_array(data, data[span - 1 + 2:, 0], sequence_length=4,
                                                         sampling_rate=3, batch_size=len(data), shuffle=False)
    windows, targets = next(iter(dataset))
    windows, targets = keras.ops.convert_to_numpy(windows), keras.ops.convert_to_numpy(targets)
    np.testing.assert_array_equal(rows.X.to_numpy(np.float32), windows.reshape(len(windows), -1))
    np.testing.assert_array_equal(rows.y.to_numpy(np.float32), targets)
    assert len(encoded.codes) == len(rows.y) == ROWS - span - 2 + 1

    final = refit(spec, table, labels)
    folder = write_model(tmp_path / "model", spec, final)
    expected = predict(final.model, final.preprocessor.transform(rows.X)).reshape(-1)
    recent = series.iloc[-20:].drop(columns=["step", "wind"])
    got = predict_table(folder, recent)
    # One forecast per run of 10 rows, indexed by its last row, for the row 2 after it.
    assert got.index.tolist() == list(range(ROWS - 11, ROWS))
    np.testing.assert_allclose(got[PREDICTION].to_numpy()[:-2], expected[-9:], rtol=1e-5)


STEPS = 3


def _multistep_spec(**changes):
    """The weather forecast of the next STEPS values of pollution from 4 steps of it, dew and temp."""
    spec = _spec(lookback_columns=["dew", "temp"], lookback=4, steps_out=STEPS)
    raw = spec.model_dump(mode="json")
    raw["model"]["layers"][-1]["units"] = STEPS
    raw["train"]["epochs"] = 20
    for section, values in changes.items():
        raw[section].update(values)
    return parse_params({"experiments": {"weather": raw}, "continued": {}, "sweeps": {}}).experiments["weather"]


def test_a_multi_step_window_predicts_the_next_steps_of_the_target_and_trains_on_none_held_out(series):
    spec = _multistep_spec(evaluate={"method": "timeseries", "n_splits": 3})
    table = load_table(spec.dataset)
    labels = encode_labels(spec, table)
    rows, encoded = supervised(spec, table, labels)
    # Window i reads rows i..i+3 and forecasts the pollution of rows i+4, i+5, i+6; it is indexed by the first.
    assert encoded.codes.shape == (ROWS - 4 - STEPS + 1, STEPS)
    np.testing.assert_array_equal(rows.X["pollution_lag_1"].to_numpy(),
                                  series["pollution"].to_numpy()[rows.y.index - 1])
    for step in range(STEPS):
        np.testing.assert_array_equal(encoded.codes[:, step], series["pollution"].to_numpy()[rows.y.index + step])
    folds = prepare_folds(spec, table, labels)
    for fold, split in zip(folds, make_splits(spec.evaluate, encoded.codes)):
        # The last STEPS - 1 training windows' later targets are held-out rows: they are left out.
        assert len(fold.X_train) == len(split.train_index) - (STEPS - 1)
        assert fold.y_train.shape[1] == fold.y_test.shape[1] == fold.naive_test.shape[1] == STEPS
        first_held_out = fold.test_rows.min()
        train_rows = rows.y.index[split.train_index[:len(fold.X_train)]]
        assert train_rows.max() + STEPS - 1 < first_held_out


@pytest.mark.parametrize("stack", [True, False], ids=["stacked", "fold-by-fold"])
def test_a_multi_step_forecast_is_scored_over_every_step_and_written_a_line_a_step(series, tmp_path, stack):
    spec = _multistep_spec(evaluate={"method": "timeseries", "n_splits": 3, "stack_folds": stack})
    table = load_table(spec.dataset)
    folds = prepare_folds(spec, table, encode_labels(spec, table))
    result = cross_validate(spec, folds)
    assert result.stacked == stack
    for fold, data in zip(result.folds, folds):
        assert fold.y_pred.shape == fold.y_true.shape == (len(data.X_test), STEPS)
        np.testing.assert_allclose(fold.y_true, data.y_test)
        assert fold.score == pytest.approx(float(np.sqrt(np.mean((fold.y_pred - fold.y_true) ** 2))), rel=1e-6)
        assert fold.history["val_rmse"][-1] == pytest.approx(fold.score, rel=1e-4)
    assert np.mean(result.scores) < np.mean(result.baseline)  # it beats repeating the last value
    lines = write_predictions(tmp_path, result, None, spec.dataset.target_names).read_text().splitlines()
    assert lines[0] == "fold,row,step,true,predicted" and len(lines) == 1 + STEPS * sum(r.n_test for r in result.folds)
    first = folds[0].test_rows[0]
    assert [line.split(",")[1:3] for line in lines[1:4]] == [[str(first + j), str(j + 1)] for j in range(STEPS)]


def test_the_stacked_and_the_per_fold_multi_step_forecasts_are_the_same(series):
    """Plain SGD: the expanding folds' shorter slots get batches with no rows, which move no weight of theirs (a
    momentum would: tasks/training/epoch_plan.py)."""
    specs = [_multistep_spec(evaluate={"method": "timeseries", "n_splits": 3, "stack_folds": stack},
                             train={"optimizer": "sgd", "learning_rate": 0.05}) for stack in (True, False)]
    table = load_table(specs[0].dataset)
    folds = prepare_folds(specs[0], table, encode_labels(specs[0], table))
    stacked, alone = (cross_validate(spec, folds) for spec in specs)
    assert stacked.scores == pytest.approx(alone.scores, rel=1e-6)
    for a, b in zip(stacked.folds, alone.folds):
        np.testing.assert_allclose(a.y_pred, b.y_pred, rtol=1e-5)


def test_predict_reads_a_files_rows_and_writes_a_column_a_step(series, tmp_path):
    spec = _multistep_spec()
    table = load_table(spec.dataset)
    labels = encode_labels(spec, table)
    final = refit(spec, table, labels)
    folder = write_model(tmp_path / "model", spec, final)
    rows, _ = supervised(spec, table, labels)
    expected = predict(final.model, final.preprocessor.transform(rows.X))
    recent = series.iloc[-12:].drop(columns=["step", "wind"])
    got = predict_table(folder, recent)
    assert list(got.columns) == [f"{PREDICTION}_{j}" for j in range(1, STEPS + 1)]
    # One forecast per window of 4 rows, indexed by its last row; the file's last windows forecast past its end.
    assert got.index.tolist() == list(range(ROWS - 9, ROWS))
    np.testing.assert_allclose(got.to_numpy()[:-STEPS], expected[-(9 - STEPS):], rtol=1e-5)
    # `kerasflow predict` writes that row, counted in the file it reads.
    recent.to_csv(tmp_path / "recent.csv", index=False)
    written = pd.read_csv(predict_csv(folder, tmp_path / "recent.csv", tmp_path / "forecast.csv"))
    assert list(written.columns) == ["row", *got.columns] and written["row"].tolist() == list(range(3, 12))


def test_predict_names_an_unseen_category_at_the_files_column_and_line(series, tmp_path):
    """A category a window's lags would read is refused at the file's own column and line, not at a lag's."""
    spec = _spec(lookback_columns=["wind", "temp"])
    spec = spec.model_copy(update={"train": spec.train.model_copy(update={"epochs": 1})})
    table = load_table(spec.dataset)
    folder = write_model(tmp_path / "model", spec, refit(spec, table, encode_labels(spec, table)))
    recent = series.iloc[-10:].drop(columns=["step", "dew"]).reset_index(drop=True)
    recent.loc[9, "wind"] = "NW"
    with pytest.raises(DataError, match=r"^recent.csv: column 'wind' holds 'NW' \(file line 11\), a value the model "
                                        r"never saw in training; it knows \['E', 'N', 'S', 'W'\]$"):
        predict_table(folder, recent, source="recent.csv")


def test_a_last_layer_of_another_width_than_the_steps_is_refused_naming_them(series):
    spec = _multistep_spec(model={"layers": [{"type": "dense", "units": 16, "activation": "relu"},
                                             {"type": "dense", "units": 1}]})
    with pytest.raises(DataError, match=r"the last Dense layer must have 3 unit\(s\) for task 'regression' on "
                                        r"data/weather.csv \(3 steps ahead: preprocess.steps_out\). Received: 1"):
        encode_labels(spec, load_table(spec.dataset))
    with pytest.raises(ParamsError, match=r"preprocess.steps_out: shapes a series' look-back windows: it needs "
                                          r"preprocess.lookback"):
        parse_params({"experiments": {"w": {**spec.model_dump(mode="json"), "preprocess": {"steps_out": 2}}}},
                     source="listing.yaml")


def test_a_forecast_whose_steps_leave_a_fold_no_training_window_is_refused(series):
    """Expanding folds in 8: the first fold has fewer training windows than the 60 steps forecast, so every one of
    them has later targets in its held-out part."""
    spec = _multistep_spec(preprocess={"steps_out": 60}, evaluate={"method": "timeseries", "n_splits": 8},
                           model={"layers": [{"type": "dense", "units": 60}]})
    table = load_table(spec.dataset)
    with pytest.raises(DataError, match=r"preprocess.steps_out=60 leaves fold 0 no training window whose targets all "
                                        r"come before its held-out part"):
        prepare_folds(spec, table, encode_labels(spec, table))


def test_a_stateful_lstm_takes_no_multi_step_forecast(series):
    layers = [{"type": "reshape", "target_shape": [4, 3]}, {"type": "lstm", "units": 2, "stateful": True},
              {"type": "dense", "units": STEPS}]
    with pytest.raises(ParamsError, match=r"preprocess.steps_out: a stateful LSTM reads every window in time order"):
        _multistep_spec(model={"layers": layers}, train={"batch_size": 1})


ENCODER_DECODER = [{"type": "reshape", "target_shape": [4, 3]}, {"type": "lstm", "units": 16, "activation": "relu"},
                   {"type": "repeat_vector", "n": STEPS},
                   {"type": "lstm", "units": 16, "activation": "relu", "return_sequences": True},
                   {"type": "time_distributed", "layer": {"type": "dense", "units": 1}}, {"type": "flatten"}]
"""Brownlee's encoder-decoder forecast: an LSTM's summary of the window repeated for each step to forecast, a decoder
LSTM over those steps and one Dense unit a step, flattened into the forecast's vector."""


def test_an_encoder_decoder_lstm_forecasts_each_step_and_predict_writes_them(series, tmp_path):
    spec = _multistep_spec(model={"layers": ENCODER_DECODER}, train={"epochs": 30})
    table = load_table(spec.dataset)
    labels = encode_labels(spec, table)
    result = cross_validate(spec, prepare_folds(spec, table, labels))
    (fold,) = result.folds
    assert fold.y_pred.shape == fold.y_true.shape and fold.y_pred.shape[1] == STEPS
    assert result.scores[0] < result.baseline[0]  # it beats repeating the last value
    final = refit(spec, table, labels)
    assert final.model.output_shape == (None, STEPS)
    got = predict_table(write_model(tmp_path / "model", spec, final), series.iloc[-12:].drop(columns=["step", "wind"]))
    assert list(got.columns) == [f"{PREDICTION}_{j}" for j in range(1, STEPS + 1)] and np.isfinite(got).all().all()


@pytest.mark.parametrize("layers, key, message", [
    (ENCODER_DECODER[:-1], "layers[4].type", "the model ends in a sequence per row (steps, features), but predicts "
                                             "one value or vector a row: end it with a flatten"),
    ([ENCODER_DECODER[0], {**ENCODER_DECODER[1], "return_sequences": True}, *ENCODER_DECODER[2:]], "layers[2].type",
     "layers[2] (repeat_vector) takes a vector of features per row, but its input is a sequence per row")],
    ids=["sequence-out", "sequence-into-repeat"])
def test_an_encoder_decoder_of_the_wrong_shapes_is_refused_by_the_layers_key(series, layers, key, message):
    with pytest.raises(ParamsError, match=re.escape(f"params.yaml:experiments.weather.model.{key}: {message}")):
        _multistep_spec(model={"layers": layers})


def test_the_model_width_a_forecast_is_checked_against_follows_the_layers_shapes(series):
    """A dropout after the flatten keeps the encoder-decoder's 3 steps; a decoder over the window's own 4 steps,
    flattened, gives 4 values a row, which a forecast of 1 step cannot take."""
    spec = _multistep_spec(model={"layers": [*ENCODER_DECODER, {"type": "dropout", "rate": 0.1}]})
    encode_labels(spec, load_table(spec.dataset))  # 3 values a row: accepted
    over_the_window = [ENCODER_DECODER[0], {"type": "lstm", "units": 4, "return_sequences": True},
                       ENCODER_DECODER[4], ENCODER_DECODER[5]]
    spec = _multistep_spec(model={"layers": over_the_window}, preprocess={"steps_out": 1})
    with pytest.raises(DataError, match=r"the model's output must have 1 unit\(s\) for task 'regression' on "
                                        r"data/weather.csv \(a numeric target\). Received: 4 \(layers\[3\]\)"):
        encode_labels(spec, load_table(spec.dataset))


def test_a_gap_in_a_column_the_windows_read_is_named_at_that_column_and_file_line(tmp_path):
    """Not at the windows' lag columns and rows: at the line of the file where the user can find and fill it (a
    blank line the reading skipped counted)."""
    temp = pd.Series(np.arange(20.0)).where(lambda values: values != 10)  # data row 10 (0-based) blank
    source = tmp_path / "s.csv"
    lines = [f"{'' if np.isnan(t) else t},{y}" for t, y in zip(temp, np.arange(20.0))]
    source.write_text("\n".join(["temp,y", *lines[:4], "", *lines[4:]]) + "\n")  # the header, then a blank line
    table = Table(X=pd.DataFrame({"temp": temp}), y=pd.Series(np.arange(20.0)), source=source)
    with pytest.raises(DataError, match=re.escape(f"{source}: feature column 'temp' has missing values (file lines "
                                                  "[13]), which windows would read")):
        window_table(table, PreprocessSpec(lookback=3, lookback_columns=["temp"]))
    imputed = window_table(table, PreprocessSpec(lookback=3, lookback_columns=["temp"], impute="mean"))
    assert imputed.X.isna().to_numpy().sum() == 3  # each window reading the gap, filled later in its fold
    # A blank in the last row, which is only ever a target's row (an outside value not known yet), is no gap.
    last_unknown = Table(X=pd.DataFrame({"temp": pd.Series(np.arange(20.0)).where(lambda v: v < 19)}),
                         y=pd.Series(np.arange(20.0)), source=Path("s.csv"))
    windows = window_table(last_unknown, PreprocessSpec(lookback=3, lookback_columns=["temp"]))
    assert len(windows.y) == 17 and not windows.X.isna().to_numpy().any()


def test_all_columns_of_a_file_with_the_target_alone_is_a_univariate_window_that_predict_rebuilds(series, tmp_path):
    """`lookback_columns: all` where the file has no column besides the target: the windows are the univariate
    series' (`lag_<k>`), the saved model's too, and predict rebuilds them from the file's rows."""
    series[["pollution"]].to_csv("data/alone.csv", index=False)
    spec = _spec(lookback_columns="all", categorical="none", impute="none")
    spec = spec.model_copy(update={"dataset": spec.dataset.model_copy(update={"file": "data/alone.csv"}),
                                   "train": spec.train.model_copy(update={"epochs": 2})})
    table = load_table(spec.dataset)
    labels = encode_labels(spec, table)
    rows, _ = supervised(spec, table, labels)
    assert list(rows.X.columns) == ["lag_3", "lag_2", "lag_1"]
    assert "baseline" in cross_validate(spec, prepare_folds(spec, table, labels)).summary()  # the naive forecast
    final = refit(spec, table, labels)
    folder = write_model(tmp_path / "model", spec, final)
    got = predict_table(folder, series[["pollution"]].iloc[-10:])
    expected = predict(final.model, final.preprocessor.transform(rows.X)).reshape(-1)
    np.testing.assert_allclose(got[PREDICTION].to_numpy()[:-1], expected[-7:], rtol=1e-5)
