"""`kerasflow predict`: a saved model folder applied to new rows reproduces the model's own scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import run_cli, tiny_params

from kerasflow.tasks.config.errors import DataError
from kerasflow.tasks.config.schema import ExperimentSpec, parse_params
from kerasflow.tasks.data.table import load_table
from kerasflow.tasks.outputs.predict import predict_csv, predict_table
from kerasflow.tasks.outputs.results import load_model, write_model
from kerasflow.tasks.training.evaluate import encode_labels, refit
from kerasflow.tasks.training.scoring import score
from kerasflow.tasks.training.train import encode_target, predict

IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def _binary_params() -> dict:
    """Versicolor against virginica: one sigmoid unit, whose two class probabilities predict must spell out."""
    raw = tiny_params()
    pair = raw["experiments"]["iris"]
    pair["dataset"] = {"file": "data/pair.csv", "target": "species", "task": "binary"}
    pair["model"]["layers"][-1] = {"type": "dense", "units": 1, "activation": "sigmoid"}
    raw["experiments"] = {"pair": pair}
    return raw


def _headerless_params() -> dict:
    """Iris without a header row and with the target moved first: the features are matched by position."""
    raw = tiny_params()
    mine = raw["experiments"]["iris"]
    mine["dataset"] = {"file": "data/mine.csv", "header": False, "target": 0, "task": "multiclass"}
    raw["experiments"] = {"mine": mine}
    return raw


def _colours_params() -> dict:
    """Iris with a `colour` category (one-hot) and a True/False `flag`: the columns predict must check as training
    saw them."""
    raw = tiny_params()
    colours = raw["experiments"]["iris"]
    colours["dataset"] = {"file": "data/colours.csv", "target": "species", "task": "multiclass"}
    colours["preprocess"] = {"scale": "standard", "categorical": "onehot"}
    raw["experiments"] = {"colours": colours}
    return raw


@pytest.fixture(scope="module")
def models(tmp_path_factory, bundled_data) -> dict:
    """Tiny real models, refitted and saved as `kerasflow run` saves them, once for this module."""
    root = tmp_path_factory.mktemp("predict")
    (root / "data").mkdir()
    for name in ("iris.csv", "diabetes.csv"):
        (root / "data" / name).write_bytes((bundled_data / name).read_bytes())
    iris = pd.read_csv(root / "data/iris.csv")
    iris[["species", *IRIS_FEATURES]].to_csv(root / "data/mine.csv", header=False, index=False)
    iris[iris["species"] != "setosa"].to_csv(root / "data/pair.csv", index=False)
    iris.assign(colour=np.array(["red", "green", "07"])[np.arange(len(iris)) % 3],
                flag=np.arange(len(iris)) % 2 == 0).to_csv(root / "data/colours.csv", index=False)

    specs = {name: spec for raw in (tiny_params(), _headerless_params(), _binary_params(), _colours_params())
             for name, spec in parse_params(raw).experiments.items()}
    saved = {}
    for name, spec in specs.items():
        table = load_table(spec.dataset, root)
        final = refit(spec, table, encode_labels(spec, table, name))
        saved[name] = (spec, write_model(root / "results" / name / "model", spec, final))
    return {**saved, "root": root}


def _model_score(spec: ExperimentSpec, model_dir: Path, root: Path) -> float:
    """The score `kerasflow.tasks.training.scoring.score` gives the saved model on its own training rows."""
    table = load_table(spec.dataset, root)
    model, preprocessor, codec = load_model(model_dir)
    codes = codec.transform(table.y) if codec is not None else table.y.to_numpy(dtype=np.float64)
    y = encode_target(spec, codes, len(codec.classes_) if codec is not None else 0)
    return score(spec, y, predict(model, preprocessor.transform(table.X)))


def test_classification_round_trip_reproduces_the_accuracy(models, tmp_path):
    spec, model_dir = models["iris"]
    root = models["root"]
    out = predict_csv(model_dir, root / "data/iris.csv", tmp_path / "out/pred.csv")

    written = pd.read_csv(out)
    classes = ["setosa", "versicolor", "virginica"]
    assert list(written.columns) == ["prediction", *(f"proba_{c}" for c in classes)]
    truth = pd.read_csv(root / "data/iris.csv")["species"]
    assert len(written) == len(truth)
    assert set(written["prediction"]) <= set(classes)
    accuracy = float(np.mean(written["prediction"] == truth))
    assert accuracy == pytest.approx(_model_score(spec, model_dir, root), abs=1e-12)
    assert accuracy > 0.8

    proba = written[[f"proba_{c}" for c in classes]].to_numpy()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert (np.asarray(classes)[proba.argmax(axis=1)] == written["prediction"]).all()


def test_binary_round_trip_gives_both_class_probabilities(models, tmp_path):
    spec, model_dir = models["pair"]
    root = models["root"]
    written = pd.read_csv(predict_csv(model_dir, root / "data/pair.csv", tmp_path / "pred.csv"))
    assert list(written.columns) == ["prediction", "proba_versicolor", "proba_virginica"]
    np.testing.assert_allclose(written["proba_versicolor"] + written["proba_virginica"], 1.0, atol=1e-6)
    accuracy = float(np.mean(written["prediction"] == pd.read_csv(root / "data/pair.csv")["species"]))
    assert accuracy == pytest.approx(_model_score(spec, model_dir, root), abs=1e-12)


def test_regression_round_trip_reproduces_the_mse_in_original_units(models, tmp_path):
    spec, model_dir = models["diabetes"]
    root = models["root"]
    out = predict_csv(model_dir, root / "data/diabetes.csv", tmp_path / "pred.csv")

    written = pd.read_csv(out)
    assert list(written.columns) == ["prediction"]
    truth = pd.read_csv(root / "data/diabetes.csv")["progression"].to_numpy()
    mse = float(np.mean((written["prediction"].to_numpy() - truth) ** 2))
    assert mse == pytest.approx(_model_score(spec, model_dir, root), rel=1e-5)
    # Original units: the predictions live on the target's scale (tens to hundreds), not a standardised one.
    assert 50 < written["prediction"].mean() < 250


def test_rows_without_the_target_and_in_another_order_give_the_same_predictions(models):
    _, model_dir = models["iris"]
    frame = pd.read_csv(models["root"] / "data/iris.csv")
    with_target = predict_table(model_dir, frame)
    features_only = frame[list(reversed(IRIS_FEATURES))]  # named columns are matched by name
    pd.testing.assert_frame_equal(predict_table(model_dir, features_only), with_target)

    # Row order (and the caller's index) is kept.
    shuffled = frame.sample(frac=1.0, random_state=0)
    pd.testing.assert_frame_equal(predict_table(model_dir, shuffled), with_target.loc[shuffled.index])


def test_headerless_model_predicts_with_or_without_the_target_column(models, tmp_path):
    spec, model_dir = models["mine"]
    root = models["root"]
    with_target = pd.read_csv(predict_csv(model_dir, root / "data/mine.csv", tmp_path / "a.csv"))

    rows = pd.read_csv(root / "data/mine.csv", header=None)
    rows.drop(columns=[0]).to_csv(tmp_path / "features.csv", header=False, index=False)
    features_only = pd.read_csv(predict_csv(model_dir, tmp_path / "features.csv", tmp_path / "b.csv"))

    pd.testing.assert_frame_equal(features_only, with_target)
    assert set(with_target["prediction"]) == {"setosa", "versicolor", "virginica"}
    accuracy = float(np.mean(with_target["prediction"] == rows[0]))
    assert accuracy == pytest.approx(_model_score(spec, model_dir, root), abs=1e-12)


def test_cli_predict_writes_the_csv_and_needs_no_params_file(models, tmp_path):
    _, model_dir = models["diabetes"]
    out = tmp_path / "pred.csv"
    result = run_cli(["predict", "--model", str(model_dir), "--input", str(models["root"] / "data/diabetes.csv"),
                      "--output", str(out)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == str(out)
    expected = predict_table(model_dir, pd.read_csv(models["root"] / "data/diabetes.csv"))
    np.testing.assert_allclose(pd.read_csv(out)["prediction"], expected["prediction"], rtol=1e-6)


def test_headerless_wrong_column_count_names_the_positions(models, tmp_path):
    _, model_dir = models["mine"]
    rows = pd.read_csv(models["root"] / "data/mine.csv", header=None)
    rows.assign(extra=1.0).to_csv(tmp_path / "wide.csv", header=False, index=False)
    rows[[1, 2]].to_csv(tmp_path / "narrow.csv", header=False, index=False)
    with pytest.raises(DataError, match=r"wide.csv: unexpected column\(s\) at 0-based index \[5\]"):
        predict_csv(model_dir, tmp_path / "wide.csv", tmp_path / "out.csv")
    with pytest.raises(DataError, match=r"narrow.csv: missing column\(s\) at 0-based index \[2, 3\]"):
        predict_csv(model_dir, tmp_path / "narrow.csv", tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_missing_model_folder_or_input_file_is_a_clear_error(models, tmp_path):
    _, model_dir = models["iris"]
    with pytest.raises(DataError, match="nowhere: model folder not found"):
        predict_csv(tmp_path / "nowhere", models["root"] / "data/iris.csv", tmp_path / "out.csv")
    with pytest.raises(DataError, match="absent.csv: file not found"):
        predict_csv(model_dir, tmp_path / "absent.csv", tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_predict_refuses_an_output_over_its_input_or_inside_the_model(models, tmp_path):
    _, model_dir = models["iris"]
    rows = tmp_path / "new.csv"
    rows.write_bytes((models["root"] / "data/iris.csv").read_bytes())
    with pytest.raises(DataError, match=r"new.csv: is the input file; write the predictions to another file"):
        predict_csv(model_dir, rows, tmp_path / "." / "new.csv")
    with pytest.raises(DataError, match=r"model.keras: is inside the model folder .*; write the predictions"):
        predict_csv(model_dir, rows, model_dir / "model.keras")
    assert rows.read_bytes() == (models["root"] / "data/iris.csv").read_bytes()
    with pytest.raises(DataError, match=r"new.csv/out.csv: cannot be written: .*new.csv is a file, not a folder"):
        predict_csv(model_dir, rows, rows / "out.csv")


def test_predict_refuses_a_category_training_never_saw_and_a_blank_flag(models, tmp_path):
    _, model_dir = models["colours"]
    frame = pd.read_csv(models["root"] / "data/colours.csv").head(3)
    assert len(predict_table(model_dir, frame)) == 3
    with pytest.raises(DataError, match=r"rows: column 'colour' holds 'purple' \(file line 3\), a value the model "
                                        r"never saw in training; it knows \['07', 'green', 'red'\]"):
        predict_table(model_dir, frame.assign(colour=["red", "purple", "07"]), source="rows")
    flags = frame.astype({"flag": object})
    flags.loc[1, "flag"] = np.nan
    with pytest.raises(DataError, match=r"rows: column 'flag' has missing values \(file lines \[3\]\)"):
        predict_table(model_dir, flags, source="rows")
    # Read from a file, the line is the file's own: here one blank line further down.
    lines = frame.assign(colour=["red", "purple", "07"]).to_csv(index=False).splitlines(keepends=True)
    (tmp_path / "rows.csv").write_text("".join([*lines[:2], "\n", *lines[2:]]))
    with pytest.raises(DataError, match=r"rows.csv: column 'colour' holds 'purple' \(file line 4\)"):
        predict_csv(model_dir, tmp_path / "rows.csv", tmp_path / "out.csv")



def test_a_category_code_that_reads_as_a_number_is_read_as_the_file_writes_it(models, tmp_path):
    """Training saw `07` among words, as text; rows holding no other colour would read as the number 7, a value
    the model never saw: predict reads a category column as the file's text."""
    _, model_dir = models["colours"]
    rows = pd.read_csv(models["root"] / "data/colours.csv", dtype={"colour": str})
    coded = rows[rows["colour"] == "07"].head(4)
    coded.to_csv(tmp_path / "coded.csv", index=False)
    assert pd.read_csv(tmp_path / "coded.csv")["colour"].tolist() == [7] * 4  # as pandas alone reads them
    predict_csv(model_dir, tmp_path / "coded.csv", tmp_path / "out.csv")
    expected = predict_table(model_dir, coded)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out.csv"), expected.reset_index(drop=True),
                                  check_dtype=False)
