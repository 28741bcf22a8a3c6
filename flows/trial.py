"""What a Ray Tune trial's process runs: one trial of a sweep (see `flows/tuner.py`).

Ray pickles the trainable by reference, so every fresh trial process imports the module that defines it. This
one imports Ray and kerasflow's tasks only, not Prefect and the flows' reporting: that saves each new worker
about 2 s of imports (8.6 s for `flows.sweep` against 6.5 s here, TensorFlow's 5.7 s included).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
from ray import tune

from tasks import evaluate
from tasks.data import Table
from tasks.spec import ExperimentSpec, SearchSpec
from tasks.tune import run_trial, trial_configs


def run_trial_process(config: dict[str, Any], spec_json: str, sweep_json: str, table: Table,
                      labels: evaluate.Encoded) -> None:
    """One trial: the experiment with this config's overrides (or each of a stacked group's), reporting to Ray
    Tune every epoch."""
    base = ExperimentSpec.model_validate_json(spec_json)
    specs = [base.with_overrides(overrides) for overrides in trial_configs(config)]
    sweep = SearchSpec.model_validate_json(sweep_json)
    node = ray.get_runtime_context().get_node_id()
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
    with tempfile.TemporaryDirectory(prefix="kerasflow-trial-") as work_dir:
        if checkpoint is None:
            run_trial(specs, sweep, table, labels, report, Path(work_dir))
        else:
            with checkpoint.as_directory() as resume_from:
                run_trial(specs, sweep, table, labels, report, Path(work_dir), resume_from=Path(resume_from))
