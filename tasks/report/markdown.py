"""The report's Markdown summary (`reports/summary.md`, also a Prefect artifact): the tables of
:func:`kerasflow.tasks.report.tables.overview`, rendered by pandas (through tabulate)."""

from __future__ import annotations

import pandas as pd

from kerasflow.tasks.report import tables
from kerasflow.tasks.report.collect import Report


def render_markdown(report: Report) -> str:
    """The summary: scores, sweeps, data, wall time and environment, one table each."""
    parts = ["# kerasflow results"]
    for title, table in tables.overview(report):
        parts += [f"## {title}", markdown_table(table)]
    return "\n\n".join(parts) + "\n"


def markdown_table(table: pd.DataFrame) -> str:
    """`table` as a pipe table, each cell as `str` gives it.

    Cells are not padded to the column's width, so a row reads the same in the file as in a search of it
    (`| iris | accuracy |`), and numbers are not parsed again (`0.9500` stays `0.9500`).

    Examples
    --------
    >>> print(markdown_table(pd.DataFrame({"experiment": ["iris"], "score": [0.95], "note": [""]})))
    | experiment | score | note |
    |--------------|---------|--------|
    | iris | 0.95 |  |
    >>> print(markdown_table(pd.DataFrame({"class": ["a|b"]})))
    | class |
    |---------|
    | a\\|b |
    """
    # A `|` in a cell (a class label, a path) would end the cell: escaped, as Markdown tables take it.
    return table.astype(str).map(lambda cell: cell.replace("|", r"\|")).to_markdown(
        index=False, tablefmt="pipe", stralign=None, numalign=None, disable_numparse=True)
