"""The data step: bundled datasets written byte-for-byte as data.dvc records, and clear errors on bad CSVs."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from conftest import BIN, ROOT
from tasks.bundled import BUNDLED, write_bundled
from tasks.data import DataError, load_table, read_csv
from tasks.spec import DatasetSpec


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


@pytest.mark.parametrize("content, spec, message", [
    ("", {"target": "y"}, "the file is empty"),
    ("a,b,y\n", {"target": "y"}, "the file has no data rows"),
    ("a,b,y\n1,2,0\n1,2,3,4\n", {"target": "y"}, "rows have different numbers of fields"),
    ("a,b,y\n1,2,0\n3,4,0\n", {"target": "y", "task": "binary"}, "has a single class (0)"),
    ("a,b,y\n1,2,0\n3,4,1\n5,6,2\n", {"target": "y", "task": "binary"}, "needs exactly 2 classes"),
    ("a,b,y\n1,2,0\n3,4,\n", {"target": "y"}, "target column 'y' has missing values (file lines [3])"),
    ("a,b,y\n1,2,x\n3,4,z\n", {"target": "y", "task": "regression"}, "needs a numeric target"),
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


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="nowhere.csv: file not found"):
        load_table(DatasetSpec(file="nowhere.csv", target="y", task="binary"), root=tmp_path)
