"""Reading an experiment's CSV into features and target, with errors that name the file and column."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.spec import DatasetSpec


class DataError(ValueError):
    """A data file that cannot be used as the spec describes; the message names the file and column."""


@dataclass(frozen=True)
class Table:
    """An experiment's rows: features as read (preprocessing comes later, per fold) and the raw target."""

    X: pd.DataFrame
    y: pd.Series
    source: Path

    @property
    def n_rows(self) -> int:
        return len(self.y)


def read_csv(path: str | Path, header: bool = True) -> pd.DataFrame:
    """Read a CSV, header row or not; column names of a header-less file are their 0-based indices."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        frame = pd.read_csv(path, header=0 if header else None)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: rows have different numbers of fields ({exc})") from None
    if frame.empty:
        raise DataError(f"{path}: the file has no data rows")
    frame.columns = [str(c) for c in frame.columns]
    return frame


def load_table(spec: DatasetSpec, root: str | Path = ".") -> Table:
    """Load `spec.file` (relative to `root`) and split off the target column."""
    path = Path(root) / spec.file
    frame = read_csv(path, spec.header)
    target = _target_column(spec, frame, path)
    y = frame[target]
    if y.isna().any():
        rows = (np.flatnonzero(y.isna().to_numpy()) + 1 + int(spec.header))[:5].tolist()
        raise DataError(f"{path}: target column {target!r} has missing values (file lines {rows})")
    if spec.task != "regression":
        classes = pd.unique(y).tolist()
        if len(classes) < 2:
            raise DataError(f"{path}: target column {target!r} has a single class ({classes[0]!r}); "
                            f"task {spec.task!r} needs at least two")
        if spec.task == "binary" and len(classes) != 2:
            raise DataError(f"{path}: task 'binary' needs exactly 2 classes in {target!r}; "
                            f"found {len(classes)}: {sorted(map(str, classes))[:10]}")
    elif not pd.api.types.is_numeric_dtype(y):
        raise DataError(f"{path}: task 'regression' needs a numeric target; column {target!r} is {y.dtype}")
    return Table(X=frame.drop(columns=[target]), y=y, source=path)


def _target_column(spec: DatasetSpec, frame: pd.DataFrame, path: Path) -> str:
    if isinstance(spec.target, int):
        if not -len(frame.columns) <= spec.target < len(frame.columns):
            raise DataError(f"{path}: target index {spec.target} is out of range; "
                            f"the file has {len(frame.columns)} columns")
        return frame.columns[spec.target]
    if not spec.header:
        raise DataError(f"{path}: with `header: false` the target must be a 0-based column index. "
                        f"Received: {spec.target!r}")
    if spec.target not in frame.columns:
        raise DataError(f"{path}: target column {spec.target!r} not found. Columns found: {', '.join(frame.columns)}")
    return spec.target
