"""Progress of long work on one terminal line: units done of the total, and the time left at the pace so far.

Shown only when the stream is a terminal and ``CI`` is unset, as pip's and tqdm's bars behave: logs and CI
output stay free of carriage returns. Keras' own progress bar is per ``fit`` call; a k-fold evaluation is
k calls (or one stacked call), so the line here counts the whole job.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

import keras


def interactive(stream: TextIO) -> bool:
    """Whether `stream` is a person's terminal rather than a log, a pipe or CI."""
    return not os.environ.get("CI") and hasattr(stream, "isatty") and stream.isatty()


class ProgressLine:
    """`label: 7/20 epochs (35%), 0:12 left`, rewritten in place at most every `min_interval` seconds."""

    def __init__(self, label: str, total: int, unit: str, stream: TextIO | None = None,
                 min_interval: float = 0.5, enabled: bool | None = None) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = interactive(self.stream) if enabled is None else enabled
        self.min_interval = min_interval
        self.done = 0
        self._start = time.monotonic()
        self._shown = float("-inf")

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self._shown >= self.min_interval or self.done >= self.total):
            self._shown = now
            end = "\n" if self.done >= self.total else ""
            self.stream.write(f"\r{self.text(now - self._start)}\033[K{end}")
            self.stream.flush()

    def text(self, elapsed: float) -> str:
        """The line for `elapsed` seconds into the work."""
        percent = 100 * self.done / self.total if self.total else 100.0
        if self.done >= self.total:
            when = f"done in {_clock(elapsed)}"
        else:
            when = f"{_clock(elapsed / self.done * (self.total - self.done))} left" if self.done else "starting"
        return f"{self.label}: {self.done}/{self.total} {self.unit} ({percent:.0f}%), {when}"


class EpochProgress(keras.callbacks.Callback):
    """Count the epochs of every model a job fits (k fold models, or one stacked model) on one line."""

    def __init__(self, line: ProgressLine) -> None:
        super().__init__()
        self.line = line

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.line.advance()


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}" if minutes >= 60 else f"{minutes}:{seconds:02d}"
