"""A local Ray started with logical GPUs, as `bench/gpu.py --fake-gpus` checks fractional-GPU sweeps on a machine
without one. A module of its own: a second Ray started in a process connected to tests/test_cluster.py's cluster
leaves that cluster unable to find its objects' owner once the process reconnects."""

from __future__ import annotations

import time

import pytest
import ray
from helpers import sweep_params

from kerasflow.flows.ray_cluster import connect
from kerasflow.flows.ray_driver import check_cluster
from kerasflow.tasks.config.errors import SweepError
from kerasflow.tasks.config.schema import parse_params


@ray.remote(num_cpus=0)
class _Meeting:
    """Where two tasks say they have started; each waits for the other, so both hold their GPU share at once."""

    def __init__(self) -> None:
        self.arrived = 0

    def arrive(self) -> None:
        self.arrived += 1

    def everyone(self) -> bool:
        return self.arrived == 2


@ray.remote(num_cpus=0, num_gpus=0.5)
def _gpu_ids_once_both_run(meeting) -> list:
    ray.get(meeting.arrive.remote())
    deadline = time.monotonic() + 60
    while not ray.get(meeting.everyone.remote()):
        assert time.monotonic() < deadline, "the other half-GPU task never ran beside this one"
        time.sleep(0.05)
    return ray.get_gpu_ids()


def test_a_local_ray_offering_logical_gpus_fits_half_gpu_trials(tmp_path, monkeypatch):
    """`connect(num_gpus=...)`, as bench/gpu.py --fake-gpus checks its fractional-GPU sweeps on a machine without a
    GPU: a sweep whose trials ask half a GPU fits it (one asking two is refused), and Ray hands two half-GPU tasks
    running at once the one GPU it was told of. Trials themselves on a logical GPU, four to it, are
    tests/test_cluster.py's."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # a Ray started here, not one the environment names
    ray.shutdown()
    connect(num_gpus=1)
    try:
        assert ray.cluster_resources()["GPU"] == 1
        check_cluster("cancer", parse_params(sweep_params(gpu=0.5)).sweeps["cancer"], tmp_path / "tune")
        with pytest.raises(SweepError, match="each trial asks for cpu=1, gpu=2 but no node of the cluster has"):
            check_cluster("cancer", parse_params(sweep_params(gpu=2)).sweeps["cancer"], tmp_path / "tune")
        meeting = _Meeting.remote()
        first, second = ray.get([_gpu_ids_once_both_run.remote(meeting), _gpu_ids_once_both_run.remote(meeting)])
        assert len(first) == 1 and first == second  # the one GPU, shared
    finally:
        ray.shutdown()
