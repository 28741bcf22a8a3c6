"""The real datasets that ship inside installed packages, written to ``data/`` as CSV.

Nothing here touches the network. The bytes written depend only on the pinned package versions, so a fresh
machine regenerates exactly what ``data.dvc`` records and ``dvc status`` stays clean.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from kerasflow.tasks.outputs.atomic import check_output, command_output


def _sklearn(loader_name: str, target_name: str, class_names: bool = False) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        from sklearn import datasets

        bunch = getattr(datasets, loader_name)()
        columns = [_column_name(name) for name in bunch.feature_names]
        frame = pd.DataFrame(bunch.data, columns=columns)
        target = np.asarray(bunch.target)
        frame[target_name] = np.asarray(bunch.target_names)[target] if class_names else target
        return frame

    return load


def _column_name(name: str) -> str:
    """`'sepal length (cm)'` -> `'sepal_length'`: names that survive a shell, a YAML key and a CSV header."""
    return name.split(" (")[0].strip().replace(" ", "_").lower()


def _linnerud() -> pd.DataFrame:
    """Linnerud's 20 men: three exercises (chins, situps, jumps) and three body measures (weight, waist, pulse), the
    classic data of a regression with several targets (`dataset.target: [weight, waist, pulse]`)."""
    from sklearn.datasets import load_linnerud

    bunch = load_linnerud()
    frame = pd.DataFrame(bunch.data.astype(np.int64), columns=[_column_name(name) for name in bunch.feature_names])
    for j, name in enumerate(bunch.target_names):
        frame[_column_name(name)] = bunch.target[:, j].astype(np.int64)
    return frame


def _boston() -> pd.DataFrame:
    from mlxtend.data import boston_housing_data

    X, y = boston_housing_data()
    columns = ["CRIM", "ZN", "INDUS", "CHAS", "NOX", "RM", "AGE", "DIS", "RAD", "TAX", "PTRATIO", "B", "LSTAT"]
    frame = pd.DataFrame(X, columns=columns)
    frame["MEDV"] = y
    return frame


def _mnist() -> pd.DataFrame:
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    frame = pd.DataFrame(X.astype(np.int64), columns=[f"pixel{i}" for i in range(X.shape[1])])
    frame["label"] = y.astype(np.int64)
    return frame


def _sunspots() -> pd.DataFrame:
    from statsmodels.datasets import sunspots

    frame = sunspots.load_pandas().data
    return pd.DataFrame({"year": frame["YEAR"].astype(np.int64), "sunactivity": frame["SUNACTIVITY"]})


def _macrodata() -> pd.DataFrame:
    """US macroeconomic series, quarterly 1959-2009 (statsmodels' macrodata): real GDP, consumption, investment and
    others side by side, parallel series to forecast together."""
    from statsmodels.datasets import macrodata

    frame = macrodata.load_pandas().data
    return frame.astype({"year": np.int64, "quarter": np.int64})


def _airline() -> pd.DataFrame:
    """Box & Jenkins' monthly international airline passengers, 1949-1960, in thousands: the books' series (pmdarima
    ships its 144 values in its source, not as a data file)."""
    from pmdarima.datasets import load_airpassengers

    passengers = load_airpassengers()
    months = pd.period_range("1949-01", periods=len(passengers), freq="M").strftime("%Y-%m")
    return pd.DataFrame({"month": months, "passengers": passengers.astype(np.int64)})


# file name -> loader. Adding a dataset changes data.dvc: run `kerasflow data && dvc add data` and commit both.
BUNDLED: dict[str, Callable[[], pd.DataFrame]] = {
    "iris.csv": _sklearn("load_iris", "species", class_names=True),
    "wine.csv": _sklearn("load_wine", "cultivar"),
    "breast_cancer.csv": _sklearn("load_breast_cancer", "benign"),
    "digits.csv": _sklearn("load_digits", "digit"),
    "diabetes.csv": _sklearn("load_diabetes", "progression"),
    "linnerud.csv": _linnerud,
    "boston_housing.csv": _boston,
    "mnist_5k.csv": _mnist,
    "sunspots.csv": _sunspots,
    "macrodata.csv": _macrodata,
    "airline_passengers.csv": _airline,
}


def write_bundled(out_dir: str | Path = "data") -> list[Path]:
    """Write every bundled dataset to `out_dir` as CSV and return the paths.

    Other files in `out_dir` (a user's own CSVs) are left alone; each file is replaced atomically, so an
    interrupted run never leaves a half-written CSV behind.
    """
    out_dir = Path(out_dir)
    for name in BUNDLED:  # all or none: a folder in one file's place refuses the command before the first is written
        check_output(out_dir / name)
    written = []
    for name, load in BUNDLED.items():
        target = out_dir / name
        with command_output(target) as tmp:  # a folder that cannot be made or written: one line naming the file
            # Fixed line endings and float repr: the same bytes on every machine with the pinned versions.
            load().to_csv(tmp, index=False, lineterminator="\n", float_format="%.10g")
        written.append(target)
    return written
