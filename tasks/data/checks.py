"""Checks that a CSV means one thing: its separator, its header's names, and cells a numeric column can hold.

pandas reads many ambiguous files without a word: it renames a repeated column `a` to `a.1`, reads a header
repeated inside the data as one more row (and the whole column as text), and parses `inf` or `1e400` as numbers
that Keras, training in float32, turns into NaN losses. Each check here refuses such a file with one line naming
the file, the column and the first offending file lines, before anything is trained or written.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from kerasflow.tasks.config.errors import DataError

SEPARATORS = {",": "commas", "\t": "tabs", ";": "semicolons"}
"""The separators read, in the order they are looked for in a file's first line."""

FLOAT32_MAX = float(np.finfo(np.float32).max)
"""The largest magnitude Keras' float32 tensors hold: larger values become infinite as they are fed."""

DECIMAL_COMMA = re.compile(r"\s*[-+]?(\d{1,3}(\.\d{3})+|\d+),\d+\s*")
"""A number written with a decimal comma, its thousands grouped by points or not: `12,5`, `1.234,5`."""
SHOWN_LINES = 5


class Layout(NamedTuple):
    """How a CSV is laid out, read from its first line that is not blank (empty, or spaces alone)."""

    first_line: str
    """That line, without its line ending."""
    blank_before: int
    """The blank lines before it."""
    sep: str
    """Its separator (:func:`separator`)."""
    one_column: bool
    """Whether the file is a single column: that line holds one field (:func:`fields`)."""


def layout(path: Path) -> Layout:
    """The layout of the CSV at `path`, as read_csv and the file-line count read it."""
    blank, first = 0, ""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        for line in handle:
            if line.strip():
                first = line.rstrip("\r\n")
                break
            blank += 1
    sep = separator(first)
    return Layout(first, blank, sep, len(fields(first, sep)) < 2)


def fields(line: str, sep: str) -> list[str]:
    """The fields of one CSV line, quotes read as read_csv reads them: a separator inside a quoted value splits
    nothing.

    >>> fields('"Preis, EUR";Menge', ","), fields('"Preis, EUR";Menge', ";")
    (['Preis, EUR;Menge'], ['Preis, EUR', 'Menge'])
    """
    return next(csv.reader([line], delimiter=sep), [])


def separator(first_line: str) -> str:
    """The separator of a CSV whose first line is `first_line`: a comma where it has one, else a tab, else a
    semicolon (a single column has none: comma), one inside a quoted name not counted. A line of semicolons whose
    every comma is a decimal comma (``1,5;2;0``, a header-less file saved with a comma as the decimal point) is a
    semicolon's: its decimal commas are then refused by name (:func:`check_cells`), not read as more columns.

    Examples
    --------
    >>> separator("a,b,y"), separator("a;b;y"), separator("a\\tb\\ty"), separator("value"), separator("1,5;2;0")
    (',', ';', '\\t', ',', ';')
    >>> separator("name\\tnote;x\\ty"), separator("a,note;x,y"), separator('"Preis, EUR";Menge;y')
    ('\\t', ',', ';')
    """
    parts = first_line.split(";")
    commas = [part for part in parts if "," in part]
    if len(parts) > 1 and "\t" not in first_line and commas and all(map(DECIMAL_COMMA.fullmatch, commas)):
        return ";"
    return next((sep for sep in SEPARATORS if len(fields(first_line, sep)) > 1), ",")


def header_names(first_line: str, sep: str, path: Path, where: str, columns: int) -> list[str]:
    """The header's column names, stripped of surrounding spaces; refused when one is empty or repeated, or when
    the first line does not hold one name per column of the rows (a blank first line, a name with a line break)."""
    names = [name.strip() for name in fields(first_line, sep)]
    if len(names) != columns:
        raise DataError(f"{path}: line 1 holds {len(names)} column name(s) but the rows have {columns} columns; the "
                        f"header row must be the first line, one name per column, with no line break in a "
                        f"name{where}")
    empty = [i for i, name in enumerate(names) if not name]
    if empty:
        raise DataError(f"{path}: the header row has an empty column name (0-based column {empty[0]} of "
                        f"{len(names)}); every column needs a name{where}")
    seen: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        seen.setdefault(name, []).append(i)
    repeated = {name: columns for name, columns in seen.items() if len(columns) > 1}
    if repeated:
        name, columns = next(iter(repeated.items()))
        raise DataError(f"{path}: column name {name!r} appears {len(columns)} times in the header row (0-based "
                        f"columns {columns}); every column needs its own name{where}")
    return names


def check_field_counts(frame: pd.DataFrame, path: Path, sep: str, header: bool, where: str) -> None:
    """Refuse rows of another number of fields than the header's names (a header-less file: its first row's). pandas
    reads rows one field longer than the header as an index column plus the named ones, without a word: right for a
    row name before each row (R's write.table), every value shifted one column for a field too many (a trailing
    separator; a single column of decimal commas reads as its integer parts): a file that could mean either. It
    pads a shorter row with missing values. The file is read again, field by field, only where either may have
    happened: an index other than the rows' count, a first row longer than the header (whose first fields pandas
    takes for an index even when they count 0, 1, 2...), or a missing value.
    """
    if (frame.index.equals(pd.RangeIndex(len(frame))) and not frame.isna().to_numpy().any()
            and not (header and _first_row_longer(path, sep))):
        return
    refuse_uneven_rows(path, sep, header, where)


def refuse_uneven_rows(path: Path, sep: str, header: bool, where: str) -> None:
    """Refuse the first row, at the file line it starts on, of another number of fields than the first (the header's
    names); nothing where every row has as many. Also what names the row where read_csv cannot read the file: pandas
    counts a value quoted across lines as one line."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        found = records(handle, sep)
        expected = next((len(row) for row, _, blank in found if not blank), 0)  # the header's (pandas skips blanks)
        # A blank line, or one of spaces alone, is no row (pandas skips both; a one-column file's are checked as cells).
        rows = ((row, line) for row, line, blank in found if not blank)
        for count, (row, line) in enumerate(rows):
            if len(row) != expected:
                break
        else:
            return
    names = "the header names" if header else "the first row holds"
    hint = ""
    if expected == 1 and DECIMAL_COMMA.fullmatch(sep.join(row)):
        hint = f" (is {sep.join(row)!r} a number with a decimal comma? kerasflow reads '.' as the decimal point)"
    elif header and count == 0 and len(row) == expected + 1:  # as R's write.table writes, or a value too many
        hint = " (a row name before each row, or a field too many: name a row names' column in the header, or drop it)"
    raise DataError(f"{path}: file line {line} holds {len(row)} field(s) where {names} {expected}{hint}; every row "
                    f"needs one value per column (separator: {SEPARATORS[sep]}; an empty cell for a missing "
                    f"value){where}")


def _first_row_longer(path: Path, sep: str) -> bool:
    """Whether the first row under the header holds more fields than the header names: then read_csv took its
    first fields for an index."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        rows = (row for row, _, blank in records(handle, sep) if not blank)
        names, first = next(rows, []), next(rows, [])
    return len(first) > len(names)


def file_lines(rows: np.ndarray | list[int], header: bool, path: Path | None = None) -> list[int]:
    """The 1-based file lines of 0-based data rows `rows` (the first few). With `path`, the CSV the rows were read
    from (:func:`~kerasflow.tasks.data.table.read_csv`), the line each row starts on, found by reading the file
    again: blank lines pandas skips and values quoted across lines put rows further down than their count."""
    shown = [int(row) for row in np.asarray(rows)[:SHOWN_LINES]]
    counted = [row + 1 + int(header) for row in shown]
    if path is None or not shown or not Path(path).is_file():
        return counted
    starts = _row_starts(Path(path), header, max(shown))
    return [starts.get(row, line) for row, line in zip(shown, counted)]


def _row_starts(path: Path, header: bool, last: int) -> dict[int, int]:
    """The file line each 0-based data row up to `last` starts on, rows counted as read_csv counts them: a blank
    line, or one of spaces alone, is no row, but in a single column (where it is a missing value). Empty if the file
    cannot be read again as it was."""
    starts: dict[int, int] = {}
    try:
        found = layout(path)
        with open(path, encoding="utf-8-sig", newline="") as handle:
            row = -int(header)  # the header's record is row -1
            for _, start, blank in records(handle, found.sep):
                if row < 0 and blank:  # blank lines before the header, which read_csv skips
                    continue
                if found.one_column or not blank:
                    if row >= 0:
                        starts[row] = start
                    if row == last:
                        break
                    row += 1
    except (OSError, UnicodeDecodeError, csv.Error):
        return {}
    return starts


def records(lines: Iterable[str], sep: str) -> Iterator[tuple[list[str], int, bool]]:
    """A CSV's records: each one's fields, the 1-based line it starts on, and whether it is a blank line (empty, or
    spaces alone: pandas skips it), told by its text, not its fields (a line `""` is a row of one empty field)."""
    read: list[str] = []

    def each_line() -> Iterator[str]:
        for line in lines:
            read.append(line)
            yield line

    # As long a field as read_csv reads (the csv module refuses those over 128 KiB by default: a long text cell).
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    reader = csv.reader(each_line(), delimiter=sep)
    start = 1
    for record in reader:
        yield record, start, len(read) == 1 and not read[0].strip()
        start = reader.line_num + 1
        read.clear()


def check_cells(frame: pd.DataFrame, path: Path, header: bool, where: str) -> None:
    """Refuse a header repeated inside the data, numbers mixed with text in a column, decimal commas, and numbers
    that are infinite or beyond float32's range. A missing value (empty cell, NaN) is none of these."""
    # A header repeated inside the data turns every column it crosses into text: no numeric column, no repeat.
    if header and not any(pd.api.types.is_numeric_dtype(frame[column]) for column in frame.columns):
        repeats = np.ones(len(frame), dtype=bool)
        for column in frame.columns:
            repeats &= frame[column].astype(str).str.strip().to_numpy() == str(column)
        if repeats.any():
            lines = file_lines(np.flatnonzero(repeats), header, path)
            raise DataError(f"{path}: file line(s) {lines} repeat the header row inside the data; remove them{where}")
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values):
            _check_range(values, column, path, header, where)
        elif pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values):
            _check_text(values, column, path, header, where)


def _check_range(values: pd.Series, column: str, path: Path, header: bool, where: str) -> None:
    numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.flatnonzero(np.abs(numbers) > FLOAT32_MAX)  # inf included; NaN compares false
    if bad.size:
        raise DataError(f"{path}: column {column!r} holds {numbers[bad[0]]:g} at file line(s) "
                        f"{file_lines(bad, header, path)}: infinite or beyond ±{FLOAT32_MAX:.4g}, the float32 range "
                        f"Keras trains in; use finite values (an empty cell for a missing one){where}")


def _check_text(values: pd.Series, column: str, path: Path, header: bool, where: str) -> None:
    present = values.notna().to_numpy()
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    numeric = ~np.isnan(numbers)
    text = present & ~numeric
    if numeric.sum() > text.sum() and text.any():
        bad = np.flatnonzero(text)
        example = values.iloc[int(np.flatnonzero(numeric)[0])]
        raise DataError(f"{path}: column {column!r} mixes numbers (such as {example!r}) with text: "
                        f"{values.iloc[bad[0]]!r} at file line(s) {file_lines(bad, header, path)}; a numeric column "
                        f"holds numbers only (an empty cell for a missing one){where}")
    if numeric.any() and not text.any():
        _check_range(pd.Series(numbers), column, path, header, where)
    commas = np.flatnonzero(present & values.astype(str).str.fullmatch(DECIMAL_COMMA.pattern).to_numpy())
    if text.any() and commas.size == text.sum():
        raise DataError(f"{path}: column {column!r} holds numbers with a decimal comma ({values.iloc[commas[0]]!r} "
                        f"at file line {file_lines(commas, header, path)[0]}); kerasflow reads '.' as the decimal "
                        f"point: save the file with '.' decimals{where}")
