"""Epochs dealt by kerasflow: a new order every epoch from the seed, partial batches trained as Keras trains
them, held-out scores as Keras' `evaluate` gives them."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kerasflow.tasks.training.epoch_plan import plan_epochs, slot_first
from kerasflow.tasks.training.feed import Layout, as_arrays, in_batches
from kerasflow.tasks.training.fit import fit_epochs
from kerasflow.tasks.training.scoring import ONE_BATCH, HeldOut, SlotMean


def test_every_epoch_deals_each_row_once_in_a_new_order():
    plan = plan_epochs([23, 22], seeds=[7, 8], epochs=4, batch_size=5)
    assert plan.steps == 5 and plan.index.shape == (4, 25, 2)
    for j, n_rows in enumerate([23, 22]):
        for epoch in range(4):
            assert sorted(plan.index[epoch, :n_rows, j].tolist()) == list(range(n_rows))
            assert plan.weight[epoch, n_rows:, j].tolist() == [0.0] * (25 - n_rows)
        orders = {tuple(plan.index[epoch, :n_rows, j]) for epoch in range(4)}
        assert len(orders) == 4  # Keras' TensorFlow pipeline deals one order every epoch once a seed is set


def test_the_plan_is_drawn_from_the_seeds_alone():
    """A rerun, or a run resumed at epoch e, deals epoch e as the uninterrupted run did."""
    first = plan_epochs([30], seeds=[3], epochs=5, batch_size=4)
    again = plan_epochs([30], seeds=[3], epochs=5, batch_size=4)
    np.testing.assert_array_equal(first.index, again.index)
    other = plan_epochs([30], seeds=[4], epochs=5, batch_size=4)
    assert not np.array_equal(first.index, other.index)
    in_order = plan_epochs([6], seeds=[3], epochs=2, batch_size=4, shuffle=False)
    assert in_order.index[:, :6, 0].tolist() == [list(range(6))] * 2


def _regression(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(13, 3)).astype("float32")
    return X, (X @ np.array([[1.0], [-2.0], [0.5]], dtype="float32") + 0.1).astype("float32")


def _model(X: np.ndarray, penalty: keras.regularizers.Regularizer | None = None) -> keras.Model:
    glorot = keras.initializers.GlorotUniform
    model = keras.Sequential([keras.Input((X.shape[1],)),
                              keras.layers.Dense(4, activation="tanh", kernel_initializer=glorot(1),
                                                 kernel_regularizer=penalty),
                              keras.layers.Dense(1, kernel_initializer=glorot(2))])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mean_squared_error")
    return model


def test_a_padded_partial_batch_trains_as_keras_trains_it_unpadded():
    """13 rows in batches of 5: the last batch holds 3 real rows and 2 padding rows, weighted so the step's
    gradient is the 3 rows' mean, as Keras' own unpadded partial batch gives it."""
    X, y = _regression()
    ours, keras_own = _model(X), _model(X)
    fit_epochs(ours, X, y, plan_epochs([13], [0], epochs=3, batch_size=5, shuffle=False), slotted=False)
    keras_own.fit(X, y, batch_size=5, epochs=3, shuffle=False, verbose=0)
    for mine, theirs in zip(ours.weights, keras_own.weights):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(mine), keras.ops.convert_to_numpy(theirs),
                                   rtol=1e-5, atol=1e-6)


def test_held_out_scores_are_keras_evaluate_at_each_epochs_end():
    X, y = _regression()
    X_test, y_test = _regression(seed=1)
    model = _model(X)
    scores = {"loss": (keras.losses.mean_squared_error, None), "mae": (keras.metrics.mean_absolute_error, None),
              "rmse": (keras.metrics.mean_squared_error, "sqrt")}
    trained = fit_epochs(model, X, y, plan_epochs([13], [0], epochs=4, batch_size=5), slotted=False,
                         held_out=HeldOut(X_test, y_test, scores))
    history = trained.history
    assert len(history["loss"]) == len(history["val_loss"]) == len(history["val_mae"]) == 4
    final = model.evaluate(X_test, y_test, verbose=0, return_dict=True)["loss"]
    assert np.isclose(history["val_loss"][-1], final, rtol=1e-5)
    predictions = keras.ops.convert_to_numpy(model.predict(X_test, verbose=0))
    error = predictions - y_test
    assert np.isclose(history["val_mae"][-1], np.abs(error).mean(), rtol=1e-5)
    assert np.isclose(history["val_rmse"][-1], np.sqrt(final), rtol=1e-5)
    # The last epoch's scoring kept its predictions: the trained model's, with no prediction of their own.
    assert trained.predictions.shape == predictions.shape
    np.testing.assert_array_equal(trained.predictions, predictions)


@pytest.mark.parametrize("penalty", [None, 0.1], ids=["plain", "l2-penalty"])
def test_held_out_rows_of_more_than_one_batch_are_scored_by_keras_own_validation_alike(monkeypatch, penalty):
    """One model's held-out rows too many for one call go through Keras' `validation_data` instead: the same
    per-epoch scores under the same names, from the compiled loss and metrics; the loss with the weight penalties
    either way, as Keras' has them."""
    X, y = _regression()
    X_test, y_test = _regression(seed=1)
    scores = {"loss": (keras.losses.mean_squared_error, None), "mae": (keras.metrics.mean_absolute_error, None)}
    plan = plan_epochs([13], [0], epochs=4, batch_size=5)
    histories = []
    for one_batch in (ONE_BATCH, 1):  # 1: every held-out set is "too large", Keras scores it
        monkeypatch.setattr("kerasflow.tasks.training.fit.ONE_BATCH", one_batch)
        model = _model(X, None if penalty is None else keras.regularizers.L2(penalty))
        model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mean_squared_error",
                      weighted_metrics=[SlotMean(keras.metrics.mean_absolute_error, name="mae")])
        histories.append(fit_epochs(model, X, y, plan, slotted=False,
                                    held_out=HeldOut(X_test, y_test, scores)).history)
    ours, keras_own = histories
    for key in ("val_loss", "val_mae"):
        assert len(ours[key]) == 4
        np.testing.assert_allclose(ours[key], keras_own[key], rtol=1e-5)


def test_a_penalty_on_a_layers_outputs_is_in_the_held_out_loss_as_keras_evaluate_has_it():
    """An activity penalty depends on the rows scored, so Keras' own evaluation scores such a model's held-out
    rows, however few: its val_loss is `evaluate`'s, penalty included, as it would be with more rows."""
    X, y = _regression()
    X_test, y_test = _regression(seed=1)
    model = keras.Sequential([keras.Input((X.shape[1],)),
                              keras.layers.Dense(4, activation="tanh", activity_regularizer=keras.regularizers.L2(0.5),
                                                 kernel_initializer=keras.initializers.GlorotUniform(1)),
                              keras.layers.Dense(1, kernel_initializer=keras.initializers.GlorotUniform(2))])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mean_squared_error",
                  weighted_metrics=[SlotMean(keras.metrics.mean_absolute_error, name="mae")])
    scores = {"loss": (keras.losses.mean_squared_error, None), "mae": (keras.metrics.mean_absolute_error, None)}
    history = fit_epochs(model, X, y, plan_epochs([13], [0], epochs=3, batch_size=5), slotted=False,
                         held_out=HeldOut(X_test, y_test, scores)).history
    final = model.evaluate(X_test, y_test, verbose=0, return_dict=True)["loss"]
    assert np.isclose(history["val_loss"][-1], final, rtol=1e-5)
    unpenalised = float(np.mean(keras.metrics.mean_squared_error(y_test, model.predict(X_test, verbose=0))))
    assert history["val_loss"][-1] > unpenalised + 1e-3  # the penalty is in it


def test_a_long_training_fed_in_several_fits_is_the_training_fed_in_one(monkeypatch):
    X, y = _regression()
    plan = plan_epochs([13], [0], epochs=4, batch_size=5)
    whole, chunked = _model(X), _model(X)
    history = fit_epochs(whole, X, y, plan, slotted=False).history
    monkeypatch.setattr("kerasflow.tasks.training.fit.LAYOUT_BYTES", 1)  # one epoch per `fit` call
    chunked_history = fit_epochs(chunked, X, y, plan, slotted=False).history
    np.testing.assert_allclose(chunked_history["loss"], history["loss"], rtol=1e-6)
    for mine, theirs in zip(chunked.weights, whole.weights):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(mine), keras.ops.convert_to_numpy(theirs), rtol=1e-6)


def test_a_run_resumed_at_its_last_epoch_trains_nothing_but_its_callbacks_still_run():
    """A sweep trial restored from its final checkpoint: `RestoreState` loads the weights in `on_train_begin`."""

    class Began(keras.callbacks.Callback):
        began = epochs = 0

        def on_train_begin(self, logs=None):
            self.began += 1

        def on_epoch_end(self, epoch, logs=None):
            self.epochs += 1

    X, y = _regression()
    model, began = _model(X), Began()
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.weights]
    trained = fit_epochs(model, X, y, plan_epochs([13], [0], epochs=3, batch_size=5), slotted=False,
                         held_out=HeldOut(X, y, {"loss": (keras.losses.mean_squared_error, None)}),
                         callbacks=[began], initial_epoch=3)
    assert trained.history == {} and began.began == 1 and began.epochs == 0
    assert trained.predictions is None  # nothing scored: the caller asks the model
    for old, new in zip(before, model.weights):
        np.testing.assert_array_equal(old, keras.ops.convert_to_numpy(new))


def test_a_layout_lays_out_each_slots_rows_slot_first_in_its_reused_buffer():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(3, 6, 2)).astype("float32")  # 3 slots of 6 rows
    layout = Layout(table, places=4, slots=3, batch_size=2)
    for n_places in (4, 2):  # a shorter last chunk reuses the buffer's first rows
        index = rng.integers(0, 6, size=(n_places, 3))
        laid = layout.take(index)
        dealt = table[np.arange(3), index]  # place p of slot j: slot j's row index[p, j]
        assert laid.shape == (n_places // 2 * 3, 2, 2)  # each batch of 2 places as 3 runs, one per slot
        np.testing.assert_array_equal(laid, slot_first(dealt, batch_size=2))
        assert np.shares_memory(laid, layout.buffer)
    single = Layout(table[0], places=4, slots=None, batch_size=2)
    np.testing.assert_array_equal(single.take(np.array([[5], [0], [5]])), table[0, [5, 0, 5]])


def test_kerasflows_feed_trains_as_keras_own_pipeline_fed_the_same_arrays(monkeypatch):
    """On TensorFlow `fit` is fed a dataset of whole batches (`in_batches`), not the arrays Keras would build its own
    pipeline from: the same batches in the same order, so the same training, bit for bit."""
    X, y = _regression()
    plan = plan_epochs([13], [0], epochs=4, batch_size=5)
    ours, keras_own = _model(X), _model(X)
    history = fit_epochs(ours, X, y, plan, slotted=False).history
    monkeypatch.setattr("kerasflow.tasks.training.fit.in_batches", as_arrays)
    assert fit_epochs(keras_own, X, y, plan, slotted=False).history == history
    for mine, theirs in zip(ours.weights, keras_own.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(mine), keras.ops.convert_to_numpy(theirs))


def test_on_tensorflow_the_feed_is_a_dataset_of_the_laid_out_batches_in_order():
    """A copy of them: a `Layout` rewrites its buffer for the next `fit` call while this call's dataset exists."""
    X = np.arange(12, dtype="float32").reshape(6, 2)
    y, weight = X[:, :1] * 10, np.ones(6, dtype="float32")
    laid = X.copy()
    fed = in_batches(laid, y, weight, batch_size=3)
    if keras.backend.backend() != "tensorflow":
        assert fed["x"] is laid and fed["y"] is y and fed["sample_weight"] is weight and fed["batch_size"] == 3
        return
    laid[:] = -1.0
    batches = [tuple(np.asarray(part) for part in batch) for batch in fed["x"]]
    assert len(batches) == 2
    for b, (X_b, y_b, w_b) in enumerate(batches):
        np.testing.assert_array_equal(X_b, X[3 * b:3 * b + 3])
        np.testing.assert_array_equal(y_b, y[3 * b:3 * b + 3])
        np.testing.assert_array_equal(w_b, weight[3 * b:3 * b + 3])
