"""Every fold's per-epoch history as TensorBoard event files too, for teams that watch training in TensorBoard.

Used when ``tracking: {tensorboard: <folder>}`` is in params.yaml: ``tensorboard --logdir <folder>`` then follows
runs and sweeps as they train, and sets runs side by side. Each fold is laid out as Keras' TensorBoard callback
lays out one fit: a ``train`` and a ``validation`` folder, each value a scalar ``epoch_<name>`` (``epoch_loss``,
``epoch_accuracy``; a changing learning rate ``epoch_learning_rate``, under ``train``), at step = the epoch from 0,
so a tag's training and held-out curves share a chart as in the books. Under the folder, by :func:`run_folder`:

- ``<experiment>/<run>/fold_00/train``...: a ``kerasflow run`` of the experiment, ``<run>`` the UTC time the
  experiment started (``20261207-081502``), so every run is a run of its own in TensorBoard;
- ``<experiment>/tune-<run>/<config id>/fold_00/train``...: each config of a sweep, by its id in trials.csv; once
  the sweep is done, ``<config id>/`` itself holds the config as a session of TensorBoard's HParams dashboard, its
  params and its score (:func:`log_configs`);
- ``<experiment>/nested-<run>/outer_0/<config id>/fold_00/train``...: each outer fold's sweep of a nested one, laid
  out as a sweep's.

The values are the history's (:class:`kerasflow.tasks.outputs.live.HistoryFolder`) as it adds them, on disk when it
writes its own files: about once a second while the folds train (folds trained as Ray tasks: once they are done).
tensorboardX's protocol buffers and its synchronous `RecordWriter` write them, so no backend needs TensorFlow for
them; not its `SummaryWriter`, which feeds a thread per file through a multiprocessing queue, an event per scalar:
logging the 30 folds of iris_mlp that way costs more than training them (BENCHMARKS.md, row *live history*).
Here each fold's epoch is one event a part, written as it comes through its `RecordWriter`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kerasflow.tasks.config.errors import ParamsError
from kerasflow.tasks.outputs.metrics import row_params

if TYPE_CHECKING:
    from tensorboardX import RecordWriter


def logdir(configured: str | None, source: str = "params.yaml") -> Path | None:
    """The TensorBoard folder params.yaml's ``tracking.tensorboard`` names (`configured`), absolute (a sweep's trials
    run in other processes); None for none. Checked, not made (the first run makes it): one that cannot be a folder
    kerasflow writes in, under a file or unwritable, is refused before anything trains or is written."""
    if configured is None:
        return None
    try:
        path = Path(configured).expanduser().absolute()
        existing = next(folder for folder in (path, *path.parents) if folder.exists())
    except (RuntimeError, OSError) as exc:  # `~user/` of no such user; a name too long
        raise ParamsError(f"{source}:tracking.tensorboard: cannot make the folder {configured} "
                          f"({getattr(exc, 'strerror', None) or exc})") from None
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        shown = configured if existing == path else existing
        raise ParamsError(f"{source}:tracking.tensorboard: cannot make the folder {configured}: {shown} is "
                          f"{'a file' if not existing.is_dir() else 'a folder this user cannot write in'}")
    return path


def run_folder(root: Path, experiment: str, kind: str = "", started: float | None = None) -> Path:
    """A new folder for one run of `experiment` under the TensorBoard folder `root` (a sweep's: `kind` ``tune``, a
    nested sweep's ``nested``, before the time), named by the UTC time it `started` (a `time.time()` value; now by
    default) and made now: a later one of the same second (another process's, say) gets ``-2``, ``-3``... after the
    time, never the same folder.

    Examples
    --------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> [run_folder(root, "iris_mlp", started=0.0).name for _ in range(2)]
    ['19700101-000000', '19700101-000000-2']
    >>> run_folder(root, "iris_mlp", kind="tune", started=0.0).relative_to(root).as_posix()
    'iris_mlp/tune-19700101-000000'
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if started is None else started))
    base = root / experiment / (f"{kind}-{stamp}" if kind else stamp)
    base.parent.mkdir(parents=True, exist_ok=True)
    folder, count = base, 1
    while True:
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            count += 1
            folder = base.with_name(f"{base.name}-{count}")


def scalar(name: str) -> tuple[str, str]:
    """The part (``train`` or ``validation``) and tag a history's `name` is logged under, as Keras' TensorBoard
    callback logs it.

    Examples
    --------
    >>> scalar("loss"), scalar("val_accuracy"), scalar("learning_rate")
    (('train', 'epoch_loss'), ('validation', 'epoch_accuracy'), ('train', 'epoch_learning_rate'))
    """
    return ("validation", f"epoch_{name[4:]}") if name.startswith("val_") else ("train", f"epoch_{name}")


class FoldEvents:
    """The event files of one history's folds under `directory`: ``<fold>/train`` and ``<fold>/validation``, `folds`
    naming each fold's folder by index and `names` the history's values in order (see the module's doc). A fold's
    files are made as it logs its first value; what is added reaches the disk at :meth:`flush` (the history's
    own flush, about once a second) and :meth:`close`."""

    def __init__(self, directory: Path, folds: Sequence[str], names: Sequence[str]) -> None:
        self.directory, self.folds = Path(directory), list(folds)
        for fold in self.folds:  # a retried attempt's folds start anew, as its history does
            shutil.rmtree(self.directory / fold, ignore_errors=True)
        self.scalars = [scalar(name) for name in names]
        self.writers: dict[tuple[int, str], RecordWriter] = {}

    def add(self, fold: int, epoch: int, values: Sequence[float | None]) -> None:
        """Fold `fold`'s values at `epoch` (from 1), in `names`' order: one event a part holding its scalars; a
        missing or non-finite value is left out, as the history leaves it out of its step files."""
        parts: dict[str, dict[str, float]] = {}
        for (part, tag), value in zip(self.scalars, values):
            if value is not None and math.isfinite(value):
                parts.setdefault(part, {})[tag] = value
        now = time.time()
        for part, scalars in parts.items():
            self._writer(fold, part).write(scalars_record(epoch - 1, scalars, now))

    def _writer(self, fold: int, part: str) -> RecordWriter:
        writer = self.writers.get((fold, part))
        if writer is None:
            writer = self.writers[fold, part] = event_file(self.directory / self.folds[fold] / part)
        return writer

    def flush(self) -> None:
        for writer in self.writers.values():
            writer.flush()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()


def event_file(folder: Path) -> RecordWriter:
    """A new event file in `folder` (made if missing), named as TensorFlow names them
    (``events.out.tfevents.<time>.<host>``), its first record the file's version, as TensorBoard reads them; each
    later record one `Event`'s bytes (``writer.write(event.SerializeToString())``), on disk at ``writer.flush()``."""
    from tensorboardX import RecordWriter
    from tensorboardX.proto.event_pb2 import Event

    folder.mkdir(parents=True, exist_ok=True)
    writer = RecordWriter(str(folder / f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}"))
    writer.write(Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())
    return writer


def scalars_record(step: int, scalars: dict[str, float], wall_time: float) -> bytes:
    """One event file record: an `Event` at `step` holding `scalars` (tag: value)."""
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.proto.summary_pb2 import Summary

    return Event(wall_time=wall_time, step=step, summary=Summary(
        value=[Summary.Value(tag=tag, simple_value=value) for tag, value in scalars.items()])).SerializeToString()


def log_configs(folder: Path, trials: Path, metric: str) -> None:
    """The configs of a sweep that trained all their epochs (their rows in `trials`, the sweep's trials.csv) as
    sessions of TensorBoard's HParams dashboard, each in its folder ``folder/<config id>`` (beside its folds'
    runs): the config's params, and its cross-validated `metric` (the folds' mean) and ``<metric>_std`` at step 0,
    so the dashboard sets the configs side by side and filters them by value. No experiment summary: TensorBoard
    takes the first it finds under its whole folder as every session's columns, and builds them from the sessions
    (all the sweeps' there) where there is none."""
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.summary import hparams

    with open(trials, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["status"] == "ok" and row["score"]]
    now = time.time()
    for row in rows:
        params = {key: hparam(value) for key, value in row_params(row).items()}
        scores = {metric: float(row["score"]), **({f"{metric}_std": float(row["score_std"])} if row["score_std"]
                                                   else {})}
        _, start, end = hparams(params, scores)
        writer = event_file(folder / row["config_id"])
        for summary in (start, end):
            writer.write(Event(wall_time=now, summary=summary).SerializeToString())
        writer.write(scalars_record(0, scores, now))
        writer.close()


def hparam(text: str) -> bool | int | float | str | None:
    """A trials.csv cell (Python's text of the config's value: ``True``, ``1e-05``, ``[8, 4]``, an empty cell for
    none) as an HParams value: a number or a boolean as one (the dashboard filters numbers by range), None (left
    out) for none, anything else (a name, a list of widths) as its text.

    Examples
    --------
    >>> hparam("1e-05"), hparam("10"), hparam("True"), hparam("False"), hparam(""), hparam("adam"), hparam("[8, 4]")
    (1e-05, 10, True, False, None, 'adam', '[8, 4]')
    """
    if text in ("", "True", "False"):
        return None if text == "" else text == "True"
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, int | float) and not isinstance(value, bool) else text
