"""A local Ray started with logical GPUs, as `bench/gpu.py --fake-gpus` checks fractional-GPU sweeps on a machine
without one. A module of its own: a second Ray started in a process connected to tests/test_cluster.py's cluster
leaves that cluster unable to find its objects' owner once the process reconnects."""

from __future__ import annotations

import ray
from helpers import sweep_params

from kerasflow.flows.ray_cluster import connect
from kerasflow.flows.ray_driver import check_cluster
from kerasflow.tasks.config.schema import parse_params


@ray.remote(num_gpus=0.5)
def _gpu_ids() -> list:
    return ray.get_gpu_ids()


def test_a_local_ray_offering_logical_gpus_fits_half_gpu_trials(tmp_path, monkeypatch):
    """`connect(num_gpus=...)`, as bench/gpu.py --fake-gpus checks its fractional-GPU sweeps on a machine without a
    GPU: a sweep whose trials ask half a GPU fits it (without it, the sweep is refused: no GPU), and Ray hands two
    such tasks at once the one GPU it was told of. Trials themselves on a logical GPU, four to it, are
    tests/test_cluster.py's."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # a Ray started here, not one the environment names
    ray.shutdown()
    connect(num_gpus=1)
    try:
        assert ray.cluster_resources()["GPU"] == 1
        check_cluster("cancer", parse_params(sweep_params(gpu=0.5)).sweeps["cancer"], tmp_path / "tune")
        assert ray.get([_gpu_ids.remote(), _gpu_ids.remote()]) == [[0], [0]]
    finally:
        ray.shutdown()
