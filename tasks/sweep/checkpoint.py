"""A trial's checkpoint: weights, optimizer state and the epoch reached.

Keras saves a compiled model's optimizer variables with its weights (`save_weights`) and loads them back into an
optimizer that has its variables already: :func:`restore_state` builds it first (an optimizer not built yet has
none, and Keras would skip the saved ones with a warning)."""

from __future__ import annotations

import json
from pathlib import Path

import keras

from kerasflow.tasks.outputs.atomic import atomic_path

STATE_FILE = "state.json"


WEIGHTS_FILE = "model.weights.h5"


class RestoreState(keras.callbacks.Callback):
    """Loads a checkpoint's weights and optimizer state before training goes on from its epoch."""

    def __init__(self, checkpoint_dir: Path) -> None:
        super().__init__()
        self.checkpoint_dir, self.restored = checkpoint_dir, False

    def on_train_begin(self, logs: dict | None = None) -> None:
        # A long training is fed to Keras in several `fit` calls (tasks/training/fit.py): restore before the first.
        if not self.restored:
            restore_state(self.model, self.checkpoint_dir)
            self.restored = True


def save_state(model: keras.Model, directory: Path, epoch: int, extra: dict | None = None) -> Path:
    """Weights and optimizer variables (one Keras weights file) and the epoch reached: enough to go on exactly where
    training stopped; with `extra`, what else the trial must carry on from (in the state file, beside the epoch:
    :func:`saved_state`)."""
    with atomic_path(directory) as tmp:
        tmp.mkdir()
        model.save_weights(tmp / WEIGHTS_FILE)
        (tmp / STATE_FILE).write_text(json.dumps({**(extra or {}), "epoch": epoch}))
    return directory


def restore_state(model: keras.Model, directory: Path) -> None:
    """Load what :func:`save_state` wrote into a model built and compiled the same way (its epoch:
    :func:`checkpoint_epoch`)."""
    model.optimizer.build(model.trainable_variables)
    model.load_weights(directory / WEIGHTS_FILE)


def saved_state(directory: Path) -> dict:
    """The state file of a checkpoint :func:`save_state` wrote: the epoch, and its `extra`."""
    return json.loads((directory / STATE_FILE).read_text())


def checkpoint_epoch(directory: Path) -> int:
    return int(saved_state(directory)["epoch"])
