"""Ray Tune sweeps on a real Ray kept running (the run's `ray start --head`, its trials in warm trainers): grid,
random, Optuna, the best checkpoint, resources.

Faults (a trial's process killed, the sweep's driver killed and resumed, checkpoint retention) and ASHA stopping a
trial, in the trials' own processes on an embedded Ray, are tested in tests/faults/test_sweep_faults.py; the sweep
fixtures are tests/conftest.py's, its helpers tests/helpers.py's.
"""

from __future__ import annotations

import json
import time
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import assert_same_as_history, read_trials, scalars, sweep_and_export, sweep_params

from kerasflow.flows.ray_driver import check_settings, save_settings
from kerasflow.tasks.config.errors import SweepError
from kerasflow.tasks.config.schema import parse_params
from kerasflow.tasks.data.split import make_splits
from kerasflow.tasks.data.table import file_md5, load_table
from kerasflow.tasks.outputs.atomic import write_json
from kerasflow.tasks.outputs.metrics import SWEEP_SETTINGS, finish_sweep
from kerasflow.tasks.outputs.results import load_model
from kerasflow.tasks.report import tables
from kerasflow.tasks.report.collect import collect
from kerasflow.tasks.report.html import render_html
from kerasflow.tasks.sweep.export import trial_rows, with_ties
from kerasflow.tasks.sweep.groups import config_id, scoring_spec
from kerasflow.tasks.sweep.nested import outer_fold, outer_score, outer_splits, rows_of
from kerasflow.tasks.sweep.trial import history_dirs
from kerasflow.tasks.training.evaluate import (
    cross_validate,
    encode_labels,
    fit_split,
    prepare_folds,
)
from kerasflow.tasks.training.scoring import score
from kerasflow.tasks.training.statistics import corrected_t, split_ratio
from kerasflow.tasks.training.train import predict


def test_grid_of_four_with_kfold_scoring_and_best_holdout_model_reloads(cancer_project, kept_ray):
    out = cancer_project / "tune"
    best = sweep_and_export(sweep_params(), out)
    rows = read_trials(out)
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    assert {(r["param:train.optimizer"], r["param:model.widths"]) for r in rows} == {
        ("adam", "[4]"), ("adam", "[8, 4]"), ("sgd", "[4]"), ("sgd", "[8, 4]")}
    assert [float(r["score"]) for r in rows] == sorted((float(r["score"]) for r in rows), reverse=True)
    assert best["n_configs"] == 4 and best["score"] == pytest.approx(float(rows[0]["score"]))
    # The two optimizers of each shape stack (a slot group each); the shapes are a program each.
    assert best["n_trials"] == 2
    trials = {r["param:model.widths"]: r["trial_id"] for r in rows}
    assert all(r["trial_id"] == trials[r["param:model.widths"]] and r["configs_in_trial"] == "2" for r in rows)
    assert (out / "best_model/model.keras").is_file()

    # Configs that differ only in initializers and optimizers: one Ray trial (one stacked program) per batch size.
    raw = sweep_params()
    raw["sweeps"]["cancer"]["space"] = {"train.optimizer": {"grid": ["adam", "sgd"]},
                                       "model.initializer": {"grid": ["glorot_uniform", "random_normal"]},
                                       "train.batch_size": {"grid": [16, 32]}}
    best = sweep_and_export(raw, cancer_project / "tune_stacked")
    rows = read_trials(cancer_project / "tune_stacked")
    assert best["n_configs"] == 8 and best["n_trials"] == 2
    assert {(r["param:train.optimizer"], r["param:model.initializer"]) for r in rows} == {
        ("adam", "glorot_uniform"), ("adam", "random_normal"), ("sgd", "glorot_uniform"), ("sgd", "random_normal")}
    trials = {r["param:train.batch_size"]: r["trial_id"] for r in rows}
    assert all(r["trial_id"] == trials[r["param:train.batch_size"]] and r["configs_in_trial"] == "4" for r in rows)
    assert best["params"] == {"train.optimizer": rows[0]["param:train.optimizer"],
                              "model.initializer": rows[0]["param:model.initializer"],
                              "train.batch_size": int(rows[0]["param:train.batch_size"])}
    assert best["score"] == pytest.approx(float(rows[0]["score"]))
    # Each config logged its own folds' epochs, in a history folder named by its id (four configs a Ray trial).
    for row in rows:
        history = cancer_project / "tune_stacked/history" / row["config_id"]
        assert sorted(p.name for p in (history / "plots/metrics").iterdir()) == ["fold_00", "fold_01"]
        val_scores = (history / "plots/metrics/fold_01/val_accuracy.tsv").read_text().splitlines()
        assert val_scores[0] == "step\tval_accuracy" and len(val_scores) == 1 + 3
        assert json.loads((history / "metrics.json").read_text())["epoch"] == 3
    # Each config's score is that of its own cross-validation (the plain function, no Ray).
    params = parse_params(raw)
    spec = params.experiments["cancer"].with_overrides(best["params"])
    table = load_table(spec.dataset)
    labels = encode_labels(spec, table)
    alone = cross_validate(scoring_spec(spec, params.sweeps["cancer"]), prepare_folds(spec, table, labels))
    assert np.mean(alone.scores) == pytest.approx(best["score"], abs=1e-6)
    # Every config's fold scores, paired fold by fold with the best's: its interval, the p-value of its difference
    # from the best, and whether the folds tell it from the best.
    folds = {row["config_id"]: json.loads(row["fold_scores"]) for row in rows}
    best_folds = folds[rows[0]["config_id"]]
    assert best_folds == pytest.approx(alone.scores, abs=1e-6)
    ratio = split_ratio(make_splits(scoring_spec(spec, params.sweeps["cancer"]).evaluate, labels.codes))
    interval = corrected_t(best_folds, ratio, within=(0.0, 1.0))
    assert (best["score_low"], best["score_high"]) == pytest.approx((interval.low, interval.high))
    assert rows[0]["p_vs_best"] == "" and rows[0]["tied_with_best"] == "True"
    for row in rows[1:]:
        p = corrected_t(np.subtract(best_folds, folds[row["config_id"]]), ratio).p
        assert float(row["p_vs_best"]) == pytest.approx(p) and row["tied_with_best"] == str(p >= 0.05)
    assert best["tied"] == [row["config_id"] for row in rows if row["tied_with_best"] == "True"]

    # Hold-out scoring: the exported model is the best trial's checkpoint and reproduces its score.
    holdout = sweep_params(epochs=4, scoring="holdout", keep_checkpoints=1, checkpoint_every=2)
    best = sweep_and_export(holdout, cancer_project / "tune_holdout")
    params = parse_params(holdout)
    spec = params.experiments["cancer"].with_overrides(best["params"])
    table = load_table(spec.dataset)
    labels = encode_labels(spec, table)
    (split,) = make_splits(scoring_spec(spec, params.sweeps["cancer"]).evaluate, labels.codes)
    fold, _ = fit_split(spec, table, labels, split)
    model, preprocessor, codec = load_model(cancer_project / "tune_holdout/best_model")
    X_test = preprocessor.transform(table.X.iloc[split.test_index])
    assert score(spec, fold.y_test, predict(model, X_test)) == pytest.approx(best["score"], abs=1e-6)

    # Early stopping ends the trials before their one checkpoint is due: the best config is trained again as its
    # trial was, and the exported score is that model's.
    stopping = sweep_params(epochs=40, scoring="holdout", keep_checkpoints=1)
    stopping["experiments"]["cancer"]["train"].update(early_stopping={"patience": 1}, validation_split=0.2)
    stopping["sweeps"]["cancer"]["space"] = {"model.widths": {"grid": [[4], [8, 4]]}}  # Adam's: both stop early
    best = sweep_and_export(stopping, cancer_project / "tune_stopping")
    (best_row, *_) = read_trials(cancer_project / "tune_stopping")
    assert best["checkpoint"] is None and int(best_row["epochs"]) < 40, best_row
    # The trial's score is its held-out rows', as the exported model's, not that of the validation split it stopped on.
    assert float(best_row["score"]) == pytest.approx(best["score"], abs=1e-6)
    spec = parse_params(stopping).experiments["cancer"].with_overrides(best["params"])
    model, preprocessor, codec = load_model(cancer_project / "tune_stopping/best_model")
    X_test = preprocessor.transform(table.X.iloc[split.test_index])
    assert score(spec, fold.y_test, predict(model, X_test)) == pytest.approx(best["score"], abs=1e-6)


def test_random_search_over_choices_draws_each_config_once(cancer_project, kept_ray):
    """2 x 2 choices, 4 samples: the 4 configs, each once (Ray Tune's own draws repeat some)."""
    raw = sweep_params(epochs=1, algorithm="random", num_samples=4, seed=3)
    raw["sweeps"]["cancer"]["space"] = {"train.optimizer": {"choice": ["adam", "sgd"]},
                                        "model.widths": {"choice": [[4], [8, 4]]}}
    best = sweep_and_export(raw, cancer_project / "choices")
    rows = read_trials(cancer_project / "choices")
    assert len({row["config_id"] for row in rows}) == len(rows) == best["n_configs"] == best["n_trials"] == 4


def test_random_search_draws_num_samples_reproducibly(cancer_project, kept_ray):
    space = {"train.learning_rate": {"loguniform": [0.001, 0.1]}, "train.batch_size": {"choice": [16, 32, 64]}}
    drawn = []
    for run in range(2):
        raw = sweep_params(epochs=1, algorithm="random", num_samples=3, seed=5)
        raw["sweeps"]["cancer"]["space"] = space
        sweep_and_export(raw, cancer_project / f"random{run}")
        drawn.append(sorted((r["param:train.learning_rate"], r["param:train.batch_size"])
                            for r in read_trials(cancer_project / f"random{run}")))
    assert len(drawn[0]) == 3
    assert drawn[0] == drawn[1]
    assert all(0.001 <= float(lr) <= 0.1 for lr, _ in drawn[0])


def test_optuna_search_runs_num_samples_trials_in_range(cancer_project, kept_ray, capfd):
    """TPE over a log-uniform rate and a choice of hidden widths, with no warning about lists as choices and none
    of Optuna's info lines on the terminal."""
    raw = sweep_params(epochs=2, algorithm="optuna", num_samples=3, seed=3)
    raw["sweeps"]["cancer"]["space"] = {"train.learning_rate": {"loguniform": [0.001, 0.1]},
                                        "model.widths": {"choice": [[4], [8, 4]]}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        best = sweep_and_export(raw, cancer_project / "tune")
    assert not [w for w in caught if "categorical distribution" in str(w.message)]
    assert "A new study created" not in capfd.readouterr().err
    rows = read_trials(cancer_project / "tune")
    assert len(rows) == 3 and all(r["status"] == "ok" for r in rows)
    assert all(0.001 <= float(r["param:train.learning_rate"]) <= 0.1 for r in rows)
    assert best["params"]["model.widths"] in ([4], [8, 4])


def test_a_configs_history_is_the_first_trial_to_claim_it(tmp_path):
    """:func:`history_dirs`: the trial that claims a config's folder keeps it, resumed or retried; another trial
    of the same config (Optuna's repeat) logs nothing."""
    configs = [{"train.optimizer": "adam"}, {"train.optimizer": "sgd"}]
    mine = history_dirs(tmp_path, configs, "trial_a")
    assert [path.parent for path in mine] == [tmp_path, tmp_path] and len(set(mine)) == 2
    assert history_dirs(tmp_path, configs, "trial_a") == mine
    assert history_dirs(tmp_path, configs[1:], "trial_b") == []
    assert history_dirs(tmp_path, [{"train.optimizer": "rmsprop"}], "trial_b") == [tmp_path / config_id(
        {"train.optimizer": "rmsprop"})]


def test_infeasible_resources_fail_in_seconds(cancer_project, kept_ray):
    start = time.monotonic()
    with pytest.raises(SweepError, match="asks for cpu=1, gpu=1 but no node of the cluster has that much"):
        sweep_and_export(sweep_params(gpu=1), cancer_project / "tune")
    assert time.monotonic() - start < 30


def test_a_sweep_saved_by_other_code_is_refused_on_resume(cancer_project, kept_ray):
    """Ray's tuner.pkl names the sweep's objects by module and name; one naming what this code lacks (the progress
    callback was `flows.sweep.TrialProgress` before flows/ray_driver.py) gets a clear error, not a traceback."""
    saved = cancer_project / "tune/ray/sweep"
    saved.mkdir(parents=True)
    (saved / "tuner.pkl").write_bytes(b"cflows.sweep\nTrialProgress\n.")  # a pickle of that one name
    with pytest.raises(SweepError, match="saved by another version of kerasflow .* run without --resume"):
        sweep_and_export(sweep_params(), cancer_project / "tune", resume=True)


def test_nested_sweep_scores_each_outer_folds_choice_on_rows_its_sweep_never_saw(cancer_project, kept_ray,
                                                                                 configured_server):
    """`kerasflow tune --nested 2`'s flow: in each outer fold the whole 2-config sweep runs on the outer training
    rows alone, and its best config, retrained there, is scored once on the held-out rows."""
    from kerasflow.flows.sweep import nested_sweep_flow

    raw = sweep_params()
    raw["sweeps"]["cancer"]["space"] = {"train": {"optimizer": {"grid": ["adam", "sgd"]}}}
    params = parse_params(raw)
    spec, sweep = params.experiments["cancer"], params.sweeps["cancer"]
    results = cancer_project / "results"
    summary = nested_sweep_flow("cancer", spec, sweep, 2, results, tensorboard=cancer_project / "tb")
    tune_dir = results / "cancer/tune"
    assert json.loads((tune_dir / "nested.json").read_text()) == summary
    assert not (tune_dir / "best.json").exists() and not (tune_dir / "best_model").exists()  # the sweep's own

    table = load_table(spec.dataset)
    labels = encode_labels(spec, table)
    splits = outer_splits(spec, labels, 2)
    assert sorted(np.concatenate([split.test_index for split in splits]).tolist()) == list(range(table.n_rows))
    assert [fold["outer_fold"] for fold in summary["folds"]] == [0, 1]
    for fold, split in zip(summary["folds"], splits):
        rows = read_trials(tune_dir / f"nested/outer_{fold['outer_fold']}")
        assert len(rows) == 2 and fold["config_id"] == rows[0]["config_id"]
        # Each outer fold's sweep logged to TensorBoard as a sweep is: its configs' folds, and each as a session.
        (events,) = (cancer_project / "tb/cancer").iterdir()
        for row in rows:
            config = events / f"outer_{fold['outer_fold']}" / row["config_id"]
            assert_same_as_history(config, tune_dir / f"nested/outer_{fold['outer_fold']}/history" / row["config_id"],
                                   2, "accuracy")
            assert scalars(config)["accuracy"] == [(0, pytest.approx(float(row["score"])))]
        assert fold["n_train"] == len(split.train_index) and fold["n_test"] == len(split.test_index)
        chosen = spec.with_overrides(fold["params"])
        # Its inner best is the chosen config's cross-validation on the outer training rows only...
        inner_table, inner_labels = rows_of(table, labels, split.train_index)
        inner = cross_validate(scoring_spec(chosen, sweep), prepare_folds(chosen, inner_table, inner_labels))
        assert np.mean(inner.scores) == pytest.approx(fold["inner_score"], abs=1e-6)
        # ...and its outer score that of the config retrained on those rows and scored on the held-out ones.
        assert outer_score(chosen, table, labels, split) == pytest.approx(fold["outer_score"], abs=1e-6)
    outer = [fold["outer_score"] for fold in summary["folds"]]
    interval = corrected_t(outer, split_ratio(splits), within=(0.0, 1.0))  # cut to the accuracies there can be
    assert (summary["outer"]["mean"], summary["outer"]["low"], summary["outer"]["high"]) == pytest.approx(
        (interval.mean, interval.low, interval.high))
    assert summary["inner_best_mean"] == pytest.approx(np.mean([fold["inner_score"] for fold in summary["folds"]]))
    assert summary["optimism"] == pytest.approx(summary["inner_best_mean"] - interval.mean)

    content = collect(results, {"cancer": spec})
    (row,) = tables.nested(content).to_dict("records")
    assert row["tuned model (outer mean)"] == f"{interval.mean:.4f}" and row["outer folds"] == 2
    assert "Nested cross-validation" in render_html(content)
    # A plain sweep of the same settings finished since leaves the record standing; one of another space makes it
    # the estimate of another sweep, which the report no longer shows beside that sweep's best (until it finishes,
    # the best shown is still an earlier sweep's).
    save_settings(tune_dir / "ray", spec, sweep)
    finish_sweep(tune_dir)
    assert collect(results, {"cancer": spec}).experiments[0].nested == summary
    save_settings(tune_dir / "ray", spec, sweep.model_copy(update={"space": {"train.optimizer": {"grid": ["sgd"]}}}))
    assert collect(results, {"cancer": spec}).experiments[0].nested == summary
    finish_sweep(tune_dir)
    assert collect(results, {"cancer": spec}).experiments[0].nested is None
    assert tables.nested(collect(results, {"cancer": spec})).empty


def test_auto_keeps_folds_in_turn_on_a_one_node_ray_without_a_gpu(kept_ray):
    """A Ray started on this machine (reused between commands through RAY_ADDRESS) has one node: with
    `evaluate.parallel: auto`, folds that cannot stack stay in the command's process, where Ray tasks would only
    share its cores; `ray` sends them anyway."""
    import ray

    from kerasflow.flows.ray_folds import spreads

    spec = parse_params(sweep_params()).experiments["cancer"]
    auto, forced = (spec.with_overrides({"evaluate.parallel": value}) for value in ("auto", "ray"))
    assert len([node for node in ray.nodes() if node["Alive"]]) == 1
    assert spreads(auto) == (ray.cluster_resources().get("GPU", 0) > 0) and spreads(forced)


def test_a_failed_trials_last_score_ranks_after_every_finished_config_and_is_not_paired():
    """A trial that failed after 3 of 30 epochs keeps the score it last reported, but never trained its epochs:
    it is not the best, however high that score, nor tied with it."""
    def result(lr: float, folds: list[float], epochs: int, error: Exception | None = None) -> SimpleNamespace:
        return SimpleNamespace(config={"train.learning_rate": lr}, error=error, metrics={
            "scores": [float(np.mean(folds))], "score_stds": [float(np.std(folds))], "fold_scores": [folds],
            "epochs": [epochs], "trial_id": f"t{lr}"})

    params = parse_params(sweep_params(epochs=30))
    rows = trial_rows([result(0.1, [0.96, 0.94], 3, RuntimeError("node lost")), result(0.01, [0.91, 0.89], 30),
                       result(0.001, [0.82, 0.78], 30)], params.experiments["cancer"], params.sweeps["cancer"])
    assert [(row["score"], row["status"]) for row in rows] == [(0.90, "ok"), (0.80, "ok"), (0.95, "error")]
    marked = with_ties(rows, 1.0, "accuracy")
    assert [row["tied_with_best"] for row in marked] == [True, True, None]
    assert marked[2]["score_low"] is None and marked[2]["p_vs_best"] is None
    with pytest.raises(SweepError, match=r"^sweeps.cancer: outer fold 0: no config of its sweep finished with a "
                                         r"finite score \(the fold's trials.csv"):
        outer_fold("cancer", 0, None, rows[2:], None, None, None)


@pytest.mark.parametrize("early_stopping", [None, {"train": {"early_stopping": {"grid": [{"patience": 2}]}}}],
                         ids=["asha", "asha-with-early-stopping-in-the-space"])
def test_a_config_asha_stopped_before_its_own_epochs_is_stopped_and_not_paired(early_stopping):
    """ASHA stops a config at a rung: it trained fewer than its own train.epochs (the experiment's, or its own from
    the space, given as text too). A config that can stop itself early is never taken for one ASHA stopped."""
    raw = sweep_params(epochs=30, scheduler="asha", grace_period=2)
    raw["sweeps"]["cancer"]["space"] = early_stopping or {"train": {"epochs": {"grid": ["8", "30"]}}}
    raw["experiments"]["cancer"]["train"]["validation_split"] = 0.2  # what early stopping in the space follows
    params = parse_params(raw)
    spec, sweep = params.experiments["cancer"], params.sweeps["cancer"]

    def result(config: dict, folds: list[float], epochs: int) -> SimpleNamespace:
        return SimpleNamespace(config=config, error=None, metrics={
            "scores": [float(np.mean(folds))], "score_stds": [float(np.std(folds))], "fold_scores": [folds],
            "epochs": [epochs], "trial_id": f"t{len(folds)}{epochs}{config}"})

    own = {"train.early_stopping": {"patience": 2}} if early_stopping else {}
    # Three configs (trial_rows lists a config once): the seed tells the last two apart.
    rows = trial_rows([result({"train.epochs": "8", **own}, [0.99, 0.97], 8),
                       result({"train.seed": 2, **own}, [0.93, 0.97], 30),
                       result({"train.seed": 3, **own}, [0.95, 0.93], 2)], spec, sweep)
    if early_stopping is None:
        assert [(row["score"], row["status"]) for row in rows] == [(0.98, "ok"), (0.95, "ok"), (0.94, "stopped")]
        assert [row["tied_with_best"] for row in with_ties(rows, 1.0, "accuracy")] == [True, True, None]
    else:
        assert [row["status"] for row in rows] == ["ok", "ok", "ok"]


def test_a_resume_with_other_settings_than_the_sweep_started_with_is_refused_naming_them(tmp_path, cancer_project):
    params = parse_params(sweep_params(epochs=2))
    (name, sweep), = params.sweeps.items()
    spec = params.experiments[name]
    save_settings(tmp_path, spec, sweep)
    check_settings(name, tmp_path, spec, sweep)  # unchanged: resumed
    longer = spec.with_overrides({"train.epochs": 9})
    with pytest.raises(SweepError, match=rf"^sweeps.{name}: experiment.train.epochs changed since the sweep at "
                                         rf".* started: its finished trials trained the settings it started with"):
        check_settings(name, tmp_path, longer, sweep)
    # The data and the backend too: the finished trials trained on the bytes and the backend the sweep started with.
    data = cancer_project / spec.dataset.file
    data.write_text(data.read_text() + data.read_text().splitlines(keepends=True)[1])  # one row more
    with pytest.raises(SweepError, match=rf"^sweeps.{name}: {spec.dataset.file}'s data changed since the sweep"):
        check_settings(name, tmp_path, spec, sweep)
    saved = json.loads((tmp_path / SWEEP_SETTINGS).read_text())
    write_json(tmp_path / SWEEP_SETTINGS, {**saved, "data_md5": file_md5(data), "backend": "jax"})
    with pytest.raises(SweepError, match=rf"^sweeps.{name}: the Keras backend \(backend:, KERAS_BACKEND\) changed"):
        check_settings(name, tmp_path, spec, sweep)
    del saved["backend"], saved["data_md5"]  # a sweep saved before they were kept: checked on the rest
    write_json(tmp_path / SWEEP_SETTINGS, saved)
    check_settings(name, tmp_path, spec, sweep)
