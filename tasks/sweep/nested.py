"""Nested cross-validation of a sweep: an honest estimate of the tuned model.

The best of N configs scored on the same folds is optimistic: it is the maximum of N noisy means. Nested
cross-validation (Varma & Simon 2006; Cawley & Talbot 2010) keeps the choice of config inside the estimate: in
each of K outer folds the whole sweep runs on the outer training rows only (its own inner folds, as configured),
its best config is retrained on those rows as the sweep's refit would be, and scored once on the outer held-out
rows, which neither the sweep nor the refit saw. The K outer scores estimate what tuning, then training, gives
on new rows; beside them, the inner best scores show how much the sweep's own best flattered itself.

Nothing here imports Ray: `flows/sweep.py` runs each outer fold's sweep and hands this module its rows.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kerasflow.tasks.config.errors import DataError, ParamsError, SweepError
from kerasflow.tasks.config.schema import CLASS_TASKS, EvaluateSpec, ExperimentSpec, experiment_key
from kerasflow.tasks.config.search import SearchSpec
from kerasflow.tasks.data.split import Split, make_splits, small_groups
from kerasflow.tasks.data.table import Table
from kerasflow.tasks.data.tokens import load_rows
from kerasflow.tasks.outputs.metrics import row_params
from kerasflow.tasks.sweep.export import finished
from kerasflow.tasks.training.evaluate import Encoded, encode_labels, refit
from kerasflow.tasks.training.scoring import score
from kerasflow.tasks.training.statistics import corrected_t, score_range, split_ratio
from kerasflow.tasks.training.train import encode_target, predict


def check_nested(name: str, spec: ExperimentSpec, outer_folds: int) -> None:
    """Refuse, in one line, a nested sweep that cannot run: fewer than 2 outer folds, or rows that are not
    independent (a series' windows, a text's tokens), which outer folds would leak across."""
    if outer_folds < 2:
        raise ParamsError(f"--nested {outer_folds}: expected at least 2 outer folds")
    if spec.preprocess.lookback is not None or spec.dataset.task == "next_token":
        series = spec.preprocess.lookback is not None
        key = experiment_key(spec, name, "preprocess.lookback" if series else "dataset.task")
        what = "a series' windows" if series else "a text's next tokens"
        raise ParamsError(f"{key}: --nested needs independent rows, and {what} overlap their neighbours: outer "
                          f"folds would score the tuned model on rows it trained on")


def check_outer_folds(name: str, spec: ExperimentSpec, outer_folds: int, inner: ExperimentSpec | None) -> None:
    """Refuse, in one line and before Ray or Prefect start, outer folds the data cannot give (:func:`outer_splits`):
    more than its rows, stratified with a class (or label) on fewer rows, or one whose training rows cannot give the
    inner folds of `inner` (the experiment as its sweep scores it): a time-ordered first block too short, a class
    left with fewer rows than stratified inner folds. `inner` None (a sweep whose configs split their rows each their
    own way, sweeping an `evaluate` key) leaves the inner folds to each trial."""
    table = load_rows(spec)
    labels = encode_labels(spec, table, name)
    splits = outer_splits(spec, labels, outer_folds)
    if inner is None:
        return
    for index, split in enumerate(splits):
        try:
            make_splits(inner.evaluate, labels.codes[split.train_index], labels.classes)
        except DataError as exc:
            rows = len(split.train_index)
            which = (f"the first time-ordered outer fold's sweep has its first {rows} rows"
                     if spec.evaluate.method == "timeseries" else f"outer fold {index}'s sweep has {rows} rows")
            raise ParamsError(f"--nested {outer_folds}: {which}, too few for its inner folds ({exc}); use fewer "
                              f"outer folds") from None


def outer_splits(spec: ExperimentSpec, labels: Encoded, outer_folds: int) -> list[Split]:
    """The K outer folds: shuffled k-fold from the experiment's `evaluate.seed`, stratified by a classification's
    classes, as GridSearchCV's folds are, or by a multilabel task's labels where its `evaluate.stratify` asks. An
    experiment evaluated in time order (`evaluate.method: timeseries`) keeps it: expanding-window outer folds, each
    sweep on the rows before its held-out block (scikit-learn's TimeSeriesSplit, as its inner folds)."""
    rows = len(labels.codes)
    if spec.evaluate.method == "timeseries":
        if outer_folds > rows - 1:
            raise ParamsError(f"--nested {outer_folds}: expected at most {rows - 1} time-ordered outer folds on "
                              f"{spec.dataset.file}'s {rows} rows (a first training block comes before the first "
                              f"held-out one)")
        return make_splits(EvaluateSpec(method="timeseries", n_splits=outer_folds, shuffle=False), labels.codes)
    if outer_folds > rows:
        raise ParamsError(f"--nested {outer_folds}: expected at most {rows} outer folds, one a row of "
                          f"{spec.dataset.file}'s {rows}")
    stratify = spec.dataset.task in CLASS_TASKS or (spec.dataset.task == "multilabel" and spec.evaluate.stratify)
    if stratify:
        noun, small = small_groups(labels.codes, outer_folds, labels.classes)
        if small:
            fewest = min(small.values())
            allowed = [f"--nested up to {fewest}"] if fewest >= 2 else []
            allowed += ["evaluate.stratify: false"] if noun == "label" else []
            raise ParamsError(f"--nested {outer_folds}: stratified outer folds need at least {outer_folds} rows of "
                              f"every {noun}; too few in {small} ({spec.dataset.file}). Allowed: "
                              f"{', or '.join(allowed) or f'at least 2 rows of every {noun}'}")
    outer = EvaluateSpec(method="kfold", n_splits=outer_folds, shuffle=True, seed=spec.evaluate.seed,
                         stratify=stratify)
    return make_splits(outer, labels.codes, labels.classes)


def rows_of(table: Table, labels: Encoded, index: np.ndarray) -> tuple[Table, Encoded]:
    """The table and its encoded target restricted to rows `index`, renumbered from 0."""
    return (Table(X=table.X.iloc[index].reset_index(drop=True), y=table.y.iloc[index].reset_index(drop=True),
                  source=table.source, header=table.header),
            Encoded(labels.codes[index], labels.codec))


def outer_score(spec: ExperimentSpec, table: Table, labels: Encoded, split: Split) -> float | None:
    """Train `spec` on the split's training rows as a refit would (its preprocessing fitted there, its
    validation split taken from them) and score it once on the held-out rows; None where the training diverged
    (its loss became NaN or infinite: its weights are no model, though NaN outputs would still read as classes) or
    the score is not finite."""
    final = refit(spec, *rows_of(table, labels, split.train_index))
    if final.diverged_at is not None:
        return None
    held_out, held_out_labels = rows_of(table, labels, split.test_index)
    outputs = predict(final.model, final.preprocessor.transform(held_out.X))
    value = score(spec, encode_target(spec, held_out_labels.codes, labels.n_classes), outputs)
    return value if math.isfinite(value) else None


def outer_fold(name: str, index: int, spec: ExperimentSpec, rows: list[dict[str, Any]], table: Table, labels: Encoded,
               split: Split) -> dict[str, Any]:
    """Outer fold `index`'s record: the config its sweep chose (`rows`, trials.csv's, best first), the inner best
    score, and that config's score on the outer held-out rows."""
    if not rows or not finished(rows[0]):
        raise SweepError(f"sweeps.{name}: outer fold {index}: no config of its sweep finished with a finite score "
                         f"(the fold's trials.csv gives each config's status)")
    params = row_params(rows[0])
    outer = outer_score(spec.with_overrides(params), table, labels, split)
    return {"outer_fold": index, "config_id": rows[0]["config_id"], "params": params,
            "inner_score": rows[0]["score"], "inner_score_std": rows[0]["score_std"],
            "outer_score": outer,
            "n_train": len(split.train_index), "n_test": len(split.test_index)}


def summarize(name: str, spec: ExperimentSpec, sweep: SearchSpec, folds: list[dict[str, Any]], splits: list[Split],
              seconds: float | None = None, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """`nested.json`: every outer fold's record, and the tuned model's estimate, the outer scores' mean with its
    95% interval (the corrected resampled t-interval: the outer training sets overlap), beside the inner best
    scores' mean. `optimism` is how far the inner best scores lie on the flattering side of the outer ones.
    `settings` (what the sweep trains, as a sweep's settings.json keeps them) tell the report which sweep the
    record estimates (:func:`kerasflow.tasks.outputs.metrics.read_nested`)."""
    outer = [fold["outer_score"] for fold in folds]
    inner = float(np.mean([fold["inner_score"] for fold in folds]))
    estimate: dict[str, Any] = {"mean": None, "std": None, "low": None, "high": None}
    if all(value is not None for value in outer):
        interval = corrected_t(outer, split_ratio(splits), within=score_range(spec.metric))
        estimate = {"mean": interval.mean, "std": float(np.std(outer)), "low": interval.low, "high": interval.high}
    optimism = None if estimate["mean"] is None else \
        (inner - estimate["mean"]) * (1 if spec.higher_is_better else -1)
    return {"experiment": name, "metric": spec.metric, "mode": "max" if spec.higher_is_better else "min",
            "outer_folds": len(folds), "inner_scoring": sweep.scoring, "outer": estimate, "inner_best_mean": inner,
            "optimism": optimism, "configs_chosen": len({fold["config_id"] for fold in folds}), "folds": folds,
            "seconds": seconds, **({"settings": settings} if settings is not None else {})}
