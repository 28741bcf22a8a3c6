"""A local Ray started with logical GPUs, as `bench/gpu.py --fake-gpus` checks fractional-GPU sweeps on a machine
without one. A module of its own: a second Ray started in a process connected to tests/test_cluster.py's cluster
leaves that cluster unable to find its objects' owner once the process reconnects."""

from __future__ import annotations

import ray
from helpers import read_trials, sweep_and_export, sweep_params

from kerasflow.flows.ray_cluster import connect


def test_a_local_cluster_offering_logical_gpus_runs_half_gpu_trials(cancer_project, monkeypatch):
    """`connect(num_gpus=...)`, as bench/gpu.py --fake-gpus checks its fractional-GPU sweeps on a machine without a
    GPU: trials that ask half a GPU run on the one it was told of (without it, the sweep is refused: no GPU)."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # a cluster started here, not one the environment names
    ray.shutdown()
    connect(num_gpus=1)
    try:
        assert ray.cluster_resources()["GPU"] == 1
        sweep_and_export(sweep_params(epochs=2, gpu=0.5), cancer_project / "tune")
    finally:
        ray.shutdown()
    rows = read_trials(cancer_project / "tune")
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
