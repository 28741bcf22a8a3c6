"""The scores DVC diffs, and the record of each run beside them.

An experiment's result and a sweep's best are each one record (a flat dict, as the flows return it), stored as
two files so that `dvc metrics diff` and `dvc exp show` see scores and nothing else:

- ``metrics.json`` (DVC metrics): the scores keyed by the metric's name, ``{"accuracy": {"mean", "std",
  "folds"}}``, for a series the naive last-value forecast's, ``{"baseline": {"rmse": {...}}}``, and for several
  target columns or labels each one's in the same layout, ``{"targets": {"weight": {"rmse": {...},
  "baseline": ...}}}``;
- ``run.json`` (a plain output): what changes from run to run or describes the run rather than scores it: the
  metric's name and direction, fold count, the settings that decided the folds (``fold_settings``) and their
  held-out rows per training row (``test_train_ratio``), by which runs pair fold by fold, wall times, versions
  and device, which folds diverged, and the saved model a continued experiment started from (its folder and
  files' md5);
- for a sweep, ``best.json`` (DVC metrics): the best config's score, ``{"accuracy": {"mean", "std"}}``, and
  ``sweep.json``: its params, the counts of configs, trials and errors, the checkpoint, the wall time of the
  command that finished it (``seconds``; ``resumed`` where that command resumed it) and when the sweep started
  (``started_at``, as ``ray/settings.json`` records it with ``finished_at`` once exported).

Two runs with nothing changed write the same scores (training is seeded), so their `dvc metrics diff` is empty.
The scores file is written last: its presence says the rest is complete. A run removes the previous run's two files
before it writes anything else (:func:`withdraw_experiment`), as DVC removes a stage's outputs before running it, so
a run stopped half way leaves no scores beside its own history, predictions or model. The record file holds the md5
of the scores written with it (``scores_md5``), so a run stopped between writing the two leaves no record that
pairs its facts with an earlier run's scores: it reads as none.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kerasflow.tasks.config.errors import DataError
from kerasflow.tasks.outputs.atomic import write_json

METRICS_FILE = "metrics.json"
RUN_FILE = "run.json"
BEST_FILE = "best.json"
SWEEP_FILE = "sweep.json"
DATASET_FILE = "dataset.json"
"""The data file an experiment's run read and its md5 (what a sweep's stage and the report's pairing follow)."""
NESTED_FILE = "nested.json"
"""Where `kerasflow tune --nested K` writes its estimate, in the sweep's folder (`results/<experiment>/tune/`)."""
SWEEP_STATE = "ray"
"""Where, in the sweep's folder, Ray Tune keeps a sweep's run (what `--resume` reads) and its settings."""
TRIALS_FILE = "trials.csv"
"""A sweep's configs, a row each, best first: each's `param:<key>` values (:data:`PARAM_PREFIX`), scores and state."""
PARAM_PREFIX = "param:"
SWEEP_SETTINGS = "settings.json"
"""Beside a sweep's saved run: when it started, and the experiment and sweep it trains, which a resume must find
unchanged (flows/ray_driver.py)."""

_FOLD_SCORES = ("mean", "std", "folds")


def withdraw_experiment(out_dir: Path) -> None:
    """Remove an earlier run's scores and record from `out_dir` (`metrics.json` first, which DVC reads alone), as
    a new run of the experiment starts to replace its results there: until :func:`write_experiment` writes this
    run's, the experiment reads as not run."""
    for name in (METRICS_FILE, RUN_FILE):
        (out_dir / name).unlink(missing_ok=True)


def write_experiment(out_dir: Path, record: dict[str, Any]) -> None:
    """Store an experiment's record (:meth:`CVResult.summary` and the run's facts) as `run.json` and
    `metrics.json`."""
    scores = _scores(record, record["metric"])
    if "targets" in record:
        scores["targets"] = {target: _scores(values, record["metric"]) for target, values in record["targets"].items()}
    write_json(out_dir / RUN_FILE, {**{k: v for k, v in record.items()
                                       if k not in (*_FOLD_SCORES, "baseline", "targets")},
                                    "scores_md5": scores_md5(scores)})
    write_json(out_dir / METRICS_FILE, scores)


def read_experiment(out_dir: Path) -> dict[str, Any] | None:
    """The record :func:`write_experiment` stored in `out_dir`; None when its scores are not there, or are not the
    ones run.json was written with (a run stopped between writing the two)."""
    scores, run = read_record(out_dir / METRICS_FILE), read_record(out_dir / RUN_FILE)
    if scores is None or run is None or not _paired(run, scores) or run.get("metric") not in scores:
        return None
    run.pop("scores_md5", None)  # a check of the files, not a fact of the run
    metric = run["metric"]
    targets = {target: _record(values, metric) for target, values in scores.get("targets", {}).items()}
    return {**run, **_record(scores, metric), **({"targets": targets} if targets else {})}


def scores_md5(scores: dict[str, Any]) -> str:
    """The md5 of a scores file's content (`metrics.json`, `best.json`) as JSON with sorted keys: the same however the
    file is indented.

    Examples
    --------
    >>> scores_md5({"rmse": {"mean": 1.5, "std": 0.25}}) == scores_md5({"rmse": {"std": 0.25, "mean": 1.5}})
    True
    """
    return hashlib.md5(json.dumps(scores, sort_keys=True, allow_nan=False).encode()).hexdigest()


def _paired(facts: dict[str, Any], scores: dict[str, Any]) -> bool:
    """Whether the record file `facts` was written with the scores file `scores` (one that records no md5, written
    by an older kerasflow, is taken as paired)."""
    return "scores_md5" not in facts or facts["scores_md5"] == scores_md5(scores)


def _scores(record: dict[str, Any], metric: str) -> dict[str, Any]:
    """A record's scores as metrics.json keeps them: `{metric: {mean, std, folds}}`, and `{"baseline": {metric:
    ...}}` where a naive forecast was scored."""
    scores = {metric: {key: record[key] for key in _FOLD_SCORES}}
    if "baseline" in record:
        scores["baseline"] = {metric: record["baseline"]}
    return scores


def _record(scores: dict[str, Any], metric: str) -> dict[str, Any]:
    """:func:`_scores` read back: `mean`, `std`, `folds` and `baseline` (if any) of `metric`."""
    baseline = scores.get("baseline", {}).get(metric)
    return {**scores[metric], **({"baseline": baseline} if baseline is not None else {})}


BEST_SCORES = {"score": "mean", "score_std": "std", "score_low": "low", "score_high": "high"}
"""A sweep record's keys that `best.json` holds (a DVC metrics file), and their names there."""


def write_sweep_best(out_dir: Path, record: dict[str, Any]) -> None:
    """Store a sweep's best (`score`, `score_std`, its 95% interval `score_low`/`score_high` where the configs pair
    fold by fold, and the rest: :func:`export_best`) as `sweep.json` and `best.json`."""
    # The interval only where there is one: `dvc metrics diff` then shows no empty columns for hold-out sweeps.
    scores = {name: record.get(key) for key, name in BEST_SCORES.items()}
    best = {record["metric"]: {name: value for name, value in scores.items()
                                if value is not None or name in ("mean", "std")}}
    write_json(out_dir / SWEEP_FILE, {**{k: v for k, v in record.items() if k not in BEST_SCORES},
                                      "scores_md5": scores_md5(best)})
    write_json(out_dir / BEST_FILE, best)


def sweep_started_at(out_dir: Path) -> str | None:
    """When the sweep saved in `out_dir` (a sweep's folder) started, as its settings record it (UTC, ISO 8601);
    None where none is saved."""
    settings = read_record(out_dir / SWEEP_STATE / SWEEP_SETTINGS)
    return None if settings is None else settings.get("started_at")


def finish_sweep(out_dir: Path) -> None:
    """Record in the settings of the sweep saved in `out_dir` that it finished: its results are exported."""
    path = out_dir / SWEEP_STATE / SWEEP_SETTINGS
    settings = read_record(path)
    if settings is not None:
        write_json(path, {**settings, "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})


def reopen_sweep(out_dir: Path) -> None:
    """Record in the settings of the sweep saved in `out_dir` that it runs again (resumed): until it exports
    anew, its results are not this run's."""
    path = out_dir / SWEEP_STATE / SWEEP_SETTINGS
    settings = read_record(path)
    if settings is not None and "finished_at" in settings:
        write_json(path, {key: value for key, value in settings.items() if key != "finished_at"})


def unfinished_sweep(out_dir: Path) -> str | None:
    """When the sweep saved in `out_dir` started, if it has exported no results (stopped, failed or running, so
    `sweep.json`, if any, holds an earlier sweep's results); None when it finished, or none is saved."""
    settings = read_record(out_dir / SWEEP_STATE / SWEEP_SETTINGS)
    if settings is None or "finished_at" in settings:
        return None
    return settings.get("started_at")


def read_sweep_best(out_dir: Path) -> dict[str, Any] | None:
    """The record :func:`write_sweep_best` stored in `out_dir`; None when its score is not there, or is not the one
    sweep.json was written with (a sweep stopped between writing the two)."""
    scores, sweep = read_record(out_dir / BEST_FILE), read_record(out_dir / SWEEP_FILE)
    # best.json not sweep.json's: a sweep stopped between writing the two.
    if scores is None or sweep is None or not _paired(sweep, scores) or sweep["metric"] not in scores:
        return None
    sweep.pop("scores_md5", None)
    best = scores[sweep["metric"]]
    return {**sweep, **{key: best.get(name) for key, name in BEST_SCORES.items()}}


def read_nested(tune_dir: Path) -> dict[str, Any] | None:
    """The nested cross-validation record `kerasflow tune --nested` wrote in `tune_dir`, if any; None also where the
    sweep finished in `tune_dir` since, whose best the report shows, trained other settings (experiment, space,
    backend, data) than the nested one did: the record estimates another sweep. One written before records kept
    their settings, or beside a sweep that has not finished (whose settings are not those of the best shown), is
    not checked."""
    record, sweep = read_record(tune_dir / NESTED_FILE), read_record(tune_dir / SWEEP_STATE / SWEEP_SETTINGS)
    if record is None or sweep is None or "settings" not in record or "finished_at" not in sweep:
        return record
    same = all(value == sweep[key] for key, value in record["settings"].items() if key in sweep)
    return record if same else None


def check_records(out_dir: Path) -> None:
    """Read every record kerasflow keeps of an experiment in `out_dir` (its scores and run, data, sweep and nested
    estimate), so that one no longer kerasflow's JSON is refused (:func:`read_record`) before a command trains or
    starts a flow: the report each command writes at its end reads them all."""
    read_experiment(out_dir)
    read_record(out_dir / DATASET_FILE)
    read_sweep_best(out_dir / "tune")
    unfinished_sweep(out_dir / "tune")
    read_nested(out_dir / "tune")


def row_params(row: dict[str, Any]) -> dict[str, Any]:
    """A trials.csv row's config, as dotted keys and values.

    Examples
    --------
    >>> row_params({"config_id": "a1", "param:train.optimizer": "adam", "score": 0.9})
    {'train.optimizer': 'adam'}
    """
    return {key.removeprefix(PARAM_PREFIX): value for key, value in row.items() if key.startswith(PARAM_PREFIX)}


def read_record(path: Path) -> dict[str, Any] | None:
    """The JSON mapping a command wrote in `path`, None where there is no file; one no longer a JSON mapping (a
    merge's conflict markers, an edit) is refused in one line naming it (:class:`DataError`)."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and json's errors are ValueErrors
        raise DataError(f"{path}: cannot be read as the JSON kerasflow wrote ({exc}); restore it (`dvc checkout`, "
                        f"git) or rerun the command that writes it") from None
    if not isinstance(record, dict):
        raise DataError(f"{path}: expected the JSON mapping kerasflow wrote, found a {type(record).__name__}; "
                        f"restore it (`dvc checkout`, git) or rerun the command that writes it")
    return record
