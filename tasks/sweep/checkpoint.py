"""A trial's checkpoint: weights, optimizer state and the epoch reached."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np

from kerasflow.tasks.outputs.atomic import atomic_path

STATE_FILE = "state.json"


WEIGHTS_FILE = "model.weights.h5"


OPTIMIZER_FILE = "optimizer.npz"


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
    """Weights, optimizer variables and the epoch reached: enough to go on exactly where training stopped; with
    `extra`, what else the trial must carry on from (in the state file, beside the epoch: :func:`saved_state`)."""
    with atomic_path(directory) as tmp:
        tmp.mkdir()
        model.save_weights(tmp / WEIGHTS_FILE)
        optimizer = {f"v{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model.optimizer.variables)}
        np.savez(tmp / OPTIMIZER_FILE, **optimizer)
        (tmp / STATE_FILE).write_text(json.dumps({**(extra or {}), "epoch": epoch}))
    return directory


def restore_state(model: keras.Model, directory: Path) -> int:
    """Load what :func:`save_state` wrote into a model built and compiled the same way; return the epoch."""
    model.load_weights(directory / WEIGHTS_FILE)
    model.optimizer.build(model.trainable_variables)
    saved = np.load(directory / OPTIMIZER_FILE)
    for i, variable in enumerate(model.optimizer.variables):
        variable.assign(saved[f"v{i}"])
    return checkpoint_epoch(directory)


def saved_state(directory: Path) -> dict:
    """The state file of a checkpoint :func:`save_state` wrote: the epoch, and its `extra`."""
    return json.loads((directory / STATE_FILE).read_text())


def checkpoint_epoch(directory: Path) -> int:
    return int(saved_state(directory)["epoch"])
