"""Reading an experiment's CSV (or folder of class subfolders: :mod:`folders`) into features and target, with
errors that name the file and column."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel

from kerasflow.tasks.config.errors import DataError
from kerasflow.tasks.config.messages import cut
from kerasflow.tasks.config.schema import CLASS_TASKS, DatasetSpec
from kerasflow.tasks.data import checks
from kerasflow.tasks.data.folders import (
    DEFAULT_IMAGE_SIZE,
    LABEL,
    FolderFormat,
    class_files,
    folder_kind,
    read_class_folder,
    tracked_files,
)


@dataclass(frozen=True)
class Table:
    """An experiment's rows: features as read (preprocessing comes later, per fold) and the raw target: one column,
    or a frame of several for a multi-output regression (`dataset.target: [a, b]`)."""

    X: pd.DataFrame
    y: pd.Series | pd.DataFrame
    source: Path
    header: bool = True
    """Whether `source` begins with a header row: the file lines that data errors name count it."""

    @property
    def n_rows(self) -> int:
        return len(self.y)

    @property
    def targets(self) -> list[str]:
        """The target columns' names, in the order the model's outputs give them."""
        return [str(c) for c in self.y.columns] if isinstance(self.y, pd.DataFrame) else [str(self.y.name)]


def named(spec: BaseModel, name: str) -> str:
    """` (params.yaml:experiments.iris.dataset.target)`: the key behind a data problem, to append to its
    message; empty for a spec built in code, which has no params file to point to."""
    return f" ({spec.key(name)})" if getattr(spec, "located", False) else ""


def read_csv(path: str | Path, header: bool = True, key: str | None = None,
             text_columns: Collection[str] = ()) -> pd.DataFrame:
    """Read a CSV, header row or not; column names of a header-less file are their 0-based indices. The columns
    named in `text_columns` (those of them the file has) that pandas reads as numbers are read as the file's text
    instead: a model's category `01` stays `01` in rows that hold no other.

    The separator is a comma, a tab or a semicolon, found in the first line (:func:`checks.separator`); a UTF-8
    byte-order mark and spaces around header names are dropped; Windows line endings are read as any. A file that
    could mean two things is refused (:mod:`kerasflow.tasks.data.checks`). `key` is the params key that named the
    file (`params.yaml:experiments.iris.dataset.file`), for the message when it cannot be read.
    """
    path = Path(path)
    where = f" ({key})" if key else ""
    try:
        is_file = path.is_file()
    except OSError as exc:  # a name the system refuses (too long, say)
        raise DataError(f"{cut(str(path))}: cannot be opened ({exc.strerror}){where}") from None
    if not is_file:
        raise DataError(f"{cut(str(path))}: file not found{where}")
    try:
        found = checks.layout(path)
        first_line, sep, one_column = found.first_line, found.sep, found.one_column
        # In a single column an empty cell is an empty line, which pandas would skip: a series would lose a step
        # unseen. There they are kept as missing values, but for those after the last value (the file's end), and
        # those before a header.
        options = {"header": 0 if header else None, "sep": sep, "encoding": "utf-8-sig",
                   "skip_blank_lines": not one_column, "skiprows": found.blank_before if header else 0}
        frame = pd.read_csv(path, **options)
        big = {column for column in frame.columns if _big_integers(frame[column])}
        # Of `text_columns`, those read as numbers (a header's names stripped as header_names strips them), again as
        # text; not booleans, which training read as pandas does too.
        wanted = set(text_columns)
        numeric = {column: str for column in frame.columns if str(column).strip() in wanted
                   and (pd.api.types.is_integer_dtype(frame[column]) or pd.api.types.is_float_dtype(frame[column])
                        or column in big)}
        if numeric:
            frame = pd.read_csv(path, **options, dtype=numeric)
        for column in big.difference(numeric):  # beyond a float's range: infinite, refused at its line below
            frame[column] = np.array([float(str(value)) for value in frame[column]], dtype=np.float64)
        for column in frame.columns:  # True/False with a blank cell: as numeric as the same column without one
            values = frame[column]
            if values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) == "boolean":
                frame[column] = values.astype(np.float64)
        if one_column:
            filled = np.flatnonzero(frame.notna().to_numpy().any(axis=1))
            frame = frame.iloc[:filled[-1] + 1 if len(filled) else 0]
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty{where}; expected CSV rows"
                        + (" under a header row" if header else "")) from None
    except pd.errors.ParserError as exc:
        checks.refuse_uneven_rows(path, sep, header, where)  # the row at its own file line
        raise DataError(f"{path}: rows have different numbers of fields ({' '.join(str(exc).split())}); every row "
                        f"needs one value per column (separator: {checks.SEPARATORS[sep]})") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start}); expected a CSV") from None
    except OSError as exc:  # no permission to read it, an I/O error
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc}){where}") from None
    if frame.empty:
        raise DataError(f"{path}: the file has no data rows" + (", only a header row" if header else "") + where)
    checks.check_field_counts(frame, path, sep, header, where)
    if header:
        frame.columns = checks.header_names(first_line, sep, path, where, frame.shape[1])
    else:
        frame.columns = [str(c) for c in frame.columns]
    checks.check_cells(frame, path, header, where)
    return frame


def _big_integers(values: pd.Series) -> bool:
    """Whether pandas read a column of integers as objects: those beyond 64 bits (20 digits and more) it reads as
    Python ints, and a column of negative numbers and numbers of 2**63 and more as their text. They would pass for
    text (a category); they are numbers, read as floats."""
    if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
        return False
    kind = pd.api.types.infer_dtype(values, skipna=True)
    return kind == "integer" or (kind == "string" and bool(values.dropna().str.fullmatch(r"[-+]?\d+").all()))


def file_md5(path: str | Path) -> str:
    """The md5 DVC 3 records: of a file's bytes, read in blocks; of a folder, `<md5>.dir`, the md5 of the JSON list
    of the relative paths and md5s of the files DVC tracks under it (:func:`~folders.tracked_files`), sorted by path
    (so it changes exactly when one of them does)."""
    path = Path(path)
    if path.is_dir():
        return listing_md5([{"md5": file_md5(file), "relpath": file.relative_to(path).as_posix()}
                            for file in tracked_files(path) if file.is_file()])
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def listing_md5(entries: list[dict[str, str]]) -> str:
    """A folder's md5 from its files' `{"md5", "relpath"}` entries, as DVC 3 computes it: `<md5>.dir`."""
    listing = json.dumps(sorted(entries, key=lambda entry: entry["relpath"]), sort_keys=True)
    return hashlib.md5(listing.encode("utf-8")).hexdigest() + ".dir"


def folder_format(spec: DatasetSpec, root: str | Path = ".") -> FolderFormat | None:
    """How the rows of `spec.file` are read when it is a folder of class subfolders (None for a file), refusing
    `image_size` and `color_mode` where there are no images to read."""
    path = Path(root) / spec.file
    where = named(spec, "file")
    try:
        kind = folder_kind(path, where) if path.is_dir() else None
        if kind is None and not path.exists():
            return None  # reading it as a CSV says it is not found
    except OSError as exc:  # a name the system refuses (too long, say), a folder that cannot be listed
        raise DataError(f"{cut(str(path))}: cannot be opened ({exc.strerror}){where}") from None
    if kind == "images":
        return FolderFormat("images", tuple(spec.image_size or DEFAULT_IMAGE_SIZE), spec.color_mode or "rgb")
    for key in ("image_size", "color_mode"):
        if getattr(spec, key) is not None:
            holds = "text files" if kind == "texts" else "a file, not a folder of images"
            raise DataError(f"{path}: dataset.{key}{named(spec, key)} is how a folder's images are read, and "
                            f"dataset.file{where} holds {holds}; leave it out")
    return FolderFormat("texts") if kind == "texts" else None


def row_files(spec: DatasetSpec) -> list[str] | None:
    """Each row's file, relative to the folder `spec.file` names, in row order; None when `spec.file` is a file."""
    fmt = folder_format(spec)
    if fmt is None:
        return None
    path = Path(spec.file)
    return [file.relative_to(path).as_posix() for file in class_files(path, fmt)[0]]


def load_table(spec: DatasetSpec, root: str | Path = ".") -> Table:
    """Load `spec.file` (relative to `root`), a CSV or a folder of class subfolders, and split off the target column
    (a frame of them, several targets)."""
    path = Path(root) / spec.file
    fmt = folder_format(spec, root)
    if fmt is None:
        frame = read_csv(path, spec.header, spec.key("file") if spec.located else None)
    else:
        _check_folder_keys(spec, path)
        frame = read_class_folder(path, fmt)
        # Every file DVC tracks under the folder, rows or not, goes into its md5 (dataset.json's, as DVC's):
        # unreadable, it would stop the run after training, as its results are written.
        unreadable = next((file for file in tracked_files(path) if file.is_file() and not os.access(file, os.R_OK)),
                          None)
        if unreadable is not None:
            raise DataError(f"{unreadable}: cannot be read; every file DVC tracks under {path} goes into the "
                            f"folder's md5 (dataset.json's, as DVC's): make it readable, or move it out")
    targets = [_target_column(spec, target, frame, path) for target in spec.targets]
    if fmt is None and spec.task in CLASS_TASKS:
        # Class codes beyond 64 bits, read as floats, could fall on one float: they are classes, read as the text.
        codes = [target for target in targets if pd.api.types.is_float_dtype(frame[target])
                 and bool((frame[target].abs() >= 2.0 ** 63).any())]
        if codes:
            frame[codes] = read_csv(path, spec.header, text_columns=codes)[codes]
    if len(set(targets)) < len(targets):
        raise DataError(f"{path}: dataset.target{named(spec, 'target')} names a column more than once "
                        f"({', '.join(map(repr, targets))}); list each target column once")
    if not spec.header:  # a target is named by its index as dataset.target gives it, as the results name it: -1
        frame = frame.rename(columns=dict(zip(targets, spec.target_names)))
        targets = spec.target_names
    for target in targets:
        _check_target(spec, frame[target], path)
    y = frame[targets] if isinstance(spec.target, list) else frame[targets[0]]
    return Table(X=frame.drop(columns=targets), y=y, source=path, header=spec.header)


def _check_folder_keys(spec: DatasetSpec, path: Path) -> None:
    """A folder's class is its rows' `label` column; it has no header row to describe."""
    if spec.task not in CLASS_TASKS:
        raise DataError(f"{path}: a folder of class subfolders is read for a classification; task "
                        f"{spec.task!r}{named(spec, 'task')} needs a CSV. Allowed: {', '.join(CLASS_TASKS)}")
    if spec.target != LABEL:
        raise DataError(f"{path}: a folder's rows take their class from their subfolder, as the column {LABEL!r}: "
                        f"set dataset.target{named(spec, 'target')} to {LABEL!r}. Received: {spec.target!r}")
    if not spec.header:
        raise DataError(f"{path}: dataset.header{named(spec, 'header')} describes a CSV's first line, and a folder "
                        f"has none: leave it out")


def _check_target(spec: DatasetSpec, y: pd.Series, path: Path) -> None:
    """Refuse a target column with missing values, a classification's with too few classes, a multilabel task's
    that is not 0 and 1, or a regression's that is not numeric."""
    target = y.name
    if y.isna().any():
        rows = checks.file_lines(np.flatnonzero(y.isna().to_numpy()), spec.header, path)
        raise DataError(f"{path}: target column {target!r} has missing values (file lines {rows}); every row needs "
                        f"a target{named(spec, 'target')}")
    if spec.task == "multilabel":
        values = pd.to_numeric(y, errors="coerce")  # True and False count as 1 and 0, text as neither
        other = ~values.isin([0, 1])
        if other.any():
            bad = int(np.flatnonzero(other.to_numpy())[0])
            raise DataError(f"{path}: task 'multilabel'{named(spec, 'task')} needs each target column to hold 0 "
                            f"(the label does not apply) or 1 (it does); column {target!r} holds {y.tolist()[bad]!r} "
                            f"(file line {checks.file_lines([bad], spec.header, path)[0]})")
        if values.nunique() < 2:
            rows = "every row" if values.iloc[0] == 1 else "no row"
            raise DataError(f"{path}: label column {target!r} applies to {rows}: a model cannot learn when it does; "
                            f"leave it out of dataset.target{named(spec, 'target')}")
        return
    if spec.task != "regression":
        classes = pd.unique(y).tolist()
        if len(classes) < 2:
            raise DataError(f"{path}: target column {target!r} has a single class ({classes[0]!r}); "
                            f"task {spec.task!r}{named(spec, 'task')} needs at least two")
        if spec.task == "binary" and len(classes) != 2:
            raise DataError(f"{path}: task 'binary'{named(spec, 'task')} needs exactly 2 classes in {target!r}; "
                            f"found {len(classes)}: {sorted(map(str, classes))[:10]}. Use task 'multiclass'")
    elif not pd.api.types.is_numeric_dtype(y):
        bad = int(np.flatnonzero(pd.to_numeric(y, errors="coerce").isna().to_numpy())[0])
        raise DataError(f"{path}: task 'regression'{named(spec, 'task')} needs a numeric target; column {target!r} "
                        f"holds {y.iloc[bad]!r} (file line {checks.file_lines([bad], spec.header, path)[0]})")


def _target_column(spec: DatasetSpec, target: str | int, frame: pd.DataFrame, path: Path) -> str:
    if isinstance(target, int):
        if not -len(frame.columns) <= target < len(frame.columns):
            raise DataError(f"{path}: target index {target}{named(spec, 'target')} is out of range; the file "
                            f"has {len(frame.columns)} columns: use 0 to {len(frame.columns) - 1}")
        return frame.columns[target]
    if not spec.header:
        raise DataError(f"{path}: with `header: false` the target{named(spec, 'target')} must be a 0-based column "
                        f"index. Received: {target!r}")
    if target not in frame.columns:
        hint = difflib.get_close_matches(target, frame.columns, n=1)
        raise DataError(f"{path}: target column {target!r} not found{named(spec, 'target')}"
                        + (f"; did you mean {hint[0]!r}?" if hint else ".")
                        + f" Columns found: {', '.join(frame.columns)}")
    return target
