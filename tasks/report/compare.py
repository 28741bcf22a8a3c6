"""`kerasflow compare A B`: two experiments' per-fold scores, paired fold by fold, and the corrected t-test of their
difference (:mod:`kerasflow.tasks.training.statistics`).

Pairing is only honest when both were scored on the very same folds: the same data file (by the md5 each run
recorded in its dataset.json), the same rows (a series' windows), and the same split settings and seed. Anything
else is refused, naming what differs. Reads results and data only: no Keras.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kerasflow.tasks.config.errors import DataError, ParamsError
from kerasflow.tasks.config.schema import CLASS_TASKS, ExperimentSpec, experiment_key
from kerasflow.tasks.data.split import SAME_FOLDS, make_splits, purged
from kerasflow.tasks.data.tokens import load_rows
from kerasflow.tasks.data.window import window_table
from kerasflow.tasks.outputs.metrics import read_experiment
from kerasflow.tasks.training.statistics import (
    LOW_POWER_FOLDS,
    Interval,
    corrected_t,
    difference_range,
    score_range,
    split_ratio,
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


def compare(first: tuple[str, ExperimentSpec], second: tuple[str, ExperimentSpec], results_dir: Path,
            metric: str | None = None) -> Comparison:
    """Pair the two experiments' per-fold scores (from `results_dir/<name>/metrics.json`) and test their
    difference; refuse, naming what differs, unless they were scored on the same folds."""
    (name_a, spec_a), (name_b, spec_b) = first, second
    _check_same_folds(name_a, spec_a, name_b, spec_b)
    records = [_record(name, results_dir) for name in (name_a, name_b)]
    metric = metric or records[0]["metric"]
    for name, record in zip((name_a, name_b), records):
        if record["metric"] != metric:
            raise ParamsError(f"{results_dir / name / 'metrics.json'}: holds {record['metric']!r} per fold, not "
                              f"{metric!r}; compare by the metric both experiments were scored on (evaluate.metric)")
    md5 = [data_md5(results_dir / name) for name in (name_a, name_b)]
    if md5[0] != md5[1]:
        raise DataError(f"{results_dir / name_a / 'dataset.json'} and {results_dir / name_b / 'dataset.json'}: the "
                        f"two runs read different data (md5 {md5[0]} vs {md5[1]}): rerun the older one")
    if len(records[0]["folds"]) < 2:
        raise ParamsError(f"{spec_a.evaluate.key('method')}: {spec_a.evaluate.method!r} gives one score per "
                          f"experiment: there is no spread to test a difference against; use method 'kfold'")
    return pair((name_a, name_b), records, test_train_ratio(spec_a))


def pair(names: tuple[str, str], records: list[dict[str, Any]], ratio: float) -> Comparison:
    """The comparison of two runs' records (`metrics.json` with `run.json`) scored on the same folds, whose
    held-out part is `ratio` times their training part."""
    scores = [np.asarray(record["folds"], dtype=np.float64) for record in records]
    if len(scores[0]) != len(scores[1]):
        raise DataError(f"{names[0]} has {len(scores[0])} fold scores and {names[1]} {len(scores[1])}: not the "
                        f"same folds")
    metric = records[0]["metric"]
    means = (corrected_t(scores[0], ratio, within=score_range(metric)),
             corrected_t(scores[1], ratio, within=score_range(metric)))
    return Comparison(names=names, metric=metric, higher_is_better=bool(records[0]["higher_is_better"]), means=means,
                      difference=corrected_t(scores[1] - scores[0], ratio, within=difference_range(metric)),
                      test_train_ratio=ratio)


def fold_key(spec: ExperimentSpec) -> str:
    """What decides an experiment's rows and folds (:data:`SAME_FOLDS`): experiments with equal keys (and data md5)
    pair fold by fold."""
    return json.dumps([_value(spec, key) for key in SAME_FOLDS])


def test_train_ratio(spec: ExperimentSpec) -> float:
    """Held-out rows per training row of the experiment's folds, on average: the variance correction's
    n_test / n_train."""
    table = load_rows(spec)
    if spec.preprocess.lookback is not None:
        table = window_table(table, spec.preprocess)
    y = pd.factorize(table.y)[0] if spec.dataset.task in CLASS_TASKS else table.y.to_numpy()
    return split_ratio([purged(split, spec.preprocess.steps_out) for split in make_splits(spec.evaluate, y)])


def _check_same_folds(name_a: str, spec_a: ExperimentSpec, name_b: str, spec_b: ExperimentSpec) -> None:
    differ = [key for key in SAME_FOLDS if _value(spec_a, key) != _value(spec_b, key)]
    if differ:
        shown = "; ".join(f"{experiment_key(spec_a, name_a, key)} is {_value(spec_a, key)!r}, "
                          f"{experiment_key(spec_b, name_b, key)} {_value(spec_b, key)!r}" for key in differ)
        raise ParamsError(f"{name_a} and {name_b} are not scored on the same folds, so their fold scores do not "
                          f"pair: {shown}")
    starts = spec_a.train.init_from, spec_b.train.init_from
    if starts[0] != starts[1]:  # a saved model was refitted on every row: its folds' held-out rows are not new
        shown = " and ".join(f"{name} from {start}" if start else f"{name} from scratch"
                             for name, start in zip((name_a, name_b), starts))
        raise ParamsError(f"{name_a} and {name_b} start their folds from different models ({shown}; "
                          f"train.init_from): a saved model has trained on every held-out row, so their fold scores "
                          f"do not pair")


def data_md5(out_dir: Path) -> str:
    """The md5 of the data a run read, as its dataset.json records it."""
    path = out_dir / "dataset.json"
    if not path.is_file():
        raise DataError(f"{path}: not found; run the experiment first (kerasflow run {out_dir.name})")
    return json.loads(path.read_text())["md5"]


def _record(name: str, results_dir: Path) -> dict[str, Any]:
    record = read_experiment(results_dir / name)
    if record is None:
        raise DataError(f"{results_dir / name / 'metrics.json'}: not found; run the experiment first "
                        f"(kerasflow run {name})")
    if any(score is None for score in record["folds"]):
        raise DataError(f"{results_dir / name / 'metrics.json'}: folds {record.get('diverged', [])} diverged (null "
                        f"scores): there is nothing to compare them by")
    return record


def _value(spec: ExperimentSpec, dotted: str) -> object:
    """The setting `dotted` (`evaluate.seed`) of `spec`; a path as the text params.yaml gives."""
    section, key = dotted.split(".")
    value = getattr(getattr(spec, section), key)
    return str(value) if isinstance(value, Path) else value
