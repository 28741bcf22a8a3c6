"""Look-back windows: a series as supervised rows, the previous `lookback` steps predicting a later value.

A window holds the target's own previous values and, for a multivariate series (`preprocess.lookback_columns`),
the other columns' values at the same steps, time-major (every column of the oldest step first), so a reshape to
[lookback, columns] makes them time steps. Several targets (`dataset.target: [a, b]`, the books' multiple parallel
series) are each read at every step and each forecast, one value a window. With `horizon` h the target is h rows
after the window's last step; with `sampling_rate` r the window's steps are r rows apart, as Keras'
`timeseries_dataset_from_array` samples them. With `steps_out` k the targets are the k rows from there on, one
vector a window (a multi-step forecast; of several targets, step-major: every target's first step, then the next).

Windowing only re-indexes values (nothing is fitted), so it can run before the split; the split is then made over
the windows in time order, and each window keeps its target's row number in the file as its index: a training
window holds values of steps before its target only, and the preprocessing is fitted on training windows alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from kerasflow.tasks.config.errors import DataError
from kerasflow.tasks.config.schema import PreprocessSpec
from kerasflow.tasks.data.checks import file_lines
from kerasflow.tasks.data.preprocess import impute_advice
from kerasflow.tasks.data.table import Table, named


def lag_columns(lookback: int, horizon: int = 1, columns: Sequence[str] = (), sampling_rate: int = 1) -> list[str]:
    """The window's column names, oldest step first: `lag_<k>` for a univariate series (k rows before the
    target), `<column>_lag_<k>` per column (the targets first) for a multivariate one.

    Examples
    --------
    >>> lag_columns(3)
    ['lag_3', 'lag_2', 'lag_1']
    >>> lag_columns(2, horizon=2, columns=["y", "temp"])
    ['y_lag_3', 'temp_lag_3', 'y_lag_2', 'temp_lag_2']
    >>> lag_columns(3, sampling_rate=6)
    ['lag_13', 'lag_7', 'lag_1']
    """
    steps = range(horizon + (lookback - 1) * sampling_rate, horizon - 1, -sampling_rate)
    if not columns:
        return [f"lag_{k}" for k in steps]
    return [f"{column}_lag_{k}" for k in steps for column in columns]


def named_steps(targets: Sequence[str], columns: Sequence[str]) -> bool:
    """Whether a window's columns are named by the column they read (`<column>_lag_<k>`): a window that reads other
    columns than the target (:func:`window_columns`) or several targets; a univariate series' are `lag_<k>`, also
    where `lookback_columns: all` finds no other column (as a saved model's window is rebuilt: from its columns)."""
    return bool(columns) or len(targets) > 1


def last_value_columns(spec: PreprocessSpec, targets: Sequence[str], columns: Sequence[str]) -> list[str]:
    """The window columns holding each target's value at the window's last step: the naive forecast. `columns`:
    the other columns the window reads.

    Examples
    --------
    >>> spec = PreprocessSpec(lookback=3)
    >>> last_value_columns(spec, ["y"], []), last_value_columns(spec, ["a", "b"], [])
    (['lag_1'], ['a_lag_1', 'b_lag_1'])
    >>> last_value_columns(spec, ["y"], ["temp"])
    ['y_lag_1']
    """
    return lag_columns(1, spec.horizon, targets if named_steps(targets, columns) else [])


def window_columns(spec: PreprocessSpec, table: Table) -> list[str]:
    """The file's columns a window reads besides the target, in the file's order (`lookback_columns`)."""
    if not spec.lookback_columns:
        return []
    found = [str(c) for c in table.X.columns]
    if spec.lookback_columns == "all":
        return found
    missing = [c for c in spec.lookback_columns if c not in found]
    if missing:
        raise DataError(f"{table.source}: {spec.key('lookback_columns')} names column(s) {missing} the file does "
                        f"not have besides the target. Columns found: {', '.join(found)}")
    return [c for c in found if c in spec.lookback_columns]


def window_table(table: Table, spec: PreprocessSpec) -> Table:
    """`table` as rows of its previous `spec.lookback` steps, `spec.sampling_rate` rows apart (:func:`lag_columns`),
    each predicting the target `spec.horizon` rows after the last; the columns a window does not read are dropped.
    Its `y` is that first target (a multi-step forecast's others: :func:`window_targets`), of each target column
    where there are several.

    Examples
    --------
    >>> from pathlib import Path
    >>> series = Table(X=pd.DataFrame(index=range(5)), y=pd.Series([1.0, 2.0, 3.0, 4.0, 5.0]), source=Path("s.csv"))
    >>> rows = window_table(series, PreprocessSpec(lookback=2))
    >>> rows.X.to_numpy().tolist(), rows.y.tolist(), rows.y.index.tolist()
    ([[1.0, 2.0], [2.0, 3.0], [3.0, 4.0]], [3.0, 4.0, 5.0], [2, 3, 4])
    >>> rows = window_table(series, PreprocessSpec(lookback=2, sampling_rate=2))
    >>> rows.X.to_numpy().tolist(), rows.y.tolist()
    ([[1.0, 3.0], [2.0, 4.0]], [4.0, 5.0])
    >>> y = pd.DataFrame({"a": [1, 2, 3, 4], "b": [5, 6, 7, 8]})
    >>> parallel = Table(X=pd.DataFrame(index=range(4)), y=y, source=Path("p.csv"))
    >>> rows = window_table(parallel, PreprocessSpec(lookback=2))
    >>> list(rows.X.columns), rows.X.to_numpy().tolist(), rows.y.to_numpy().tolist()
    (['a_lag_2', 'b_lag_2', 'a_lag_1', 'b_lag_1'], [[1, 5, 2, 6], [2, 6, 3, 7]], [[3, 7], [4, 8]])
    """
    lookback, horizon, rate, span = spec.lookback, spec.horizon, spec.sampling_rate, spec.window_span
    columns = window_columns(spec, table)
    targets = table.targets
    n = len(table.y)
    reach = horizon + spec.steps_out - 1  # from a window's last step to its last target
    if n < span + reach + 1:
        ahead = f"horizon {horizon}" + ("" if spec.steps_out == 1 else f" and steps_out {spec.steps_out}")
        sampled = "" if rate == 1 else f" and sampling_rate {rate}"
        raise DataError(f"{table.source}: {spec.key('lookback')}={lookback} with {ahead}{sampled} needs at "
                        f"least {span + reach + 1} rows in the series; it has {n}")
    # The rows some window reads (the last `reach` are only ever targets): a gap there is named at the file's
    # column and rows, not at the windows' lags.
    read = table.X[columns].iloc[:n - reach]
    gap = next((column for column in columns if read[column].isna().any()), None)
    if gap is not None and spec.impute == "none":
        lines = file_lines(np.flatnonzero(read[gap].isna().to_numpy()), table.header, table.source)
        advice = impute_advice(named(spec, "impute"))
        raise DataError(f"{table.source}: feature column {gap!r} has missing values (file lines {lines}), which "
                        f"windows would read, and {advice}")
    steps = pd.concat([table.y, table.X[columns]], axis=1)
    names = lag_columns(lookback, horizon, [*targets, *columns] if named_steps(targets, columns) else [], rate)
    rows = n - span - reach + 1
    # Window i reads steps i, i + rate, .., i + span - 1 and predicts step i + span + horizon - 1 (and the
    # steps_out - 1 after it).
    blocks = [steps.iloc[j * rate:j * rate + rows].reset_index(drop=True) for j in range(lookback)]
    windows = pd.concat(blocks, axis=1).set_axis(names, axis=1)
    first = table.y.iloc[span + horizon - 1:][:rows]
    return Table(X=windows.set_axis(first.index, axis=0), y=first, source=table.source, header=table.header)


def window_targets(values: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The target values each window of a series of `values` (:func:`window_table`) predicts: one per window (a
    row of them, one a target, for a table of several), or with `steps_out` k, k a window, shaped ``(windows, k)``
    (of several targets, ``(windows, k * targets)``, step-major: the model's outputs as a Dense layer of k *
    targets units, or an encoder-decoder's k steps of a unit a target, flattened, give them).

    Examples
    --------
    >>> window_targets(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), PreprocessSpec(lookback=2, steps_out=2)).tolist()
    [[3.0, 4.0], [4.0, 5.0]]
    >>> window_targets(np.array([[1, 10], [2, 20], [3, 30], [4, 40]]), PreprocessSpec(lookback=2, steps_out=2))
    array([[ 3, 30,  4, 40]])
    """
    first, k = spec.window_span + spec.horizon - 1, spec.steps_out
    rows = len(values) - first - k + 1
    if k == 1:
        return values[first:]
    return np.stack([values[first + j:first + j + rows] for j in range(k)], axis=1).reshape(rows, -1)


def lagged_column(name: str) -> str:
    """The file's column a window's column (:func:`lag_columns`) reads; any other name as it is.

    Examples
    --------
    >>> lagged_column("wind_lag_2"), lagged_column("wind")
    ('wind', 'wind')
    """
    return re.sub(r"_lag_\d+$", "", name)


def named_columns(names: Sequence[str], targets: Sequence[str], horizon: int) -> list[str]:
    """The other columns a window reads, from its column names (:func:`lag_columns`): those of its last step.

    Examples
    --------
    >>> named_columns(['y_lag_2', 'temp_lag_2', 'y_lag_1', 'temp_lag_1'], ["y"], 1)
    ['temp']
    >>> named_columns(['lag_2', 'lag_1'], ["y"], 1)
    []
    """
    suffix = f"_lag_{horizon}"
    own = {f"{target}{suffix}" for target in targets}
    return [name.removesuffix(suffix) for name in names if name.endswith(suffix) and name not in own]


def window_rows(frame: pd.DataFrame, spec: PreprocessSpec, targets: Sequence[str],
                source: object = "input") -> pd.DataFrame:
    """A file's consecutive rows (a saved series model's input, with the targets' columns and the columns
    `spec.lookback_columns` names) as the windows `spec` makes, each predicting the targets `horizon` rows after its
    last row: `kerasflow predict`'s input, `source` naming it in errors."""
    y = frame[list(targets)] if len(targets) > 1 else frame[targets[0]]
    table = Table(X=frame[list(spec.lookback_columns)], y=y, source=source)
    # Rows past the end, never read, give the last windows targets to stand against.
    filler = [0] * (spec.horizon + spec.steps_out)
    padded = Table(X=pd.concat([table.X, table.X.iloc[filler]], ignore_index=True),
                   y=pd.concat([table.y, table.y.iloc[filler]], ignore_index=True), source=table.source)
    return window_table(padded, spec).X.iloc[:len(frame) - spec.window_span + 1].reset_index(drop=True)
