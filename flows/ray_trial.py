"""The trainable each Ray Tune trial's process runs. Ray pickles it by reference, so every trial process imports
this module, and it imports no Keras: a trial that trains in a warm trainer (flows/warm_trainers.py) never pays
for Keras' import; one that trains itself imports it when it starts training (flows/ray_driver.py).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
from ray import tune

from kerasflow.flows.warm_trainers import train_warm


def run_trial_process(config: dict[str, Any], spec_json: str, sweep_json: str, data: list[ray.ObjectRef],
                      history_root: str, tensorboard_root: str | None, warm_prefix: str | None) -> None:
    """One trial: the experiment with this config's overrides (or each of a stacked group's), reporting to Ray
    Tune every epoch and logging each config's folds under `history_root` (and `tensorboard_root`, if given).
    `data` holds the reference to the table and its encoded labels (handed on to a warm trainer as it is); with
    `warm_prefix`, a warm trainer of that prefix trains it."""
    node = ray.get_runtime_context().get_node_id()
    trial_id = tune.get_context().get_trial_id()
    started_at, started = time.time(), time.perf_counter()

    def report(metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        metrics = {**metrics, "node": node, "started_at": started_at,
                   "trial_seconds": round(time.perf_counter() - started, 2)}
        if checkpoint_dir is None:
            tune.report(metrics)
            return
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(checkpoint_dir)))
        shutil.rmtree(checkpoint_dir, ignore_errors=True)  # Ray has copied it into the sweep's storage

    checkpoint = tune.get_checkpoint()
    with tempfile.TemporaryDirectory(prefix="kerasflow-trial-") as work_dir, \
            (checkpoint.as_directory() if checkpoint is not None else contextlib.nullcontext()) as resume_from:
        resume = None if resume_from is None else Path(resume_from)
        if warm_prefix is not None:
            train_warm(warm_prefix, config, spec_json, sweep_json, data[0], history_root, tensorboard_root, trial_id,
                       Path(work_dir), resume, report)
        else:
            from kerasflow.flows.ray_driver import train_trial  # imports Keras

            train_trial(config, spec_json, sweep_json, *ray.get(data[0]), history_root, tensorboard_root, trial_id,
                        Path(work_dir), resume, report)
