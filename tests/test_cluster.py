"""Sweeps on multi-node Ray clusters started on this machine with Ray's own `cluster_utils`."""

from __future__ import annotations

import csv

import pytest
import ray
from ray.cluster_utils import Cluster

from flows.pipeline import load_data
from flows.sweep import SweepError, export_best, run_sweep
from tasks.spec import parse_params
from test_sweep import cancer_project, sweep_params  # noqa: F401  (fixture and params shared with the sweep tests)


@pytest.fixture
def cluster():
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 1})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def _sweep(raw: dict, out):
    params = parse_params(raw)
    spec, sweep = params.experiments["cancer"], params.sweeps["cancer"]
    table, labels = load_data.fn("cancer", spec)
    grid = run_sweep.fn("cancer", spec, sweep, table, labels, out, False)
    return export_best.fn("cancer", spec, sweep, grid, table, labels, out)


def _rows(out) -> list[dict]:
    with open(out / "trials.csv") as handle:
        return list(csv.DictReader(handle))


def test_trials_run_on_both_nodes_and_local_storage_is_refused_unless_shared(cancer_project, cluster):
    with pytest.raises(SweepError, match="the cluster has 2 nodes but the sweep's storage .* is a local folder"):
        _sweep(sweep_params(epochs=2), cancer_project / "tune")
    _sweep(sweep_params(epochs=2, shared_storage=True), cancer_project / "tune")
    rows = _rows(cancer_project / "tune")
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    assert len({r["node"] for r in rows}) == 2


def test_quarter_gpu_trials_pack_four_at_a_time_on_one_logical_gpu(cancer_project, cluster):
    raw = sweep_params(epochs=30, gpu=0.25, cpu=0.25, shared_storage=True)
    _sweep(raw, cancer_project / "tune")
    rows = _rows(cancer_project / "tune")
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    # Every trial ran on the GPU node, and all four were running at once.
    assert len({r["node"] for r in rows}) == 1
    intervals = [(float(r["started_at"]), float(r["started_at"]) + float(r["seconds"])) for r in rows]
    latest_start = max(start for start, _ in intervals)
    assert all(end > latest_start for _, end in intervals)
