"""Progress of long work on one terminal line, drawn by tqdm: units done of the total, a bar, and the time
left at the pace so far.

Shown only when the stream is a terminal and ``CI`` is unset, so logs and CI output stay free of carriage
returns. Keras' own progress bar is per ``fit`` call; a k-fold evaluation is k calls (or one stacked call), so
the line here counts the whole job.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

import keras
from tqdm import tqdm

BAR_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit} {percentage:3.0f}%|{bar}| {elapsed}<{remaining}"
"""The line with a known total: `iris_mlp: 7/20 epochs  35%|###5      | 00:04<00:08`."""
OPEN_FORMAT = "{desc}: {n_fmt} {unit} [{elapsed}]"
"""The line when the total is not known: no percentage or time left to claim."""


def interactive(stream: TextIO) -> bool:
    """Whether `stream` is a person's terminal rather than a log, a pipe or CI."""
    return not os.environ.get("CI") and hasattr(stream, "isatty") and stream.isatty()


class ProgressLine:
    """`total` units of work counted on one line of `stream` (stderr by default), closed when all are done.

    Parameters
    ----------
    label : str
        What the work is, at the start of the line (`iris_mlp: 10 folds`).
    total : int
        Units the work takes; 0 when not known, then only the count and the time so far are shown.
    unit : str
        The units' name, plural (`epochs`, `trials`).
    stream : text stream, optional
        Where the line is drawn; stderr by default.
    min_interval : float
        Seconds between redraws at least, so that fast units cost no terminal writes.
    enabled : bool, optional
        Draw the line; by default only when `stream` is :func:`interactive`.

    Examples
    --------
    >>> import io
    >>> stream = io.StringIO()
    >>> line = ProgressLine("iris", total=2, unit="epochs", stream=stream, enabled=True, min_interval=0)
    >>> line.advance(); line.advance()
    >>> stream.getvalue().rstrip().rsplit("\\r", 1)[-1].startswith("iris: 2/2 epochs 100%")
    True
    """

    def __init__(self, label: str, total: int, unit: str, stream: TextIO | None = None,
                 min_interval: float = 0.5, enabled: bool | None = None) -> None:
        stream = stream if stream is not None else sys.stderr
        self.label, self.total, self.unit = label, total, unit
        self.enabled = interactive(stream) if enabled is None else enabled
        self.done = 0
        """Units done so far (counted even when the line is not drawn)."""
        self.bar = tqdm(total=total or None, desc=label, unit=unit, file=stream, mininterval=min_interval,
                        bar_format=BAR_FORMAT if total else OPEN_FORMAT, disable=not self.enabled, leave=True,
                        dynamic_ncols=True)

    def advance(self, n: int = 1) -> None:
        """Count `n` more units done; the last one draws the final line and ends it."""
        self.done += n
        self.bar.update(n)
        if self.total and self.done >= self.total:
            self.bar.close()


class EpochProgress(keras.callbacks.Callback):
    """Count the epochs of every model a job fits (k fold models, or one stacked model) on one line."""

    def __init__(self, line: ProgressLine) -> None:
        super().__init__()
        self.line = line

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.line.advance()
