"""The data step: bundled datasets written byte-for-byte as data.dvc records, and clear errors on bad CSVs."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from helpers import BIN, ROOT

from kerasflow.tasks.config.errors import DataError
from kerasflow.tasks.config.schema import DatasetSpec, parse_params
from kerasflow.tasks.data.bundled import BUNDLED, write_bundled
from kerasflow.tasks.data.preprocess import Preprocessor
from kerasflow.tasks.data.split import make_splits
from kerasflow.tasks.data.table import load_table, read_csv


def test_fresh_data_matches_the_committed_data_dvc(tmp_path):
    """What a fresh machine writes is exactly what data.dvc recorded: `dvc status` is clean."""
    shutil.copy(ROOT / "data.dvc", tmp_path / "data.dvc")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=tmp_path, check=True, env=env)
    write_bundled(tmp_path / "data")
    # As `make run` does on a fresh clone: put the CSVs in the (empty) cache; a different hash would rewrite data.dvc.
    subprocess.run(["dvc", "commit", "--force", "--quiet", "data.dvc"], cwd=tmp_path, env=env, check=True)
    assert (tmp_path / "data.dvc").read_bytes() == (ROOT / "data.dvc").read_bytes()
    status = subprocess.run(["dvc", "status", "data.dvc"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    assert "up to date" in status.stdout, status.stdout


def test_bundled_sets_have_the_books_shapes(bundled_data):
    shapes = {name: read_csv(bundled_data / name).shape for name in BUNDLED}
    assert shapes["iris.csv"] == (150, 5)
    assert shapes["boston_housing.csv"] == (506, 14)
    assert shapes["breast_cancer.csv"] == (569, 31)
    assert shapes["mnist_5k.csv"] == (5000, 785)
    assert shapes["sunspots.csv"] == (309, 2)
    assert shapes["linnerud.csv"] == (20, 6)  # three exercises, three body measures
    assert shapes["macrodata.csv"] == (203, 14)  # quarterly, 1959 to 2009


@pytest.mark.parametrize("content, spec, message", [
    ("", {"target": "y"}, "the file is empty"),
    ("a,b,y\n", {"target": "y"}, "the file has no data rows"),
    ("a,b,y\n1,2,0\n1,2,3,4\n", {"target": "y"}, "file line 3 holds 4 field(s) where the header names 3"),
    # pandas counts a value quoted across lines as one line: the row is named at the line it starts on.
    ('a,b\n1,2\n"x\ny",3\n3,4,5\n', {"target": "b"}, "file line 5 holds 3 field(s) where the header names 2"),
    # pandas would read rows one field longer than the header as an index and the rest shifted one column, and
    # pad a shorter row with missing values: both refused at their line.
    # Decimal commas with thousands grouped by points are decimal commas too, not categories.
    ("colour;price;y\nred;999,5;0\nblue;1.234,5;1\nred;2.500,0;0\n", {"target": "y"},
     "column 'price' holds numbers with a decimal comma ('999,5' at file line 2)"),
    ("a,b,y\n1,2,3,0\n4,5,6,1\n", {"target": "y"}, "file line 2 holds 4 field(s) where the header names 3"),
    ("a,b,y\n1,2,0,\n4,5,1,\n", {"target": "y"}, "file line 2 holds 4 field(s) where the header names 3"),
    ("y,a,b\n1,2,3\n\n1,3\n2,3,4\n", {"target": "y"}, "file line 4 holds 2 field(s) where the header names 3"),
    ("1,2,0\n3,4\n", {"target": 2, "header": False}, "file line 2 holds 2 field(s) where the first row holds 3"),
    ("temp\n12,5\n13,25\n", {"target": "temp", "task": "regression"},
     "file line 2 holds 2 field(s) where the header names 1 (is '12,5' a number with a decimal comma?"),
    ('"a","y"\n"1",5.1,0\n"2",4.9,1\n', {"target": "y"},
     "file line 2 holds 3 field(s) where the header names 2 (a row name before each row, or a field too many"),
    # pandas' index from a first field that counts the rows 0, 1, 2... is no index of its own making.
    ("a,b\n0,5,7\n1,6,8\n2,9,9\n", {"target": "b", "task": "regression"},
     "file line 2 holds 3 field(s) where the header names 2 (a row name before each row, or a field too many"),
    ("v\n0,5\n1,5\n2,5\n", {"target": "v", "task": "regression"},
     "file line 2 holds 2 field(s) where the header names 1 (is '0,5' a number with a decimal comma?"),
    ("a,b,y\n1,2,0\n3,4,0\n", {"target": "y", "task": "binary"}, "has a single class (0)"),
    ("a,b,y\n1,2,0\n3,4,1\n5,6,2\n", {"target": "y", "task": "binary"}, "needs exactly 2 classes"),
    ("a,b,y\n1,2,0\n3,4,\n", {"target": "y"}, "target column 'y' has missing values (file lines [3])"),
    # One column: an empty cell is an empty line (those after the last value end the file).
    ("y\n1.5\n\n2.5\n3\n\n\n", {"target": "y", "task": "regression"},
     "target column 'y' has missing values (file lines [3])"),
    ("a,b,y\n1,2,x\n3,4,z\n", {"target": "y", "task": "regression"}, "needs a numeric target"),
    # A row's file line is the one it starts on: blank lines (which pandas skips) and a value quoted across lines
    # put it further down than its count.
    ("a,b,y\n1,2,0\n\n3,x,1\n4,5,0\n6,7,1\n", {"target": "y"}, "'x' at file line(s) [4]"),
    ('note,b,y\n"two\nlines",2,0\nok,inf,1\n', {"target": "y"}, "holds inf at file line(s) [4]"),
    ("a,b,y\n1,2,0\n\n   \n3,4,\n5,6,1\n", {"target": "y"}, "target column 'y' has missing values (file lines [5])"),
    ("a,b,y\n\n1,2,low\n3,4,high\n", {"target": "y", "task": "regression"}, "holds 'low' (file line 3)"),
    # A line `""` is no blank line: a row of one field, refused as a short row.
    ('a,b,y\n1,2,0\n""\n3,4,1\n', {"target": "y"}, "file line 3 holds 1 field(s) where the header names 3"),
    # Blank lines before the header: its separator is the header's, and lines are the file's own.
    ("\n\na,b,y\n1,2,0\n3,4\n", {"target": "y"}, "file line 5 holds 2 field(s) where the header names 3"),
    ("\ny\n1.5\n\n2.5\n", {"target": "y", "task": "regression"},
     "target column 'y' has missing values (file lines [4])"),
    ("1,2,0\n3,4,1\n", {"target": "y", "header": False}, "the target must be a 0-based column index"),
    ("1,2,0\n3,4,1\n", {"target": 7, "header": False}, "target index 7 is out of range; the file has 3 columns"),
])
def test_bad_csvs_name_the_file_and_problem(tmp_path, content, spec, message):
    (tmp_path / "bad.csv").write_text(content)
    dataset = DatasetSpec(**{"file": "bad.csv", "task": "multiclass", **spec})
    with pytest.raises(DataError) as info:
        load_table(dataset, root=tmp_path)
    assert str(info.value).startswith(str(tmp_path / "bad.csv"))
    assert message in str(info.value)


def test_a_quoted_name_holding_a_comma_leaves_the_separator_to_the_line(tmp_path):
    (tmp_path / "d.csv").write_text('"Preis, EUR";Menge;y\n12;3;1\n13;4;0\n')
    assert read_csv(tmp_path / "d.csv").columns.tolist() == ["Preis, EUR", "Menge", "y"]
    (tmp_path / "one.csv").write_text('"Preis, EUR"\n12\n\n13\n')  # one column: its empty line a missing value
    assert read_csv(tmp_path / "one.csv")["Preis, EUR"].isna().tolist() == [False, True, False]


def test_a_text_cell_longer_than_the_csv_modules_limit_is_read_again_field_by_field(tmp_path):
    """A missing value makes the field check read the file again with the csv module, whose default limit on a
    field (128 KiB) read_csv does not have."""
    (tmp_path / "d.csv").write_text(f"text,b,y\n{'word ' * 30_000},,0\nshort,2,1\n")
    assert read_csv(tmp_path / "d.csv").shape == (2, 3)


def test_a_true_false_column_with_a_blank_cell_is_as_numeric_as_one_without(tmp_path):
    """pandas reads True/False as booleans, but with a blank cell as objects, which the preprocessing would take
    for categories (refused with categorical none, one-hot encoded with onehot): read as 1, missing, 0, it is the
    numeric column it is without the blank, whose missing value impute fills."""
    (tmp_path / "d.csv").write_text("flag,x,y\nTrue,1,0\n,2,1\nFalse,3,0\nTrue,4,1\n")
    frame = read_csv(tmp_path / "d.csv")
    assert frame["flag"].dtype == np.float64 and frame["flag"].isna().tolist() == [False, True, False, False]
    pre = Preprocessor(impute="mean").fit(frame[["flag", "x"]])
    assert pre.categorical_columns_ == [] and pre.transform(frame[["flag", "x"]])[1, 0] == pytest.approx(2 / 3)


def test_a_line_of_spaces_is_no_row(tmp_path):
    """Skipped as pandas skips it, in a file the field check reads again (it has a missing value)."""
    (tmp_path / "d.csv").write_text("a,b,y\n1,,0\n   \n3,4,1\n")
    assert read_csv(tmp_path / "d.csv").shape == (2, 3)


def test_text_columns_keep_a_code_that_reads_as_a_number(tmp_path):
    """`07` stays `07` (a header's spaces around the name as header_names strips them), but true and false stay
    booleans, as training read them."""
    (tmp_path / "codes.csv").write_text("flag, code,y\nTRUE,07,1\nFALSE,07,0\n")
    frame = read_csv(tmp_path / "codes.csv", text_columns={"flag", "code"})
    assert frame["code"].tolist() == ["07", "07"] and frame["flag"].tolist() == [True, False]
    assert read_csv(tmp_path / "codes.csv")["code"].tolist() == [7, 7]


def test_integers_beyond_64_bits_are_numbers(tmp_path):
    """pandas reads a column with a 20-digit integer as Python ints in objects: a feature and a regression target
    are still numbers (as floats), a class target's codes and a category column's values keep their digits as
    text."""
    (tmp_path / "big.csv").write_text("a,id,y\n1,99999999999999999999,123456789012345678901\n2,7,3\n3,8,4\n")
    table = load_table(DatasetSpec(file="big.csv", target="y", task="regression"), root=tmp_path)
    assert table.X.dtypes.tolist() == [np.int64, np.float64] and table.y.dtype == np.float64
    assert table.X["id"].iloc[0] == 1e20 and table.y.iloc[0] == pytest.approx(1.2345678901234568e20)
    assert read_csv(tmp_path / "big.csv", text_columns={"id"})["id"].tolist() == ["99999999999999999999", "7", "8"]
    # A negative number beside 2**63 or more: pandas reads the column as text.
    (tmp_path / "signed.csv").write_text("a,y\n-1,0\n9223372036854775808,1\n")
    assert read_csv(tmp_path / "signed.csv")["a"].tolist() == [-1.0, 9223372036854775808.0]
    # Beyond a float's range: infinite, refused at its line.
    (tmp_path / "huge.csv").write_text(f"a,y\n1,0\n2,{'9' * 400}\n")
    with pytest.raises(DataError, match=r"column 'y' holds inf at file line\(s\) \[3\]"):
        read_csv(tmp_path / "huge.csv")
    # Class codes that floats would merge stay apart, as their text.
    (tmp_path / "codes.csv").write_text("a,y\n1,99999999999999999990\n2,99999999999999999991\n")
    codes = load_table(DatasetSpec(file="codes.csv", target="y", task="binary"), root=tmp_path).y
    assert codes.tolist() == ["99999999999999999990", "99999999999999999991"]


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="nowhere.csv: file not found"):
        load_table(DatasetSpec(file="nowhere.csv", target="y", task="binary"), root=tmp_path)


def test_errors_from_a_params_file_name_its_keys(tmp_path):
    """A spec read from params.yaml knows where it came from: data errors found later name the key to edit."""
    (tmp_path / "bad.csv").write_text("a,b,label\n1,2,0\n3,4,1\n")
    raw = {"experiments": {"mine": {"dataset": {"file": "bad.csv", "target": "lable", "task": "binary"},
                                    "model": {"layers": [{"type": "dense", "units": 1}]},
                                    "train": {"epochs": 1, "batch_size": 1}}}, "continued": {}, "sweeps": {}}
    spec = parse_params(raw, source="my.yaml").experiments["mine"]
    with pytest.raises(DataError) as info:
        load_table(spec.dataset, root=tmp_path)
    assert str(info.value) == (f"{tmp_path / 'bad.csv'}: target column 'lable' not found "
                               f"(my.yaml:experiments.mine.dataset.target); did you mean 'label'? Columns found: a, b, "
                               f"label")


@pytest.mark.parametrize("evaluate, rows, message", [
    ({"n_splits": 7}, 6, "my.yaml:experiments.mine.evaluate.n_splits: must be between 2 and 6 for method 'kfold' on "
                         "the 6 rows of d.csv. Received: 7"),
    # An expanding window needs one row more than k-fold: scikit-learn's own ValueError is not left to escape.
    ({"method": "timeseries", "shuffle": False, "n_splits": 6}, 6,
     "my.yaml:experiments.mine.evaluate.n_splits: must be between 2 and 5 for method 'timeseries'"),
    ({"n_splits": 3, "stratify": True}, 8, "my.yaml:experiments.mine.evaluate.n_splits: stratified 3-fold needs at "
                                           "least 3 rows of every class; too few in {'1': 2}"),
    ({"method": "holdout", "stratify": True}, 8, "my.yaml:experiments.mine.evaluate.stratify: a stratified hold-out "
                                                 "needs at least 2 rows of every class; too few in {'1': 1}"),
])
def test_splits_the_data_cannot_support_name_the_evaluate_key(evaluate, rows, message):
    raw = {"experiments": {"mine": {"dataset": {"file": "d.csv", "target": "y", "task": "binary"},
                                    "model": {"layers": [{"type": "dense", "units": 1}]},
                                    "train": {"epochs": 1, "batch_size": 1}, "evaluate": evaluate}},
           "continued": {}, "sweeps": {}}
    spec = parse_params(raw, source="my.yaml").experiments["mine"]
    y = np.array([0] * (rows - 2) + [1] * (2 if evaluate.get("method") != "holdout" else 1)
                 + ([0] if evaluate.get("method") == "holdout" else []))
    with pytest.raises(DataError) as info:
        make_splits(spec.evaluate, y)
    assert str(info.value).startswith(message)


def test_a_value_missing_only_from_held_out_rows_is_refused_not_turned_into_nan():
    train = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [1.0, 1.0, 2.0]}, index=[0, 1, 2])
    held_out = pd.DataFrame({"a": [4.0, None], "b": [2.0, 1.0]}, index=[3, 4])
    pre = Preprocessor(scale="standard").fit(train)
    with pytest.raises(DataError, match=r"feature column\(s\) \['a'\] have missing values \(data rows \[5\].*"
                                        r"preprocess.impute is 'none'"):
        pre.transform(held_out)
    # With an imputation chosen, every column can be filled, even one complete in the training rows.
    filled = Preprocessor(impute="median").fit(train).transform(held_out)
    assert filled.tolist() == [[4.0, 2.0], [2.0, 1.0]]


def test_a_category_of_digits_read_as_floats_elsewhere_is_the_same_category():
    """Trained on a text column holding 'A', '1' and '2'; new rows of digits and a blank are read by pandas as
    floats (1.0): they are still the categories '1' and '2', not unknown ones."""
    train = pd.DataFrame({"c": ["A", "1", "2", "A"]})
    pre = Preprocessor(categorical="onehot", impute="most_frequent").fit(train)
    assert pre.categories_ == {"c": ["1", "2", "A"]}
    new = pd.DataFrame({"c": [1.0, None, 2.0]})
    assert pre.transform(new).tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]


def test_a_text_column_empty_in_a_folds_training_rows_is_named_not_an_index_error():
    train = pd.DataFrame({"a": [1.0, 2.0], "note": pd.Series([None, None], dtype=object)})
    with pytest.raises(DataError, match=r"^non-numeric feature columns \['note'\] \('note' empty in these rows\) "
                                        r"need an encoding, and preprocess.categorical is 'none'"):
        Preprocessor().fit(train)


PLAIN = "a,b,y\n1.5,2,0\n3.5,4,1\n"


@pytest.mark.parametrize("content", [
    pytest.param("\ufeff" + PLAIN, id="utf-8 byte-order mark"),
    pytest.param(PLAIN.replace("a,b,y", "a , b,y "), id="spaces around header names"),
    pytest.param(PLAIN.replace(",", ";"), id="semicolons"),
    pytest.param(PLAIN.replace(",", "\t"), id="tabs"),
    pytest.param(PLAIN.replace("\n", "\r\n"), id="windows line endings"),
])
def test_common_csv_variants_read_as_the_plain_file(tmp_path, content):
    (tmp_path / "plain.csv").write_text(PLAIN)
    (tmp_path / "variant.csv").write_bytes(content.encode())
    pd.testing.assert_frame_equal(read_csv(tmp_path / "variant.csv"), read_csv(tmp_path / "plain.csv"))
    assert list(read_csv(tmp_path / "variant.csv").columns) == ["a", "b", "y"]
