"""Divergence is a result, stated: a fold whose loss becomes NaN or infinite stops, has no score, and says so.

Issue 25, item 3: before, such a run exited 0 with "mse nan ± nan" and wrote `NaN` into metrics.json, which
strict JSON parsers refuse.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml
from helpers import run_cli, sweep_params, tiny_params

from kerasflow.flows.pipeline import load_data
from kerasflow.tasks.config.errors import SweepError
from kerasflow.tasks.config.schema import parse_params
from kerasflow.tasks.data.table import load_table
from kerasflow.tasks.outputs.atomic import write_json
from kerasflow.tasks.outputs.metrics import read_experiment, read_sweep_best
from kerasflow.tasks.sweep.export import export_best, trial_rows
from kerasflow.tasks.sweep.nested import outer_score, outer_splits, summarize
from kerasflow.tasks.training.evaluate import encode_labels


def _strict(path: Path) -> dict:
    """`path`'s JSON, refusing NaN and infinities as a strict parser does."""
    def refuse(constant: str) -> None:
        raise ValueError(f"{path}: {constant} is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.mark.slow
def test_a_diverging_run_exits_3_naming_the_folds_and_writes_strict_json(project, prefect_server):
    raw = tiny_params()
    del raw["experiments"]["iris"]
    diverging = raw["experiments"]["diabetes"]
    diverging["train"].update(optimizer="sgd", learning_rate=1e6)
    # The same experiment trained fold by fold (Keras' loop stops at once) and stacked (each slot on its own).
    raw["experiments"]["diabetes_each"] = json.loads(json.dumps(diverging))
    raw["experiments"]["diabetes_each"]["evaluate"]["stack_folds"] = False
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    earlier = project / "results/diabetes/model"  # an earlier run's model, which this run's refit does not replace
    earlier.mkdir(parents=True)
    (earlier / "model.keras").write_text("an earlier run's")

    result = run_cli(["run", "--report", "reports/summary.md"], cwd=project, env={"PREFECT_API_URL": prefect_server})

    assert result.returncode == 3, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "Invalid loss" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.startswith("kerasflow: ")]
    assert [line.split(":")[2].strip() for line in lines] == ["diabetes", "diabetes_each"]
    for line in lines:
        assert line.startswith("kerasflow: diverged: ")
        assert "the loss became NaN or infinite in fold 0 at epoch 1, fold 1 at epoch 1" in line
    for name in ("diabetes", "diabetes_each"):
        out = project / "results" / name
        _strict(out / "metrics.json"), _strict(out / "run.json")
        metrics = read_experiment(out)
        assert metrics["mean"] is None and metrics["std"] is None and metrics["folds"] == [None, None]
        assert metrics["diverged"] == [0, 1] and metrics["diverged_at_epoch"] == [1, 1]
        assert metrics["refit_diverged_at_epoch"] >= 1 and not (out / "model").exists()
        _strict(out / "history/plots/custom/folds.json")
        predictions = pd.read_csv(out / "predictions.csv", keep_default_na=False)
        assert len(predictions) > 0 and set(predictions["predicted"]) == {""}  # no NaN output read as a value
        assert all(value != "" for value in predictions["true"])
    assert "diverged in fold(s) [0, 1]" in (project / "reports/summary.md").read_text()


def test_json_outputs_refuse_nan_rather_than_write_invalid_json(tmp_path):
    with pytest.raises(ValueError):
        write_json(tmp_path / "metrics.json", {"mean": math.nan})
    assert not (tmp_path / "metrics.json").exists()


def test_a_diverged_config_is_marked_and_never_ranked_best():
    """trial_rows reads Ray Tune's results; a config whose folds diverged reports a NaN score."""
    results = [SimpleNamespace(config={"configs": [{"train.learning_rate": 1e6}, {"train.learning_rate": 0.01}]},
                               error=None, metrics={"scores": [math.nan, 0.8], "score_stds": [math.nan, 0.05],
                                                    "epoch": 5, "trial_id": "a"}),
               SimpleNamespace(config={"train.learning_rate": 0.1}, error=None,
                               metrics={"scores": [0.7], "score_stds": [0.1], "epoch": 5, "trial_id": "b"})]
    params = parse_params(sweep_params(epochs=5))
    rows = trial_rows(results, params.experiments["cancer"], params.sweeps["cancer"])
    assert [(r["param:train.learning_rate"], r["score"], r["status"]) for r in rows] == [
        (0.01, 0.8, "ok"), (0.1, 0.7, "ok"), (1e6, None, "diverged")]


def test_a_config_tried_twice_is_one_row_at_its_best_ranked_trial():
    """Optuna may propose a config again: its trials train it alike, and trials.csv lists it once."""
    results = [SimpleNamespace(config={"train.learning_rate": lr}, error=error, metrics=metrics)
               for lr, error, metrics in [
                   (0.01, "a worker died", {"trial_id": "a"}),
                   (0.1, None, {"scores": [0.7], "score_stds": [0.1], "epoch": 5, "trial_id": "b"}),
                   (0.01, None, {"scores": [0.8], "score_stds": [0.05], "epoch": 5, "trial_id": "c"})]]
    params = parse_params(sweep_params(epochs=5))
    rows = trial_rows(results, params.experiments["cancer"], params.sweeps["cancer"])
    assert [(r["param:train.learning_rate"], r["trial_id"], r["status"]) for r in rows] == [
        (0.01, "c", "ok"), (0.1, "b", "ok")]


def test_configs_tied_on_score_and_spread_rank_in_the_searchs_order_whatever_order_results_come_in():
    """Two configs with the same scores (batch sizes that split the rows alike): the first in the search's order,
    as Ray Tune numbered its trials, ranks first, however the results come back (a resumed sweep's come back in
    another order), so best.json and the refitted model do not change with it."""
    def result(trial_id: str, batch_size: int) -> SimpleNamespace:
        return SimpleNamespace(config={"train.batch_size": batch_size}, error=None,
                               metrics={"scores": [0.9], "score_stds": [0.02], "epoch": 5, "trial_id": trial_id})

    params = parse_params(sweep_params(epochs=5))
    for results in ([result("ab_00000", 10), result("ab_00001", 20)], [result("ab_00001", 20), result("ab_00000", 10)]):
        rows = trial_rows(results, params.experiments["cancer"], params.sweeps["cancer"])
        assert [r["param:train.batch_size"] for r in rows] == [10, 20]


@pytest.mark.slow
def test_a_sweep_whose_every_config_diverges_exits_3_and_says_so(project, prefect_server, ray_server):
    """On a Ray kept running: the configs diverge in its warm trainers."""
    raw = tiny_params()
    del raw["experiments"]["iris"]
    raw["experiments"]["diabetes"]["train"].update(optimizer="sgd", epochs=2)
    raw["sweeps"] = {"diabetes": {"space": {"train": {"learning_rate": {"grid": [1e6, 1e7]}}}, "cpu": 1}}
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    earlier = project / "results/diabetes/tune/best_model"  # an earlier sweep's best: not this one's
    earlier.mkdir(parents=True)
    (earlier / "model.keras").write_text("an earlier sweep's")

    result = run_cli(["tune", "diabetes"], cwd=project, env={"PREFECT_API_URL": prefect_server, **ray_server})

    assert result.returncode == 3, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("kerasflow: ")] == [
        "kerasflow: diverged: sweeps.diabetes: the loss became NaN or infinite in every one of its 2 configs; "
        "results/diabetes/tune/trials.csv lists them and no model is saved (lower train.learning_rate, or scale "
        "the data with preprocess.scale)"]
    out = project / "results/diabetes/tune"
    _strict(out / "best.json"), _strict(out / "sweep.json")
    best = read_sweep_best(out)
    assert (best["diverged"], best["score"], best["params"], best["n_diverged"]) == (True, None, None, 2)
    assert not (out / "best_model").exists()
    assert (out / "trials.csv").read_text().count(",diverged") == 2
    from kerasflow.tasks.config.schema import load_params
    from kerasflow.tasks.report.collect import collect
    from kerasflow.tasks.report.html import render_html
    from kerasflow.tasks.report.markdown import render_markdown

    report = collect(project / "results", load_params(project / "params.yaml").experiments)
    assert "accuracy none: every config diverged (2)" not in render_markdown(report)  # the metric is mse
    assert "mse none: every config diverged (2)" in render_markdown(report)
    page = render_html(report)
    assert "every config diverged (2)" in page and " best\"" not in page  # no diverged row highlighted as best


def _diabetes_sweep(project: Path, monkeypatch: pytest.MonkeyPatch, learning_rate: float) -> tuple:
    """The diabetes MLP (SGD, 2 epochs) and a one-config sweep of `learning_rate`, with its data read."""
    raw = tiny_params()
    raw["experiments"]["diabetes"]["train"].update(optimizer="sgd", epochs=2)
    raw["sweeps"] = {"diabetes": {"space": {"train": {"learning_rate": {"grid": [learning_rate]}}}}}
    params = parse_params(raw)
    spec, sweep = params.experiments["diabetes"], params.sweeps["diabetes"]
    monkeypatch.chdir(project)
    return spec, sweep, *load_data.fn("diabetes", spec)


def test_a_sweeps_diverging_refit_saves_no_model_and_says_so(project, monkeypatch):
    """The best config's folds finished (as Ray Tune's results say) but its refit on all rows diverges: sweep.json
    records the epoch and no model is written; an earlier sweep's is removed."""
    spec, sweep, table, labels = _diabetes_sweep(project, monkeypatch, 1e6)
    grid = [SimpleNamespace(config={"train.learning_rate": 1e6}, error=None, best_checkpoints=[],
                            metrics={"scores": [3000.0], "score_stds": [10.0], "fold_scores": [[2990.0, 3010.0]],
                                     "epoch": 2, "trial_id": "a"})]
    out = project / "results/diabetes/tune"
    (out / "best_model").mkdir(parents=True)

    best = export_best("diabetes", spec, sweep, grid, table, labels, out)

    assert best["refit_diverged_at"] >= 1 and best["score"] == 3000.0 and not best["diverged"]
    assert _strict(out / "sweep.json")["refit_diverged_at"] == best["refit_diverged_at"]
    assert not (out / "best_model").exists()


def test_a_sweep_whose_trials_ended_without_a_score_is_refused_not_exported(project, monkeypatch):
    """A trial that ended without reporting a score has status ok and no score: no config to pick as the best."""
    spec, sweep, table, labels = _diabetes_sweep(project, monkeypatch, 0.01)
    grid = [SimpleNamespace(config={"train.learning_rate": 0.01}, error=None, best_checkpoints=[],
                            metrics={"trial_id": "a"})]
    out = project / "results/diabetes/tune"
    with pytest.raises(SweepError, match=r"^sweeps\.diabetes: no config finished with a finite score \(1 configs"):
        export_best("diabetes", spec, sweep, grid, table, labels, out)
    assert not (out / "sweep.json").exists() and not (out / "best_model").exists()


def test_a_nested_outer_folds_diverged_training_gives_no_estimate(project):
    """A classifier whose loss became NaN still "predicts" (NaN outputs read as class 0): `--nested`'s outer score
    of a diverged training is none, and so is the tuned model's estimate, not a majority-class accuracy."""
    raw = tiny_params()
    raw["experiments"]["iris"]["train"].update(optimizer="sgd", learning_rate=1e6)
    params = parse_params(raw)
    spec = params.experiments["iris"]
    table = load_table(spec.dataset, root=project)
    labels = encode_labels(spec, table)
    splits = outer_splits(spec, labels, 2)
    scores = [outer_score(spec, table, labels, split) for split in splits]
    assert scores == [None, None]
    folds = [{"outer_fold": i, "config_id": "c", "inner_score": 0.5, "outer_score": value}
             for i, value in enumerate(scores)]
    summary = summarize("iris", spec, SimpleNamespace(scoring="kfold"), folds, splits)
    assert summary["outer"]["mean"] is None and summary["optimism"] is None
