"""Series forecasting: look-back windows, time-ordered splits, per-fold scaling, the stateful loop, the books' LSTMs
(stacked ones too), a user's one-column CSV, and RMSE/MAE in the series' own units."""

from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from helpers import ROOT

from kerasflow.tasks.config.errors import DataError, ParamsError
from kerasflow.tasks.config.schema import load_params, parse_params
from kerasflow.tasks.data.split import make_splits
from kerasflow.tasks.data.table import Table, load_table
from kerasflow.tasks.data.window import window_rows
from kerasflow.tasks.outputs.predict import predict_table
from kerasflow.tasks.outputs.results import write_model
from kerasflow.tasks.outputs.saved_model import read_saved
from kerasflow.tasks.training.evaluate import (
    cross_validate,
    encode_labels,
    fit_split,
    prepare_folds,
    refit,
    supervised,
)
from kerasflow.tasks.training.scoring import score
from kerasflow.tasks.training.train import fit_model, reset_states

stateful_trains_here = pytest.mark.skipif(keras.backend.backend() == "jax",
                                          reason="a stateful LSTM is refused on JAX (evaluate.check_backend)")
SERIES = ("sunspots_mlp", "sunspots_lstm", pytest.param("sunspots_lstm_stateful", marks=stateful_trains_here))


def _shipped(name: str, bundled_data, **evaluate):
    """A shipped sequence experiment, reading the bundled data of this test session."""
    params = load_params(ROOT / "params.yaml")
    raw = params.model_dump(mode="json")
    experiment = raw["experiments"][name]
    experiment["dataset"]["file"] = str(bundled_data / Path(experiment["dataset"]["file"]).name)
    experiment["evaluate"].update(refit=False, **evaluate)
    return parse_params({"experiments": {name: experiment}, "continued": {}, "sweeps": {}}).experiments[name]


def _rows(spec):
    table = load_table(spec.dataset)
    return table, supervised(spec, table, encode_labels(spec, table))


def _folds(spec):
    """The evaluation's folds, from the file's rows (`prepare_folds` makes the windows itself)."""
    table = load_table(spec.dataset)
    return prepare_folds(spec, table, encode_labels(spec, table))


def test_windows_round_trip_each_target_is_the_next_rows_last_value(bundled_data):
    spec = _shipped("sunspots_mlp", bundled_data)
    table, (rows, labels) = _rows(spec)
    values = table.y.to_numpy()
    assert len(rows.y) == len(values) - 3 and list(rows.X.columns) == ["lag_3", "lag_2", "lag_1"]
    np.testing.assert_array_equal(rows.X["lag_1"].to_numpy()[1:], rows.y.to_numpy()[:-1])
    for i in (0, 100, len(rows.y) - 1):
        t = rows.y.index[i]
        np.testing.assert_array_equal(rows.X.iloc[i].to_numpy(), values[t - 3:t])
        assert rows.y.iloc[i] == values[t] == labels.codes[i]


@pytest.mark.parametrize("evaluate", [{"method": "holdout", "test_size": 0.33},
                                      {"method": "timeseries", "n_splits": 4}])
def test_no_future_value_enters_a_training_row(bundled_data, evaluate):
    spec = _shipped("sunspots_mlp", bundled_data, **evaluate)
    _, (rows, labels) = _rows(spec)
    splits = make_splits(spec.evaluate, labels.codes)
    assert len(splits) == (1 if evaluate["method"] == "holdout" else 4)
    for split in splits:
        # Row numbers in the file: a training row uses the values at t-3 .. t; a test row is scored at its t.
        train_times, test_times = rows.y.index[split.train_index], rows.y.index[split.test_index]
        assert train_times.max() < test_times.min()
        assert np.all(np.diff(test_times) == 1)  # the held-out part is one unbroken stretch of time
    if evaluate["method"] == "holdout":
        assert len(splits[0].test_index) == pytest.approx(0.33 * len(labels.codes), abs=1)
    else:  # expanding windows: each fold trains on everything before its test stretch
        assert [len(s.train_index) for s in splits] == sorted(len(s.train_index) for s in splits)
        assert all(s.train_index[0] == 0 for s in splits)


def test_the_scalers_never_see_the_held_out_part(bundled_data):
    spec = _shipped("sunspots_mlp", bundled_data)
    table, (rows, labels) = _rows(spec)
    (split,) = make_splits(spec.evaluate, labels.codes)
    fold, preprocessor = fit_split(spec, rows, labels, split)

    # Make every held-out value absurd: what the model trains on must not change at all.
    test_times = rows.y.index[split.test_index]
    inflated = table.y.copy()
    inflated.loc[test_times] *= 1000
    spoiled_table = Table(X=table.X, y=inflated, source=table.source)
    spoiled, _ = fit_split(spec, *supervised(spec, spoiled_table, encode_labels(spec, spoiled_table)), split)
    np.testing.assert_array_equal(fold.X_train, spoiled.X_train)
    assert fold.target_scale == spoiled.target_scale
    train_y = labels.codes[split.train_index]
    assert fold.target_scale == pytest.approx((train_y.max() - train_y.min(), train_y.min()))
    assert not np.array_equal(fold.X_test, spoiled.X_test)  # the test rows did change: the check has teeth


@stateful_trains_here
def test_the_stateful_loop_starts_every_epoch_from_a_zero_state(bundled_data):
    spec = _shipped("sunspots_lstm_stateful", bundled_data)
    spec = spec.with_overrides({"train.epochs": 3})
    fold = _folds(spec)[0]

    class StateProbe(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.at_begin: list[float] = []
            self.at_end: list[float] = []

        def _state(self) -> float:
            lstm = next(layer for layer in self.model.layers if getattr(layer, "stateful", False))
            return float(sum(np.abs(keras.ops.convert_to_numpy(s)).sum() for s in lstm.states))

        def on_epoch_begin(self, epoch, logs=None):
            self.at_begin.append(self._state())

        def on_epoch_end(self, epoch, logs=None):
            self.at_end.append(self._state())

    probe = StateProbe()
    model, trained = fit_model(spec, fold.X_train, fold.y_train, callbacks=[probe], target_scale=fold.target_scale)
    assert probe.at_begin == [0.0, 0.0, 0.0]
    assert all(state > 0 for state in probe.at_end)
    assert len(trained.history["loss"]) == 3
    # The state carries from one row to the next: the same row gives another forecast until the state is reset.
    row = fold.X_test[:1]
    reset_states(model)
    first = model.predict(row, batch_size=1, verbose=0)
    second = model.predict(row, batch_size=1, verbose=0)
    reset_states(model)
    again = model.predict(row, batch_size=1, verbose=0)
    assert not np.allclose(first, second)
    np.testing.assert_allclose(first, again, rtol=1e-6)


@pytest.mark.parametrize("name", SERIES)
def test_each_shipped_series_model_beats_the_naive_last_value_forecast(bundled_data, name):
    spec = _shipped(name, bundled_data)
    result = cross_validate(spec, _folds(spec)).summary()
    assert result["metric"] == "rmse" and result["n_folds"] == 1
    naive = result["baseline"]["mean"]
    assert 20 < naive < 40  # the last-value forecast's RMSE in sunspots: the scores are in the data's units
    assert result["mean"] < 0.9 * naive, (name, result["mean"], naive)


def test_the_books_airline_series_and_window_mlp(bundled_data):
    """The books' most used series, as `kerasflow data` writes it: 144 monthly totals (thousands), January 1949 to
    December 1960. Its shipped window MLP (Brownlee ch. 24: 3 months, 12-8-1, 400 epochs) forecasts the last 33% of
    months better than the naive last-value forecast, as in the book; the shipped LSTMs of ch. 25 do not on this
    split (results/airline_*/metrics.json), and the report shows each beside it."""
    frame = pd.read_csv(bundled_data / "airline_passengers.csv")
    assert list(frame.columns) == ["month", "passengers"] and len(frame) == 144
    assert (frame["month"].iloc[0], frame["month"].iloc[-1]) == ("1949-01", "1960-12")
    assert frame["passengers"].iloc[:3].tolist() == [112, 118, 132] and frame["passengers"].iloc[-1] == 432
    spec = _shipped("airline_mlp_window", bundled_data)
    result = cross_validate(spec, _folds(spec)).summary()
    assert 45 < result["baseline"]["mean"] < 52 and result["mean"] < 0.95 * result["baseline"]["mean"], result


def test_a_sweep_can_search_the_lookback(bundled_data):
    from kerasflow.tasks.config.search import SearchSpec
    from kerasflow.tasks.sweep.trial import run_trial

    spec = _shipped("sunspots_mlp", bundled_data).with_overrides({"train.epochs": 2})
    sweep = SearchSpec.model_validate({"space": {"preprocess.lookback": {"grid": [2, 5]}}, "scoring": "holdout"})
    table = load_table(spec.dataset)
    labels = encode_labels(spec, table)
    widths = {}
    for lookback in (2, 5):
        reports: list = []
        trial = spec.with_overrides({"preprocess.lookback": lookback})
        run_trial([trial], sweep, table, labels, lambda metrics, _: reports.append(metrics), work_dir=bundled_data)
        widths[lookback] = prepare_folds(trial, table, labels)[0].X_train.shape[1]
        assert [r["epoch"] for r in reports] == [1, 2] and all(np.isfinite(r["score"]) for r in reports)
    assert widths == {2: 2, 5: 5}


def _passengers(path, header: bool) -> None:
    """A user's own monthly series in a one-column CSV: trend plus a yearly season, 72 months."""
    months = np.arange(72)
    values = np.round(120 + 2.5 * months + 25 * np.sin(2 * np.pi * months / 12), 1)
    pd.DataFrame({"passengers": values}).to_csv(path, index=False, header=header)


def _series_spec(dataset: dict, **evaluate):
    raw = {"dataset": {**dataset, "task": "regression"},
           "preprocess": {"scale": "minmax", "scale_target": True, "lookback": 12},
           "model": {"layers": [{"type": "dense", "units": 8, "activation": "relu"}, {"type": "dense", "units": 1}]},
           "train": {"optimizer": "adam", "learning_rate": 0.01, "epochs": 3, "batch_size": 8, "seed": 7},
           "evaluate": {"method": "holdout", "test_size": 0.25, "shuffle": False, "refit": False, **evaluate}}
    return parse_params({"experiments": {"series": raw}, "continued": {}, "sweeps": {}}).experiments["series"]


def test_a_single_column_csv_with_or_without_a_header_gives_the_same_windows(tmp_path):
    _passengers(tmp_path / "named.csv", header=True)
    _passengers(tmp_path / "bare.csv", header=False)
    named = _series_spec({"file": str(tmp_path / "named.csv"), "target": "passengers"})
    bare = _series_spec({"file": str(tmp_path / "bare.csv"), "header": False, "target": 0})
    folds = {}
    for name, spec in (("named", named), ("bare", bare)):
        table = load_table(spec.dataset)
        assert table.X.shape == (72, 0) and table.y.iloc[0] == 120.0  # the first value is data, not a header
        folds[name] = _folds(spec)
    (a,), (b,) = folds["named"], folds["bare"]
    assert a.X_train.shape == (45, 12) and a.X_test.shape == (15, 12)
    for left, right in ((a.X_train, b.X_train), (a.X_test, b.X_test), (a.y_test, b.y_test)):
        np.testing.assert_array_equal(left, right)
    result = cross_validate(bare, folds["bare"]).summary()
    assert result["metric"] == "mse" and np.isfinite(result["mean"])


def test_a_header_less_series_model_predicts_from_rows_or_windows_by_position(tmp_path):
    """Two columns without a header, the target last (`target: -1`, named so in the results): `kerasflow predict`
    takes the file's consecutive rows as training read them, or a window's columns by position."""
    months = np.arange(40)
    pd.DataFrame({"temp": np.sin(months / 3), "y": np.round(100 + 2 * months + 9 * np.sin(months / 2), 1)}).to_csv(
        tmp_path / "bare.csv", index=False, header=False)
    raw = {"dataset": {"file": str(tmp_path / "bare.csv"), "header": False, "target": -1, "task": "regression"},
           "preprocess": {"scale": "minmax", "lookback": 3, "lookback_columns": ["0"]},
           "model": {"layers": [{"type": "dense", "units": 4, "activation": "relu"}, {"type": "dense", "units": 1}]},
           "train": {"epochs": 2, "batch_size": 8, "seed": 7}, "evaluate": {"method": "holdout", "shuffle": False}}
    spec = parse_params({"experiments": {"series": raw}, "continued": {}, "sweeps": {}}).experiments["series"]
    table = load_table(spec.dataset)
    assert table.targets == ["-1"] and list(table.X.columns) == ["0"]
    folder = write_model(tmp_path / "model", spec, refit(spec, table, encode_labels(spec, table)))
    assert read_saved(folder).window["columns"] == ["0"]  # the other column, not the target's own
    rows = pd.read_csv(tmp_path / "bare.csv", header=None)
    from_rows = predict_table(folder, rows)
    assert len(from_rows) == 38 and from_rows.index[0] == 2  # a window of 3 rows, named by its last
    lagged = window_rows(rows.set_axis(["0", "-1"], axis=1), spec.preprocess, ["-1"]).iloc[[0, -1]]
    from_windows = predict_table(folder, lagged.set_axis(range(lagged.shape[1]), axis=1))
    np.testing.assert_allclose(from_windows["prediction"].to_numpy(), from_rows["prediction"].iloc[[0, -1]])
    # A gap in the rows is named at its own column and line, not at the window columns it would reach.
    rows.iloc[5, 0] = np.nan
    with pytest.raises(DataError, match=r"^gap.csv: column '0' has missing values \(file lines \[6\]\) and the "
                                        r"model has no value to fill them with \(it was trained without preprocess."
                                        r"impute\)$"):
        predict_table(folder, rows, source="gap.csv")


def test_mae_is_scored_in_the_series_units_like_rmse(bundled_data):
    spec = _shipped("sunspots_mlp", bundled_data, metric="mae").with_overrides({"train.epochs": 20})
    table, (rows, labels) = _rows(spec)
    (fold,) = _folds(spec)
    assert fold.target_scale is not None  # trained on a scaled target, scored after scaling back
    result = cross_validate(spec, [fold]).summary()
    assert result["metric"] == "mae"

    # The naive forecast's MAE, straight from the file: each held-out year's value against the year before.
    (split,) = make_splits(spec.evaluate, labels.codes)
    years = rows.y.index[split.test_index]
    values = table.y.to_numpy()
    assert result["baseline"]["mean"] == pytest.approx(np.mean(np.abs(values[years] - values[years - 1])), rel=1e-5)
    assert 10 < result["mean"] < 2 * result["baseline"]["mean"]  # sunspots, not the scaled 0..1 units
    rmse = score(spec.with_overrides({"evaluate.metric": "rmse"}), fold.y_test, fold.naive_test)
    assert rmse > result["baseline"]["mean"]  # the same errors: RMSE weighs the large ones more than MAE does


def test_stacked_lstms_pass_the_whole_sequence_from_one_to_the_next(bundled_data):
    spec = _shipped("sunspots_lstm", bundled_data).with_overrides({
        "model.layers": [{"type": "reshape", "target_shape": [3, 1]},
                         {"type": "lstm", "units": 6, "return_sequences": True},
                         {"type": "lstm", "units": 4},
                         {"type": "dense", "units": 1}],
        "train.epochs": 3})
    (fold,) = _folds(spec)
    model, trained = fit_model(spec, fold.X_train, fold.y_train, target_scale=fold.target_scale)
    first, second = (layer for layer in model.layers if isinstance(layer, keras.layers.LSTM))
    assert first.output.shape[1:] == (3, 6) and second.output.shape[1:] == (4,)
    loss = trained.history["loss"]
    assert len(loss) == 3 and np.isfinite(loss[-1])
    result = cross_validate(spec, [fold]).summary()
    assert result["metric"] == "rmse" and 0 < result["mean"] < 3 * result["baseline"]["mean"]


CNN_LSTM = [{"type": "reshape", "target_shape": [2, 2, 1]},
            {"type": "time_distributed", "layer": {"type": "conv1d", "filters": 16, "kernel_size": 1}},
            {"type": "time_distributed", "layer": {"type": "max_pooling1d", "pool_size": 2}},
            {"type": "time_distributed", "layer": {"type": "flatten"}},
            {"type": "lstm", "units": 16, "activation": "relu"},
            {"type": "dense", "units": 1}]
"""Brownlee's CNN-LSTM forecast: a window of 4 values read as 2 subsequences of 2, each through one shared
convolution, pooling and flatten, then an LSTM over the 2 subsequences' features."""


def test_a_cnn_lstm_reads_each_subsequence_through_one_shared_convolution(bundled_data):
    spec = _shipped("sunspots_lstm", bundled_data).with_overrides({"preprocess.lookback": 4,
                                                                    "model.layers": CNN_LSTM})
    (fold,) = _folds(spec)
    model, _ = fit_model(spec, fold.X_train, fold.y_train, target_scale=fold.target_scale)
    conv, pool, flat = (layer for layer in model.layers if isinstance(layer, keras.layers.TimeDistributed))
    assert [layer.output.shape[1:] for layer in (conv, pool, flat)] == [(2, 2, 16), (2, 1, 16), (2, 16)]
    assert conv.layer.kernel.shape == (1, 1, 16)  # one kernel for both subsequences
    first = keras.ops.convert_to_numpy(conv(fold.X_train[:3].reshape(3, 2, 2, 1)))
    alone = keras.ops.convert_to_numpy(conv.layer(fold.X_train[:3, 2:].reshape(3, 2, 1)))
    np.testing.assert_allclose(first[:, 1], alone, rtol=1e-6)  # the second subsequence, through the same kernel
    result = cross_validate(spec, [fold]).summary()
    assert result["mean"] < 0.95 * result["baseline"]["mean"], result


@pytest.mark.parametrize("layers, key, message", [
    ([{"type": "reshape", "target_shape": [4, 1]}, *CNN_LSTM[1:]], "layers[1].type",
     "layers[1] (time_distributed conv1d) takes a sequence of sequences per row (subsequences, steps, features), but "
     "its input is a sequence per row (steps, features); put a reshape with target_shape [subsequences, steps, "
     "features] before it"),
    ([CNN_LSTM[0], {"type": "time_distributed", "layer": {"type": "conv2d", "filters": 2, "kernel_size": 1}},
      *CNN_LSTM[3:]], "layers[1].type",
     "layers[1] (time_distributed conv2d) takes a sequence of images per row (frames, height, width, channels), but "
     "its input is an image per row (height, width, channels); put a reshape with target_shape [frames, height, "
     "width, channels] before it"),
    ([{"type": "time_distributed", "layer": {"type": "dense", "units": 2}}, {"type": "dense", "units": 1}],
     "layers[0].type", "layers[0] (time_distributed dense) takes a sequence per row (steps, features), but its input "
                       "is a vector of features per row"),
    (CNN_LSTM[:3] + CNN_LSTM[4:], "layers[3].type",
     "layers[3] (lstm) takes a sequence per row (steps, features), but layers[2] (time_distributed max_pooling1d) "
     "gives each step 2 axes: flatten each step first, with a {type: time_distributed, layer: {type: flatten}} "
     "before layers[3]"),
    (CNN_LSTM[:3] + [{"type": "flatten"}, *CNN_LSTM[4:]], "layers[4].type",
     "layers[4] (lstm) takes a sequence per row (steps, features), but its input is a vector of features per row"),
], ids=["conv1d-steps-of-values", "conv2d-frames-of-nothing", "dense-steps-of-nothing", "steps-unflattened",
        "flatten-without-steps"])
def test_time_distributed_layers_of_the_wrong_shapes_are_refused_by_the_layers_key(layers, key, message):
    experiment = load_params(ROOT / "params.yaml").model_dump(mode="json")["experiments"]["sunspots_lstm"]
    experiment["model"]["layers"] = layers
    with pytest.raises(ParamsError, match=re.escape(f"experiments.sunspots.model.{key}: {message}")):
        parse_params({"experiments": {"sunspots": experiment}, "continued": {}, "sweeps": {}})


CONV_LSTM = [{"type": "reshape", "target_shape": [2, 1, 2, 1]},
             {"type": "conv_lstm2d", "filters": 16, "kernel_size": [1, 2], "activation": "relu"},
             {"type": "flatten"}, {"type": "dense", "units": 1}]
"""Brownlee's ConvLSTM forecast: a window of 4 values as 2 subsequences, each an image of 1 row of 2 values, read
in turn by an LSTM whose transforms are convolutions."""


def test_a_conv_lstm_reads_each_subsequence_as_an_image(bundled_data):
    spec = _shipped("sunspots_lstm", bundled_data).with_overrides({
        "preprocess.lookback": 4, "model.layers": CONV_LSTM, "train.batch_size": 16})
    (fold,) = _folds(spec)
    model, _ = fit_model(spec, fold.X_train, fold.y_train, target_scale=fold.target_scale)
    (conv_lstm,) = (layer for layer in model.layers if isinstance(layer, keras.layers.ConvLSTM2D))
    assert conv_lstm.output.shape[1:] == (1, 1, 16)  # the last step's maps: a 1 x 2 kernel over 1 x 2 images
    again, _ = fit_model(spec.with_overrides({"train.epochs": 1}), fold.X_train, fold.y_train,
                         target_scale=fold.target_scale)
    fresh, _ = fit_model(spec.with_overrides({"train.epochs": 1}), fold.X_train, fold.y_train,
                         target_scale=fold.target_scale)
    for first, second in zip(again.get_weights(), fresh.get_weights()):  # seeded: the same weights each time
        np.testing.assert_array_equal(first, second)
    result = cross_validate(spec, [fold]).summary()
    assert result["mean"] < 0.95 * result["baseline"]["mean"], result


@pytest.mark.parametrize("layers, key, message", [
    ([{"type": "reshape", "target_shape": [4, 1]}, *CONV_LSTM[1:]], "layers[1].type",
     "layers[1] (conv_lstm2d) takes a sequence of images per row (frames, height, width, channels), but its input "
     "is a sequence per row (steps, features)"),
    ([CONV_LSTM[0], CONV_LSTM[1], {**CONV_LSTM[1], "kernel_size": 1}, *CONV_LSTM[2:]], "layers[1].return_sequences",
     "layers[1] (conv_lstm2d) feeds layers[2] (conv_lstm2d), which takes a sequence: set `return_sequences: true`"),
], ids=["conv-lstm-on-a-sequence", "conv-lstm-into-conv-lstm"])
def test_a_conv_lstm_of_the_wrong_shapes_is_refused_by_the_layers_key(layers, key, message):
    experiment = load_params(ROOT / "params.yaml").model_dump(mode="json")["experiments"]["sunspots_lstm"]
    experiment["model"]["layers"] = layers
    with pytest.raises(ParamsError, match=re.escape(f"experiments.sunspots.model.{key}: {message}")):
        parse_params({"experiments": {"sunspots": experiment}, "continued": {}, "sweeps": {}})
