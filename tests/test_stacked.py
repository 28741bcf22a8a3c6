"""Stacked training: k models in one program behave as k separately trained models."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace

import keras
import numpy as np
import pytest
from helpers import tiny_params

from kerasflow.tasks.config.errors import DataError
from kerasflow.tasks.config.schema import LOSSES_BY_TASK, SearchSpec, parse_params
from kerasflow.tasks.data.table import load_table
from kerasflow.tasks.outputs.live import FOLDS_PLOT
from kerasflow.tasks.outputs.results import write_metrics
from kerasflow.tasks.report import tables
from kerasflow.tasks.report.collect import ExperimentReport, Report
from kerasflow.tasks.sweep.groups import SharedEpochs, config_id, stacked_groups
from kerasflow.tasks.sweep.trial import run_trial
from kerasflow.tasks.training.evaluate import (
    cross_validate,
    cross_validate_configs,
    encode_labels,
    prepare_folds,
    refit,
    refit_rows,
)
from kerasflow.tasks.training.models import build_model
from kerasflow.tasks.training.scoring import (
    HeldOut,
    HeldOutScores,
    RowScorer,
    SlotMean,
    expand_slots,
    row_scores,
)
from kerasflow.tasks.training.stacked import (
    StackedDense,
    build_stacked,
    compile_stacked,
    predict_slots,
    slotwise_constraint,
    stack_key,
    stack_slots,
)
from kerasflow.tasks.training.train import fit_fold, fit_model, train_fold


def _iris_spec(changes: dict | None = None, **evaluate):
    """The tiny iris experiment; `changes` updates its `train` section and its first layer (key `layer0`)."""
    raw = tiny_params()
    raw["experiments"]["iris"]["evaluate"].update(evaluate)
    raw["experiments"]["iris"]["train"].update((changes or {}).get("train", {}))
    raw["experiments"]["iris"]["model"]["layers"][0].update((changes or {}).get("layer0", {}))
    return parse_params(raw).experiments["iris"]


def test_each_slot_is_initialised_like_its_own_dense_layer():
    layer = StackedDense(units=40, seeds=list(range(50)), initializers=["glorot_uniform"] * 50)
    layer.build((None, 50, 30))
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    limit = np.sqrt(6 / (30 + 40))  # Glorot for a (30, 40) kernel: k must not count in the fan-in
    assert np.abs(kernel).max() <= limit
    assert np.abs(kernel).max() > 0.95 * limit
    assert not np.allclose(kernel[0], kernel[1])  # independent draws per slot


def test_a_slot_with_no_rows_is_not_changed_by_the_other_slots_training():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3, 32, 4)).astype("float32")  # slot-first: 3 slots of 32 rows
    y = rng.normal(size=(3, 32, 1)).astype("float32")
    weight = np.ones((3, 32), dtype="float32")
    weight[1] = 0.0
    model = keras.Sequential([keras.Input((None, 4)), StackedDense(5, [0, 1, 2], "relu"), StackedDense(1, [3, 4, 5])])
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.weights]
    model.compile(optimizer="adam", loss="mean_squared_error")
    model.fit(X, y, sample_weight=weight, epochs=3, batch_size=3, shuffle=False, verbose=0)
    after = [keras.ops.convert_to_numpy(w) for w in model.weights]
    for old, new in zip(before, after):
        np.testing.assert_array_equal(old[1], new[1])  # slot 1 untouched
        assert not np.allclose(old[0], new[0])  # slots 0 and 2 trained


def test_slot_j_starts_from_the_weights_of_fold_js_own_model():
    spec = _iris_spec()
    stacked = build_stacked([spec.model] * 3, 4, seeds=[7, 8, 9], loss=spec.loss)
    for j in range(3):
        own = build_model(spec.model, 4, seed=7 + j)
        for stacked_weight, own_weight in zip(stacked.weights, own.weights):
            own_weight = keras.ops.convert_to_numpy(own_weight)
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(stacked_weight)[j].reshape(own_weight.shape),
                                          own_weight)


def test_stack_slots_pads_shorter_parts_with_zero_weight_rows():
    parts = [np.arange(5.0)[:, None], np.arange(10.0, 14.0)[:, None]]
    X, w = stack_slots(parts)
    assert X.shape == (2, 5, 1) and w.tolist() == [[1] * 5, [1, 1, 1, 1, 0]]
    assert X[0, :, 0].tolist() == [0, 1, 2, 3, 4] and X[1, :, 0].tolist() == [10, 11, 12, 13, 0]


# The books' SGD: momentum, Nesterov and Keras 1's per-step decay (an inverse-time schedule), without
# `learning_rate` in train: every optimizer argument is per weight, so slots stay apart.
BOOKS_SGD = {"train": {"optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.8, "nesterov": True, "decay": 0.005},
                       "learning_rate": None}}
# The overfitting chapters' hidden layer: a max-norm constraint (tight enough to bind) and L2 and L1 penalties,
# which each slot pays on its own weights.
CONSTRAINED = {"layer0": {"kernel_constraint": {"name": "max_norm", "max_value": 0.5},
                          "kernel_regularizer": {"name": "l2", "l2": 0.01}, "bias_regularizer": "l1"}}


# The books' step decay: the rate halved after every 5 epochs, recorded per epoch in each fold's history.
STEP_DECAY = {"train": {"lr_schedule": {"type": "step", "factor": 0.5, "every": 5}}}


# Each fold stops on its own epoch (patience spent on its held-out loss) and keeps its best epoch's weights; in the
# stacked program a stopped slot is no longer updated while the others go on.
EARLY_STOPPING = {"train": {"epochs": 60, "validation_split": 0.2, "early_stopping": {
    "monitor": "val_loss", "patience": 2, "min_delta": 0.001, "restore_best_weights": True}}}


@pytest.mark.parametrize("changes", [None, BOOKS_SGD, CONSTRAINED, STEP_DECAY, EARLY_STOPPING],
                         ids=["adam", "sgd-momentum-decay", "maxnorm-l2", "step-decay", "early-stopping"])
def test_stacked_folds_score_as_separately_trained_folds(project, changes):
    """Same folds, initial weights and batches: the stacked and the one-by-one paths give the same models."""
    stacked_spec = _iris_spec(changes, n_splits=5, stack_folds=True)
    separate_spec = _iris_spec(changes, n_splits=5, stack_folds=False)
    table = load_table(stacked_spec.dataset, root=project)
    labels = encode_labels(stacked_spec, table)
    folds = prepare_folds(stacked_spec, table, labels)
    stacked = cross_validate(stacked_spec, folds)
    separate = cross_validate(separate_spec, folds)
    assert stacked.stacked and not separate.stacked
    if changes is EARLY_STOPPING:  # the folds stop on epochs of their own
        assert stacked.epochs_run == separate.epochs_run and len(set(stacked.epochs_run)) > 1 and max(
            stacked.epochs_run) < 60
    assert len(stacked.folds) == len(separate.folds) == 5
    assert np.mean(stacked.scores) > 0.8
    assert stacked.scores == separate.scores
    for fold, alone in zip(stacked.folds, separate.folds):
        np.testing.assert_allclose(fold.history["val_loss"], alone.history["val_loss"], rtol=1e-3)
        # The training loss as Keras keeps it, 120 rows in batches of 16: the partial batch's mean weighs a batch's.
        np.testing.assert_allclose(fold.history["loss"], alone.history["loss"], rtol=1e-3)
        np.testing.assert_array_equal(fold.y_pred, alone.y_pred)
        assert set(fold.history) == {"loss", "val_loss", "accuracy", "val_accuracy"} | (
            {"learning_rate"} if stacked_spec.train.scheduled else set())
        if changes is STEP_DECAY:
            assert fold.history["learning_rate"] == alone.history["learning_rate"] == pytest.approx(
                [0.05] * 5 + [0.025] * 5 + [0.0125] * 5)
        assert len(fold.history["loss"]) == len(alone.history["loss"])
        assert len(fold.history["loss"]) == stacked_spec.train.epochs or changes is EARLY_STOPPING
        assert fold.history["loss"][-1] < fold.history["loss"][0]


def test_held_out_rows_of_more_than_one_batch_are_scored_in_chunks_as_in_one(project, monkeypatch):
    """A stacked model takes every slot in each call, so held-out sets larger than one batch are scored in chunks of
    rows (all slots each): the same per-epoch scores and predictions as one call."""
    spec = _iris_spec(n_splits=3)
    table = load_table(spec.dataset, root=project)
    folds = prepare_folds(spec, table, encode_labels(spec, table))
    whole = cross_validate(spec, folds)
    # 50 held-out rows a fold: 8 chunks, the last of 1 row.
    monkeypatch.setattr("kerasflow.tasks.training.scoring.ONE_BATCH", 7)
    chunked = cross_validate(spec, folds)
    assert whole.stacked and chunked.stacked and whole.scores == chunked.scores
    for fold, theirs in zip(whole.folds, chunked.folds):
        np.testing.assert_allclose(fold.y_pred, theirs.y_pred)
        for key in ("val_loss", "val_accuracy"):
            assert len(fold.history[key]) == spec.train.epochs
            np.testing.assert_allclose(fold.history[key], theirs.history[key], rtol=1e-5, atol=1e-6)


def test_a_chunk_of_one_held_out_row_a_slot_is_scored_one_value_a_row():
    """Keras' sparse accuracy squeezes a known rows axis of 1 (one value per slot, not per row); the last chunk of a
    held-out set `ONE_BATCH * n + 1` rows long, or a leave-one-out fold, must still give one value per row (on a
    last axis of 1, which holds a ratio's two values)."""
    spec = _iris_spec()
    model = build_stacked([spec.model] * 2, 4, seeds=[1, 2], loss=spec.loss)
    scorer = RowScorer(model, [fn for fn, _ in row_scores(spec).values()])
    X, y = np.zeros((2, 1, 4), "float32"), np.zeros((2, 1), "int64")  # sparse class codes, one row a slot
    *rows, predictions = scorer.predict_on_batch([X, y])
    assert [np.shape(values) for values in rows] == [(2, 1, 1), (2, 1, 1)] and np.shape(predictions) == (2, 1, 3)


def _spec_for(task: str, loss: str):
    raw = tiny_params()
    name = "diabetes" if task == "regression" else "iris"
    experiment = raw["experiments"][name]
    experiment["train"]["loss"] = loss
    if task == "binary":
        experiment["dataset"]["task"] = "binary"
        experiment["model"]["layers"][-1] = {"type": "dense", "units": 1, "activation": "sigmoid"}
    if task == "multilabel":  # three labels (the rows are drawn below, not read)
        experiment["dataset"].update(task="multilabel", target=["a", "b", "c"])
        experiment["model"]["layers"][-1] = {"type": "dense", "units": 3, "activation": "sigmoid"}
        experiment["evaluate"]["stratify"] = False
    if task == "regression":
        experiment["evaluate"]["metric"] = "rmse"
    return parse_params(raw).experiments[name]


def _held_out_rows(task: str, loss: str, n_rows: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    X = rng.normal(size=(n_rows, 4)).astype("float32")
    if task == "regression":
        return X, rng.normal(50, 20, size=(n_rows, 1)).astype("float32")
    if task == "binary":
        return X, rng.integers(0, 2, size=(n_rows, 1)).astype("float32")
    if task == "multilabel":
        return X, rng.integers(0, 2, size=(n_rows, 3)).astype("float32")
    codes = rng.integers(0, 3, size=n_rows)
    return X, (np.eye(3, dtype="float32")[codes] if loss.startswith("categorical") else codes.astype("int32"))


@pytest.mark.parametrize("task, loss", [(task, loss) for task, losses in LOSSES_BY_TASK.items() for loss in losses])
def test_each_slots_held_out_scores_are_keras_evaluate_of_its_rows(task, loss):
    """For every loss a task allows: a slot's scores from one prediction leave its padding rows out and apply its
    target scale, as Keras' `evaluate` through the compiled per-slot metrics does."""
    spec, rng = _spec_for(task, loss), np.random.default_rng(0)
    parts = [_held_out_rows(task, loss, n_rows, rng) for n_rows in (7, 5, 6)]
    X, weight = stack_slots([part[0] for part in parts])
    y, _ = stack_slots([part[1] for part in parts])
    scales = [(20.0, 50.0)] * 3 if task == "regression" else None
    model = build_stacked([spec.model] * 3, 4, seeds=[1, 2, 3], loss=spec.loss, target_scales=scales)
    scores = row_scores(spec)
    compile_stacked(model, spec)
    expected = model.evaluate(X, y, sample_weight=weight, batch_size=len(X), verbose=0, return_dict=True)
    callback, logs = HeldOutScores(HeldOut(X, y, scores, weight), slots=3), {}
    callback.set_model(model)
    callback.on_epoch_end(0, logs)
    expand_slots(expected)
    expand_slots(logs)
    assert set(logs) == {f"val_f{j}_{name}" for j in range(3) for name in ("loss", spec.metric)}
    for key, value in logs.items():
        assert np.isclose(value, expected[key.removeprefix("val_")], rtol=1e-5), key


def test_slots_of_configs_with_other_initializers_start_from_each_configs_own_weights():
    glorot = _iris_spec().model
    normal = _iris_spec().with_overrides({"model.initializer": "random_normal"}).model
    stacked = build_stacked([glorot, normal], 4, seeds=[7, 7], loss=_iris_spec().loss)
    for j, spec in enumerate([glorot, normal]):
        for stacked_weight, own_weight in zip(stacked.weights, build_model(spec, 4, seed=7).weights):
            own_weight = keras.ops.convert_to_numpy(own_weight)
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(stacked_weight)[j].reshape(own_weight.shape),
                                          own_weight)


def test_a_grid_group_trained_as_one_program_scores_as_each_config_trained_alone(project):
    """Configs that differ only in initializers, stacked with their folds (2 configs x 3 folds = 6 slots): each
    config's fold scores and learning curves are those of its own cross-validation."""
    specs = [_iris_spec().with_overrides({"model.initializer": name}) for name in ("glorot_uniform", "he_normal")]
    together = _each_trains_as_alone(specs, project, predictions_rtol=0.0)
    assert together[0].folds[0].history["loss"] != together[1].folds[0].history["loss"]


def _each_trains_as_alone(specs: list, project, predictions_rtol: float = 1e-4) -> list:
    """Cross-validate `specs` as one stacked program, check each config's fold scores, losses and predictions
    against its own cross-validation, and return the program's results."""
    table = load_table(specs[0].dataset, root=project)
    folds = prepare_folds(specs[0], table, encode_labels(specs[0], table))
    together = cross_validate_configs(specs, folds)
    for spec, grouped in zip(specs, together):
        alone = cross_validate(spec, folds)
        assert grouped.stacked and alone.stacked
        assert grouped.scores == alone.scores
        for fold_grouped, fold_alone in zip(grouped.folds, alone.folds):
            np.testing.assert_allclose(fold_grouped.history["loss"], fold_alone.history["loss"], rtol=1e-4)
            np.testing.assert_allclose(fold_grouped.y_pred, fold_alone.y_pred, rtol=predictions_rtol,
                                       atol=1e-6 if predictions_rtol else 0.0)
    return together


def test_configs_with_other_hidden_widths_train_in_one_program_each_as_alone(project):
    """Hidden widths 3, 6 and 9 padded to 9 in one program: each config's fold scores and learning curves are those
    of its own cross-validation, and each slot starts from its own model's weights, zeros around them."""
    specs = [_iris_spec().with_overrides({"model.widths": [width]}) for width in (3, 9, 6)]
    assert len({stack_key(spec) for spec in specs}) == 1
    stacked = build_stacked([spec.model for spec in specs], 4, seeds=[7, 7, 7], loss=specs[0].loss)
    for j, spec in enumerate(specs):
        for stacked_weight, own_weight in zip(stacked.weights, build_model(spec.model, 4, seed=7).weights):
            own = keras.ops.convert_to_numpy(own_weight)
            slot = keras.ops.convert_to_numpy(stacked_weight)[j].reshape(-1, stacked_weight.shape[-1])
            rows, columns = own.reshape(-1, own.shape[-1]).shape
            np.testing.assert_array_equal(slot[:rows, :columns], own.reshape(rows, columns))
            assert not slot[rows:].any() and not slot[:, columns:].any()
    together = _each_trains_as_alone(specs, project)
    assert len({tuple(result.folds[0].history["loss"]) for result in together}) == 3


# Two configs of other optimizers and hidden widths, cross-validated as one stacked program and each alone, on JAX
# (Keras' MultiOptimizer there runs through its stateless step); prints each config's fold scores and losses.
GROUP_ON_JAX = """
import json, sys
from kerasflow.tasks.config.backend import set_backend_defaults
set_backend_defaults()
from kerasflow.tasks.config.schema import parse_params
from kerasflow.tasks.data.table import load_table
from kerasflow.tasks.training.evaluate import cross_validate, cross_validate_configs, encode_labels, prepare_folds

raw = json.loads(sys.argv[1])
raw["backend"] = "jax"
spec = parse_params(raw).experiments["iris"]
configs = [spec.with_overrides({"train.optimizer": "adam", "model.widths": [3]}),
           spec.with_overrides({"train.optimizer": "rmsprop", "train.learning_rate": 0.01, "model.widths": [8]})]
table = load_table(spec.dataset)
folds = prepare_folds(spec, table, encode_labels(spec, table))
together = cross_validate_configs(configs, folds)
runs = [(grouped, cross_validate(config, folds)) for config, grouped in zip(configs, together)]
print(json.dumps([[[run.scores, [fold.history["loss"] for fold in run.folds]] for run in pair] for pair in runs]))
"""


def test_a_group_of_other_optimizers_and_widths_trains_as_each_alone_on_jax(project):
    child = subprocess.run([sys.executable, "-c", GROUP_ON_JAX, json.dumps(tiny_params())], cwd=project,
                           capture_output=True, text=True, env={**os.environ, "KERAS_BACKEND": "jax"}, timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    for (grouped_scores, grouped_losses), (alone_scores, alone_losses) in json.loads(child.stdout.splitlines()[-1]):
        assert grouped_scores == alone_scores
        np.testing.assert_allclose(grouped_losses, alone_losses, rtol=1e-4)


def _books_grid(**sweep) -> SearchSpec:
    return SearchSpec.model_validate({"space": {
        "train.optimizer": {"grid": ["rmsprop", "adam"]},
        "model.initializer": {"grid": ["glorot_uniform", "random_normal", "random_uniform"]},
        "train.batch_size": {"grid": [10, 20]}}, **sweep})


def test_the_books_grid_of_twelve_trains_as_two_stacked_programs():
    groups = stacked_groups(_iris_spec(), _books_grid())
    assert sorted(len(group) for group in groups) == [6, 6]
    for group in groups:
        assert len({c["train.batch_size"] for c in group}) == 1
        assert {(c["train.optimizer"], c["model.initializer"]) for c in group} == {
            (optimizer, initializer) for optimizer in ("rmsprop", "adam")
            for initializer in ("glorot_uniform", "random_normal", "random_uniform")}
    scheduled = _iris_spec({"train": {"lr_schedule": {"type": "step", "every": 2, "factor": 0.5}}})
    assert sorted(map(len, stacked_groups(scheduled, _books_grid()))) == [3] * 4  # one logged rate per program


def test_configs_with_other_optimizers_train_in_one_program_each_as_alone(project):
    """Three optimizers (with their own arguments and rates), stacked with their folds in one program of three
    slot groups: each config's fold scores and learning curves are those of its own cross-validation."""
    optimizers = [{"train.optimizer": "adam", "train.learning_rate": 0.05},
                  {"train.optimizer": {"name": "sgd", "momentum": 0.9}, "train.learning_rate": 0.1},
                  {"train.optimizer": "rmsprop", "train.learning_rate": 0.01}]
    specs = [_iris_spec().with_overrides(overrides) for overrides in optimizers]
    assert len({stack_key(spec) for spec in specs}) == 1
    together = _each_trains_as_alone(specs, project)
    assert len({tuple(result.folds[0].history["loss"]) for result in together}) == 3


@pytest.mark.parametrize("train", [{}, {"lr_schedule": {"type": "step", "every": 2, "factor": 0.5}}],
                         ids=["constant-rate", "step-schedule"])
def test_configs_that_differ_only_in_epochs_share_one_training_scored_at_each_count(project, tmp_path, train):
    """Epochs {3, 5} x 2 initializers is one trial training 2 models (not 4) for 5 epochs: each config reports the
    fold scores, and logs the history, of that config trained alone (a schedule counts steps, so the first 3
    epochs of 5 are the 3-epoch training with it too)."""
    spec = _iris_spec({"train": train})
    sweep = SearchSpec.model_validate({"space": {"model.initializer": {"grid": ["glorot_uniform", "he_normal"]},
                                                 "train.epochs": {"grid": [3, 5]}}})
    (group,) = stacked_groups(spec, sweep)
    specs = [spec.with_overrides(config) for config in group]
    assert len(SharedEpochs.of(specs).models) == 2
    table = load_table(spec.dataset, root=project)
    labels = encode_labels(spec, table)
    together: list[dict] = []
    run_trial(specs, sweep, table, labels, lambda metrics, _: together.append(metrics), tmp_path,
              history_dirs=[tmp_path / config_id(config) for config in group])
    assert [report["epoch"] for report in together] == [1, 2, 3, 4, 5]
    assert together[-1]["epochs"] == [config["train.epochs"] for config in group]
    for c, (config, config_spec) in enumerate(zip(group, specs)):
        alone: list[dict] = []
        run_trial([config_spec], sweep, table, labels, lambda metrics, _: alone.append(metrics), tmp_path)
        assert len(alone) == config["train.epochs"]
        assert together[-1]["fold_scores"][c] == alone[-1]["fold_scores"][0]
        assert together[-1]["scores"][c] == alone[-1]["score"]
        rows = json.loads((tmp_path / config_id(config) / FOLDS_PLOT).read_text())
        assert max(row["epoch"] for row in rows) == config["train.epochs"]
        assert len(rows) == 3 * config["train.epochs"]  # every fold, each epoch once


def test_a_trial_resumed_past_a_configs_end_reports_that_configs_own_scores(project, tmp_path):
    """Epochs {3, 5}, a checkpoint every 2 epochs: resumed from epoch 4, the 3-epoch config still reports its
    scores after 3 epochs (carried by the checkpoint), and every config ends as in the uninterrupted trial. Its
    histories, where the trial that died had logged epoch 5 after its checkpoint, end as the uninterrupted
    trial's: each epoch once."""
    spec = _iris_spec()
    sweep = SearchSpec.model_validate({"space": {"train.epochs": {"grid": [3, 5]}}, "checkpoint_every": 2})
    (group,) = stacked_groups(spec, sweep)
    specs = [spec.with_overrides(config) for config in group]
    table = load_table(spec.dataset, root=project)
    labels = encode_labels(spec, table)
    whole: list[tuple[dict, object]] = []
    run_trial(specs, sweep, table, labels, lambda metrics, checkpoint: whole.append((metrics, checkpoint)),
              tmp_path / "whole", history_dirs=[tmp_path / "history" / config_id(config) for config in group])
    at_4 = next(checkpoint for metrics, checkpoint in whole if metrics["epoch"] == 4)
    shutil.copytree(tmp_path / "history", tmp_path / "resumed_history")
    resumed: list[dict] = []
    run_trial(specs, sweep, table, labels, lambda metrics, _: resumed.append(metrics), tmp_path / "resumed",
              resume_from=at_4, history_dirs=[tmp_path / "resumed_history" / config_id(config) for config in group])
    assert [metrics["epoch"] for metrics in resumed] == [5]
    assert resumed[-1]["fold_scores"] == whole[-1][0]["fold_scores"]
    assert resumed[-1]["fold_scores"][0] == whole[2][0]["fold_scores"][0]  # epochs=3: its scores after epoch 3
    files = sorted(path.relative_to(tmp_path / "history") for path in (tmp_path / "history").rglob("*.*"))
    assert files == sorted(path.relative_to(tmp_path / "resumed_history")
                           for path in (tmp_path / "resumed_history").rglob("*.*"))
    assert any(path.suffix == ".tsv" for path in files)
    for path in files:
        again, first = ((root / path).read_text() for root in (tmp_path / "resumed_history", tmp_path / "history"))
        if path.name == "metrics.json":  # means of the last values, which the resumed trial read back as logged
            assert json.loads(again) == pytest.approx(json.loads(first), rel=1e-5), path
        else:
            assert again == first, path


def test_the_books_grid_of_54_with_epochs_trains_as_few_programs():
    sweep = _books_grid()
    space = {**sweep.space, "train.epochs": {"grid": [10, 20, 30]}, "train.batch_size": {"grid": [5, 10, 20]}}
    groups = stacked_groups(_iris_spec(), sweep.model_copy(update={"space": space}))
    assert sum(map(len, groups)) == 54
    assert sorted(map(len, groups)) == [18] * 3  # a program per batch size
    cosine = _iris_spec({"train": {"lr_schedule": {"type": "cosine"}}})  # its length is the training's
    assert sorted(map(len, stacked_groups(cosine, sweep.model_copy(update={"space": space})))) == [3] * 18


def test_grids_that_cannot_stack_their_configs_run_one_config_per_trial():
    spec = _iris_spec()
    assert stacked_groups(spec, _books_grid(stack_configs=False)) is None
    assert stacked_groups(spec, _books_grid(scheduler="asha")) is None  # a scheduler stops configs one by one
    assert stacked_groups(spec, _books_grid(scoring="holdout")) is None  # exports one config's own checkpoint
    sampled = SearchSpec.model_validate({"space": {"train.learning_rate": {"choice": [0.01, 0.1]}},
                                         "algorithm": "random", "num_samples": 2})
    assert stacked_groups(spec, sampled) is None
    widths = SearchSpec.model_validate({"space": {"model.widths": {"grid": [[4], [8, 4]]}}})
    assert sorted(map(len, stacked_groups(spec, widths))) == [1, 1]  # other layers: a program each
    softmax = _iris_spec({"layer0": {"activation": "softmax"}})  # a padding unit would join a hidden softmax
    widths = SearchSpec.model_validate({"space": {"model.widths": {"grid": [[4], [8]]}}})
    assert sorted(map(len, stacked_groups(spec, widths))) == [2]
    assert sorted(map(len, stacked_groups(softmax, widths))) == [1, 1]
    assert not _iris_spec({"train": {"optimizer": "adafactor"}}).train.stackable  # its RMS takes a whole kernel
    unstacked = _iris_spec(stack_folds=False)
    assert sorted(map(len, stacked_groups(unstacked, _books_grid()))) == [1] * 12


def test_a_stacked_step_returns_one_vector_per_metric_not_one_value_per_slot():
    """Each output of a compiled step is a dispatch on JAX: the step's logs must not grow with the slots. Besides
    each slot's loss and metric, one vector each, Keras logs its running ``loss``: the sum over slots it minimises."""
    spec = _iris_spec()
    model = build_stacked([spec.model] * 5, 4, seeds=[1, 2, 3, 4, 5], loss=spec.loss)
    compile_stacked(model, spec)
    X, y = np.zeros((5, 4, 4), "float32"), np.tile(np.array([0, 1, 2, 0])[None, :, None], (5, 1, 1))  # slot-first
    logs = model.train_on_batch(X, y, return_dict=True)
    assert len(logs) == 3  # one output per metric
    results: dict = {}
    for name, value in model.get_metrics_result().items():  # a compiled metric's own dict comes nested in its name
        results.update(value if isinstance(value, dict) else {name: value})
    assert {name: np.shape(value) for name, value in results.items()} == {"loss": (), "f*_loss": (5,),
                                                                          "f*_accuracy": (5,)}
    np.testing.assert_allclose(float(results["loss"]), float(np.sum(results["f*_loss"])), rtol=1e-5)


class _TrainEndLogs(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict] = []

    def on_train_end(self, logs: dict | None = None) -> None:
        self.seen.append(dict(logs or {}))


def test_stacked_folds_fed_in_several_fits_train_as_in_one(project, monkeypatch):
    """A stacked training longer than one layout chunk goes to Keras in several `fit` calls, the same training."""
    spec = _iris_spec(n_splits=3)
    table = load_table(spec.dataset, root=project)
    folds = prepare_folds(spec, table, encode_labels(spec, table))
    whole = cross_validate(spec, folds)
    monkeypatch.setattr("kerasflow.tasks.training.fit.LAYOUT_BYTES", 1)  # one epoch per `fit` call
    probe = _TrainEndLogs()
    chunked = cross_validate(spec, folds, callbacks=[probe])
    assert whole.stacked and chunked.stacked and whole.scores == chunked.scores
    for ours, theirs in zip(whole.folds, chunked.folds):
        assert ours.history.keys() == theirs.history.keys()
        for key in ours.history:
            np.testing.assert_allclose(ours.history[key], theirs.history[key], rtol=1e-6, err_msg=key)
    assert len(probe.seen) == spec.train.epochs
    assert all("f0_loss" in logs and not any("f*_" in key for key in logs) for logs in probe.seen)


def test_slot_means_skip_padding_rows_even_where_their_value_is_infinite():
    """Padding rows weigh 0; a per-row score may be inf there (a log of 0), which a 0/1 product would make nan."""
    def log_of_prediction(y_true, y_pred):
        return -keras.ops.log(y_pred[..., 0])

    metric = SlotMean(log_of_prediction, slots=2, name="score")
    y_pred = np.array([[[1.0], [0.0]], [[np.e], [1.0]]], dtype="float32")  # (slots 2, batch 2, 1); row 1 of slot 0 pads
    metric.update_state(np.zeros_like(y_pred), y_pred, sample_weight=np.array([[1.0, 0.0], [1.0, 2.0]]))
    means = keras.ops.convert_to_numpy(metric.result()["f*_score"])
    np.testing.assert_allclose(means, [0.0, -0.5], atol=1e-6)


def test_a_stacked_models_predictions_in_chunks_of_rows_are_its_predictions_in_one_call(monkeypatch):
    """What a run resumed at its last epoch predicts with: every slot in each call, a few rows of each at a time."""
    spec = _iris_spec()
    model = build_stacked([spec.model] * 3, 4, seeds=[1, 2, 3], loss=spec.loss)
    X = np.random.default_rng(0).normal(size=(3, 8, 4)).astype("float32")
    whole = np.asarray(model.predict_on_batch(X))
    monkeypatch.setattr("kerasflow.tasks.training.scoring.ONE_BATCH", 3)  # chunks of 3, 3 and 2 rows
    chunked = predict_slots(model, X)
    assert chunked.shape == whole.shape == (3, 8, 3)
    np.testing.assert_allclose(chunked, whole, rtol=1e-6)


def test_a_stacked_constraint_holds_slot_by_slot_along_each_slots_own_axis():
    kernel = np.random.default_rng(0).normal(size=(3, 4, 5)).astype("float32") * 3
    for constraint in (keras.constraints.MaxNorm(1.0, axis=0), keras.constraints.UnitNorm(axis=1),
                       keras.constraints.MinMaxNorm(0.5, 1.0, axis=0), keras.constraints.NonNeg()):
        stacked = keras.ops.convert_to_numpy(slotwise_constraint(constraint, 1)(keras.ops.convert_to_tensor(kernel)))
        for j in range(3):
            np.testing.assert_allclose(stacked[j], keras.ops.convert_to_numpy(constraint(kernel[j])), rtol=1e-6)


def test_noise_and_dropout_stack_and_score_within_their_draws_of_folds_trained_alone(project):
    """Brownlee's noise and the books' dropout: the stacked program draws them for all slots at once, each slot's
    draws independent but not its own model's, so the scores agree within the draws' noise, not exactly."""
    raw = tiny_params()
    raw["experiments"]["iris"]["model"]["layers"][1:1] = [{"type": "gaussian_noise", "stddev": 0.1},
                                                          {"type": "dropout", "rate": 0.1}]
    raw["experiments"]["iris"]["evaluate"].update(n_splits=5)
    specs = {stack: parse_params(raw).experiments["iris"].with_overrides({"evaluate.stack_folds": stack})
             for stack in (True, False)}
    table = load_table(specs[True].dataset, root=project)
    folds = prepare_folds(specs[True], table, encode_labels(specs[True], table))
    stacked, separate = (cross_validate(specs[stack], folds) for stack in (True, False))
    assert stacked.stacked and not separate.stacked
    assert np.mean(stacked.scores) > 0.8 and abs(np.mean(stacked.scores) - np.mean(separate.scores)) < 0.05
    assert stacked.scores != separate.scores  # the draws differ: the comparison above is not exact by accident
    # Drawn in training only: the held-out predictions of a fold are its model's, not a noisy copy.
    assert cross_validate(specs[True], folds).scores == stacked.scores


@pytest.mark.parametrize("stack", [True, False], ids=["stacked", "fold-by-fold"])
def test_mape_is_keras_own_percentage_error_at_each_epoch_and_in_the_final_score(project, stack):
    raw = tiny_params()
    raw["experiments"]["diabetes"]["evaluate"].update(metric="mape", stack_folds=stack)
    spec = parse_params(raw).experiments["diabetes"]
    table = load_table(spec.dataset, root=project)
    folds = prepare_folds(spec, table, encode_labels(spec, table))
    result = cross_validate(spec, folds)
    assert result.stacked == stack and result.summary()["metric"] == "mape" and not spec.higher_is_better
    for fold, data in zip(result.folds, folds):
        expected = float(keras.metrics.MeanAbsolutePercentageError()(data.y_test, fold.y_pred))
        assert fold.score == pytest.approx(expected, rel=1e-5)
        assert fold.history["val_mape"][-1] == pytest.approx(fold.score, rel=1e-4)  # the last epoch's, logged


def test_an_activity_penalty_trains_fold_by_fold(project):
    """Its penalty is on the layer's outputs, which in a stacked program include the rows padding a shorter slot.
    Keras' own evaluation scores each fold's held-out rows (the penalty in their val_loss), and the fold's
    predictions are the trained model's."""
    assert _iris_spec({"layer0": {"kernel_regularizer": "l2"}}).model.stackable
    spec = _iris_spec({"layer0": {"activity_regularizer": {"name": "l2", "l2": 0.01}}}, refit=False)
    assert not spec.model.stackable
    table = load_table(spec.dataset, root=project)
    folds = prepare_folds(spec, table, encode_labels(spec, table))
    result = cross_validate(spec, folds)
    assert not result.stacked
    for fold, data in zip(result.folds, folds):
        assert len(fold.history["val_loss"]) == spec.train.epochs and len(fold.y_pred) == len(data.y_test)
        assert fold.score == pytest.approx(float(np.mean(fold.y_pred == fold.y_true)))


def test_a_piecewise_schedule_gives_each_span_of_epochs_its_rate_in_stacked_folds(project):
    """Géron's PiecewiseConstantDecay, boundaries in epochs: the folds stack (one rate for every slot) and each
    epoch's recorded rate is its span's."""
    spec = _iris_spec({"train": {"epochs": 6, "learning_rate": None, "lr_schedule": {
        "type": "piecewise", "boundaries": [2, 4], "values": [0.05, 0.01, 0.002]}}}, refit=False)
    table = load_table(spec.dataset, root=project)
    result = cross_validate(spec, prepare_folds(spec, table, encode_labels(spec, table)))
    assert result.stacked
    for fold in result.folds:
        assert fold.history["learning_rate"] == pytest.approx([0.05, 0.05, 0.01, 0.01, 0.002, 0.002])


def test_reduce_on_plateau_trains_each_fold_on_its_own_rate(project, monkeypatch):
    """The rate follows each fold's own validation loss, so the folds cannot share one optimizer: no stacking. A
    training fed in several `fit` calls keeps its plateau count across them: the same rates as in one."""
    spec = _iris_spec({"train": {"validation_split": 0.2, "lr_schedule": {
        "type": "reduce_on_plateau", "patience": 1, "factor": 0.5, "min_delta": 0.05}}}, refit=False)
    table = load_table(spec.dataset, root=project)
    folds = prepare_folds(spec, table, encode_labels(spec, table))
    result = cross_validate(spec, folds)
    assert not result.stacked
    for fold in result.folds:
        rates = fold.history["learning_rate"]
        assert rates[0] == pytest.approx(0.05) and rates == sorted(rates, reverse=True) and rates[-1] < rates[0]
    monkeypatch.setattr("kerasflow.tasks.training.fit.LAYOUT_BYTES", 1)  # one epoch per `fit` call
    chunked = cross_validate(spec, folds)
    for ours, theirs in zip(result.folds, chunked.folds):
        np.testing.assert_allclose(ours.history["learning_rate"], theirs.history["learning_rate"], rtol=1e-6)


def test_early_stopping_ends_each_fold_when_its_own_patience_is_spent(project):
    """Each fold stops on its own epoch, still in one stacked program; with restore_best_weights each is scored
    with its best epoch's weights."""
    spec = _iris_spec({"train": {"epochs": 60, "validation_split": 0.2, "early_stopping": {
        "monitor": "val_accuracy", "patience": 3, "restore_best_weights": True}}})
    table = load_table(spec.dataset, root=project)
    result = cross_validate(spec, prepare_folds(spec, table, encode_labels(spec, table)))
    assert result.stacked
    assert result.epochs_run == [len(fold.history["loss"]) for fold in result.folds] and max(result.epochs_run) < 60
    assert result.summary()["epochs_run"] == result.epochs_run
    shown = tables.scores(Report([ExperimentReport(name="iris", spec=spec, metrics=result.summary())]))
    assert shown["folds"][0] == f"3, trained {min(result.epochs_run)}–{max(result.epochs_run)} epochs"
    folds = prepare_folds(spec, table, encode_labels(spec, table))
    model, alone = train_fold(spec, folds[0], 0)  # fold 0 alone ends with its best epoch's weights, put back
    best = model.evaluate(*folds[0].validation, verbose=0, return_dict=True)["accuracy"]
    assert best == pytest.approx(max(alone.history["val_accuracy"]), abs=1e-6)


@pytest.mark.parametrize("stack", [True, False], ids=["stacked", "fold by fold"])
def test_a_folds_early_stopping_follows_its_validation_split_never_its_held_out_rows(project, stack):
    """Early stopping (restoring the best epoch) follows the last validation_split share of each fold's training
    rows, so the held-out rows a fold is scored on choose none of its epochs: with their targets changed, every fold
    trains the same epochs to the same model, and only the scores move."""
    spec = _iris_spec({"train": {"epochs": 60, "validation_split": 0.2, "early_stopping": {
        "monitor": "val_accuracy", "patience": 3, "restore_best_weights": True}}}, refit=False, stack_folds=stack)
    table = load_table(spec.dataset, root=project)
    folds = prepare_folds(spec, table, encode_labels(spec, table))
    for fold in folds:  # 100 training rows: 80 trained on, 20 validate, drawn stratified from a file sorted by class
        assert (len(fold.X_train), len(fold.validation[0]), len(fold.X_test)) == (80, 20, 50)
        assert np.bincount(np.asarray(fold.validation[1]).ravel(), minlength=3).min() >= 6  # class codes
    result = cross_validate(spec, folds)
    changed = cross_validate(spec, [replace(fold, y_test=np.roll(fold.y_test, 1, axis=0)) for fold in folds])
    assert result.stacked == stack and max(result.epochs_run) < 60
    for ours, theirs in zip(result.folds, changed.folds):
        assert ours.history == theirs.history
        np.testing.assert_array_equal(ours.y_pred, theirs.y_pred)
    assert [fold.score for fold in result.folds] != [fold.score for fold in changed.folds]


def test_a_stacked_trial_with_early_stopping_reports_the_epochs_each_config_trained(project, tmp_path):
    """Two initializers stacked in one trial, their folds stopping early: each config's reported epochs are its
    folds' longest training, not train.epochs."""
    spec = _iris_spec({"train": {"epochs": 60, "validation_split": 0.2, "early_stopping": {
        "monitor": "val_accuracy", "patience": 3}}}, refit=False)
    sweep = SearchSpec.model_validate({"space": {"model.initializer": {"grid": ["glorot_uniform", "he_normal"]}}})
    (group,) = stacked_groups(spec, sweep)
    specs = [spec.with_overrides(config) for config in group]
    table = load_table(spec.dataset, root=project)
    labels = encode_labels(spec, table)
    reports: list[dict] = []
    run_trial(specs, sweep, table, labels, lambda metrics, _: reports.append(metrics), tmp_path)
    (report,) = reports  # folds that stop on their own epochs report once, at the end
    alone = [max(cross_validate(config_spec, prepare_folds(config_spec, table, labels)).epochs_run)
             for config_spec in specs]
    assert report["epochs"] == alone and max(alone) < 60


def test_a_folds_early_stop_is_keras_own_early_stopping(project):
    stopping = {"monitor": "val_loss", "patience": 2, "min_delta": 0.001}
    spec = _iris_spec({"train": {"epochs": 60, "validation_split": 0.2, "early_stopping": stopping}}, refit=False)
    plain = _iris_spec({"train": {"epochs": 60}}, refit=False)
    table = load_table(spec.dataset, root=project)
    folds = prepare_folds(spec, table, encode_labels(spec, table))
    ours = fit_fold(spec, folds[1], 1)
    keras_own = fit_fold(plain, folds[1], 1, callbacks=[keras.callbacks.EarlyStopping(**stopping)])
    assert len(ours.history["loss"]) < 60
    assert ours.history == keras_own.history and ours.score == keras_own.score


def test_a_refits_validation_split_rounds_its_training_part_down_as_keras_and_leaves_rows_on_both_sides(project):
    spec = _iris_spec({"train": {"epochs": 1, "batch_size": 8, "validation_split": 0.25}})
    table = load_table(spec.dataset, root=project)
    steps = []

    class Steps(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            steps.append(self.params["steps"])

    # Keras' fit(validation_split=0.25) trains on 112 of 150 rows (112.5 rounded down), 14 batches of 8, and so
    # does the refit.
    final = refit(spec, table, encode_labels(spec, table), callbacks=[Steps()])
    assert steps == [14]
    # Its preprocessing is fitted on those 112 rows, as a fold's on its training rows: the validation rows, which
    # would pick its best epoch or stop it, are held out of it too. The evaluation shuffles and stratifies, so they
    # are a stratified draw, not the file's last 38 rows (iris.csv is sorted by class: all of one).
    labels = encode_labels(spec, table)
    rows, validation = refit_rows(spec, 150, table.source, labels.codes)
    assert len(rows) == 112 and np.bincount(labels.codes[validation]).min() >= 12
    np.testing.assert_allclose(final.preprocessor.center_, table.X.iloc[rows].to_numpy().mean(axis=0))
    tiny = _iris_spec({"train": {"epochs": 1, "validation_split": 0.995}})
    with pytest.raises(DataError, match=r"params.yaml:experiments.iris.train.validation_split=0.995 of the refit's "
                                        r"150 rows leaves no training row; hold out a share that leaves rows on both "
                                        r"sides"):
        refit(tiny, table, encode_labels(tiny, table))


def test_checkpoint_best_ends_the_refit_with_its_best_epochs_weights(project):
    """The books' ModelCheckpoint(save_best_only=True): the refit keeps the weights of its epoch with the lowest
    validation loss, never stopping early."""
    spec = _iris_spec({"train": {"epochs": 30, "learning_rate": 1.0, "checkpoint": "best", "validation_split": 0.3}})
    table = load_table(spec.dataset, root=project)
    fold = prepare_folds(spec, table, encode_labels(spec, table))[0]
    model, trained = fit_model(spec, fold.X_train, fold.y_train, validation=(fold.X_test, fold.y_test),
                               keep_best=True)
    losses = trained.history["val_loss"]
    assert len(losses) == 30 and losses.index(min(losses)) < 29  # a best epoch before the last, to go back to
    kept = model.evaluate(fold.X_test, fold.y_test, verbose=0, return_dict=True)["loss"]
    assert kept == pytest.approx(min(losses), rel=1e-4)
    assert trained.kept_epoch == losses.index(min(losses)) + 1


def test_run_json_says_which_epoch_the_refit_kept(project, tmp_path):
    """With `checkpoint: best` (or early stopping's restore_best_weights) the refit's model is one of its epochs,
    not its last, and early stopping may end it before train.epochs: run.json names both."""
    spec = _iris_spec({"train": {"epochs": 30, "learning_rate": 1.0, "checkpoint": "best", "validation_split": 0.3}})
    table = load_table(spec.dataset, root=project)
    labels = encode_labels(spec, table)
    final = refit(spec, table, labels)
    assert final.epochs == 30 and 1 <= final.kept_epoch < 30
    record = write_metrics(tmp_path, spec, cross_validate(spec, prepare_folds(spec, table, labels)), {}, {}, final)
    assert record["refit_epochs"] == {"trained": 30, "kept": final.kept_epoch}
    assert json.loads((tmp_path / "run.json").read_text())["refit_epochs"] == record["refit_epochs"]
    plain = _iris_spec({"train": {"epochs": 2}})
    assert "refit_epochs" not in write_metrics(tmp_path, plain, cross_validate(plain, prepare_folds(
        plain, table, labels)), {}, {}, refit(plain, table, labels))
    # Early stopping without restoring: the refit ends with the epoch it stopped at, fewer than train.epochs.
    stopping = _iris_spec({"train": {"epochs": 60, "validation_split": 0.3, "early_stopping": {"patience": 1}}})
    final = refit(stopping, table, labels)
    record = write_metrics(tmp_path, stopping, cross_validate(stopping, prepare_folds(stopping, table, labels)), {},
                           {}, final)
    assert final.kept_epoch is None and record["refit_epochs"] == {"trained": final.epochs, "kept": final.epochs}
    assert final.epochs < 60
