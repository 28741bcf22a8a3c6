"""`kerasflow compare A B`: two experiments' per-fold scores, paired fold by fold, and the corrected t-test of their
difference (:mod:`kerasflow.tasks.training.statistics`).

Pairing is only honest when both were scored on the very same folds: the same data file (by the md5 each run
recorded in its dataset.json), the same rows (a series' windows), and the same split settings and seed, as each
run recorded them in its run.json (params.yaml may have changed since). Anything else is refused, naming what
differs. Reads results only: no Keras, no data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kerasflow.tasks.config.errors import DataError, ParamsError
from kerasflow.tasks.data.split import SAME_FOLDS, deciding_settings
from kerasflow.tasks.outputs.metrics import DATASET_FILE, METRICS_FILE, RUN_FILE, read_experiment, read_record
from kerasflow.tasks.training.statistics import (
    LOW_POWER_FOLDS,
    Interval,
    corrected_t,
    difference_range,
    score_range,
)


@dataclass(frozen=True)
class Comparison:
    """Experiment `names[1]` against `names[0]` on the same folds: each one's mean with its interval, and the
    difference (second minus first) with its interval and p-value."""

    names: tuple[str, str]
    metric: str
    higher_is_better: bool
    means: tuple[Interval, Interval]
    difference: Interval
    test_train_ratio: float

    @property
    def low_power(self) -> bool:
        return self.difference.folds < LOW_POWER_FOLDS

    @property
    def verdict(self) -> str:
        """One sentence: which is better at 5%, or that the folds cannot tell them apart."""
        first, second = self.names
        if self.difference.p >= 0.05:
            return f"no difference shown at 5%: the folds cannot tell {first} and {second} apart"
        better = second if (self.difference.mean > 0) == self.higher_is_better else first
        return f"{better} is better at 5% ({self.metric} {'higher' if self.higher_is_better else 'lower'})"

    def as_dict(self) -> dict[str, Any]:
        return {"experiments": list(self.names), "metric": self.metric, "higher_is_better": self.higher_is_better,
                "means": {name: interval.as_dict() for name, interval in zip(self.names, self.means)},
                "difference": {"of": f"{self.names[1]} - {self.names[0]}", **self.difference.as_dict()},
                "test_train_ratio": self.test_train_ratio, "low_power": self.low_power, "verdict": self.verdict,
                "test": "corrected resampled t-test (Nadeau & Bengio 2003; repeated k-fold: Bouckaert & Frank 2004)"}

    def table(self) -> str:
        """The comparison as a few lines of plain text."""
        first, second = self.names
        width = max(len(first), len(second), len("difference")) + 2
        lines = [f"{self.metric} ({'higher' if self.higher_is_better else 'lower'} is better), {self.difference.folds} "
                 f"paired folds, 95% intervals corrected for overlapping training sets",
                 f"{'':<{width}}{'mean':>12}  {'95% interval':>27}  {'p':>8}"]
        for name, interval in zip(self.names, self.means):
            lines.append(f"{name:<{width}}{interval.mean:>12.6g}  [{interval.low:>12.6g}, {interval.high:>12.6g}]")
        d = self.difference
        lines.append(f"{'difference':<{width}}{d.mean:>12.6g}  [{d.low:>12.6g}, {d.high:>12.6g}]  {d.p:>8.4g}  "
                     f"({second} - {first})")
        lines.append(self.verdict + (f"; with {d.folds} folds the test has little power" if self.low_power else ""))
        return "\n".join(lines)


def compare(names: tuple[str, str], results_dir: Path, metric: str | None = None) -> Comparison:
    """Pair the two experiments' per-fold scores (from `results_dir/<name>/metrics.json`) and test their
    difference; refuse, naming what differs, unless they were scored on the same folds."""
    if names[0] == names[1]:
        raise ParamsError(f"compare: expected two different experiments, received {names[0]!r} twice")
    records = [_record(name, results_dir) for name in names]
    runs = [results_dir / name / RUN_FILE for name in names]
    _check_same_folds(names, runs, records)
    metric = metric or records[0]["metric"]
    for name, record in zip(names, records):
        if record["metric"] != metric:
            raise ParamsError(f"{results_dir / name / 'metrics.json'}: holds {record['metric']!r} per fold, not "
                              f"{metric!r}; compare by the metric both experiments were scored on (evaluate.metric)")
    md5 = [data_md5(results_dir / name) for name in names]
    if md5[0] != md5[1]:
        raise DataError(f"{results_dir / names[0] / 'dataset.json'} and {results_dir / names[1] / 'dataset.json'}: "
                        f"the two runs read different data (md5 {md5[0]} vs {md5[1]}): rerun the older one")
    if len(records[0]["folds"]) < 2:
        method = records[0]["fold_settings"]["evaluate.method"]
        raise ParamsError(f"{runs[0]}: evaluate.method {method!r} gives one score per experiment: there is no "
                          f"spread to test a difference against; use method 'kfold'")
    return pair(names, records)


def pair(names: tuple[str, str], records: list[dict[str, Any]]) -> Comparison:
    """The comparison of two runs' records (`metrics.json` with `run.json`) scored on the same folds."""
    scores = [np.asarray(record["folds"], dtype=np.float64) for record in records]
    if len(scores[0]) != len(scores[1]):
        raise DataError(f"{names[0]} has {len(scores[0])} fold scores and {names[1]} {len(scores[1])}: not the "
                        f"same folds")
    metric, ratio = records[0]["metric"], records[0]["test_train_ratio"]
    means = (corrected_t(scores[0], ratio, within=score_range(metric)),
             corrected_t(scores[1], ratio, within=score_range(metric)))
    return Comparison(names=names, metric=metric, higher_is_better=bool(records[0]["higher_is_better"]), means=means,
                      difference=corrected_t(scores[1] - scores[0], ratio, within=difference_range(metric)),
                      test_train_ratio=ratio)


def pairing_key(record: dict[str, Any], md5: str) -> str:
    """What decides whether a run pairs with another fold by fold: the settings that decided its folds
    (:func:`~kerasflow.tasks.data.split.deciding_settings`), its metric, the md5 of its data and the saved model
    its folds started from, if any (a continued experiment's, refitted on every row). Runs with equal keys pair."""
    return json.dumps([deciding_settings(record["fold_settings"]), record["metric"], md5, record.get("init_from")],
                      sort_keys=True)


def _check_same_folds(names: tuple[str, str], runs: list[Path], records: list[dict[str, Any]]) -> None:
    settings = [deciding_settings(record["fold_settings"]) for record in records]
    differ = [key for key in SAME_FOLDS if settings[0].get(key) != settings[1].get(key)]
    if differ:
        shown = "; ".join(f"{runs[0]} records {key} {settings[0].get(key)!r}, {runs[1]} {settings[1].get(key)!r}"
                          for key in differ)
        raise ParamsError(f"{names[0]} and {names[1]} were not scored on the same folds, so their fold scores do "
                          f"not pair: {shown}")
    starts = [record.get("init_from") for record in records]
    if starts[0] != starts[1] and all(starts) and starts[0]["path"] == starts[1]["path"]:
        differ = ", ".join(f"{key} {starts[0][key]} vs {starts[1][key]}" for key in ("model_md5", "preprocessing_md5")
                           if starts[0][key] != starts[1][key])
        raise ParamsError(f"{runs[0]} and {runs[1]} record different model files in {starts[0]['path']} "
                          f"({differ}): it was refitted between the two runs, so their folds start from different "
                          f"models; rerun both (kerasflow run {names[0]} {names[1]})")
    if starts[0] != starts[1]:  # a saved model was refitted on every row: its folds' held-out rows are not new
        shown = " and ".join(f"{name} from {start['path']}" if start else f"{name} from scratch"
                             for name, start in zip(names, starts))
        raise ParamsError(f"{names[0]} and {names[1]} start their folds from different models ({shown}; "
                          f"train.init_from): a saved model has trained on every held-out row, so their fold scores "
                          f"do not pair")


def data_md5(out_dir: Path) -> str:
    """The md5 of the data a run read, as its dataset.json records it."""
    path = out_dir / DATASET_FILE
    if (record := read_record(path)) is None:
        raise DataError(f"{path}: not found; run the experiment first (kerasflow run {out_dir.name})")
    return record["md5"]


def _record(name: str, results_dir: Path) -> dict[str, Any]:
    record = read_experiment(results_dir / name)
    if record is None and all((results_dir / name / file).is_file() for file in (METRICS_FILE, RUN_FILE)):
        raise DataError(f"{results_dir / name / METRICS_FILE}: not the scores {results_dir / name / RUN_FILE} was "
                        f"written with (a run stopped between writing the two); run the experiment again "
                        f"(kerasflow run {name})")
    if record is None:
        raise DataError(f"{results_dir / name / METRICS_FILE}: not found; run the experiment first "
                        f"(kerasflow run {name})")
    if "fold_settings" not in record:
        raise DataError(f"{results_dir / name / RUN_FILE}: records no fold settings (an older kerasflow wrote it); "
                        f"run the experiment again (kerasflow run {name})")
    if any(score is None for score in record["folds"]):
        raise DataError(f"{results_dir / name / 'metrics.json'}: folds {record.get('diverged', [])} diverged (null "
                        f"scores): there is nothing to compare them by")
    return record
