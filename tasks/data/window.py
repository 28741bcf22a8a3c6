"""Look-back windows: a series as supervised rows, its previous `lookback` values predicting the next one.

Windowing only re-indexes values (nothing is fitted), so it can run before the split; the split is then made
over the windows in time order, and each window keeps its target's row number in the file as its index.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kerasflow.tasks.config.errors import DataError
from kerasflow.tasks.data.table import Table

LAST_VALUE = "lag_1"
"""The column holding the value just before each target: the naive last-value forecast."""


def lag_columns(lookback: int) -> list[str]:
    """`lag_<lookback>` ... `lag_1`: oldest first, as the values come in time."""
    return [f"lag_{k}" for k in range(lookback, 0, -1)]


def window_table(table: Table, lookback: int) -> Table:
    """The target series of `table` as rows of its `lookback` previous values (the other columns are dropped).

    Examples
    --------
    >>> from pathlib import Path
    >>> series = Table(X=pd.DataFrame(index=range(5)), y=pd.Series([1.0, 2.0, 3.0, 4.0, 5.0]), source=Path("s.csv"))
    >>> rows = window_table(series, 2)
    >>> rows.X.to_numpy().tolist(), rows.y.tolist(), rows.y.index.tolist()
    ([[1.0, 2.0], [2.0, 3.0], [3.0, 4.0]], [3.0, 4.0, 5.0], [2, 3, 4])
    """
    values = table.y.to_numpy(dtype=np.float64)
    if len(values) < lookback + 2:
        raise DataError(f"{table.source}: preprocess.lookback={lookback} needs at least {lookback + 2} values "
                        f"in the series; it has {len(values)}")
    windows = np.lib.stride_tricks.sliding_window_view(values[:-1], lookback)
    index = table.y.index[lookback:]
    return Table(X=pd.DataFrame(windows, columns=lag_columns(lookback), index=index),
                 y=table.y.iloc[lookback:], source=table.source)
