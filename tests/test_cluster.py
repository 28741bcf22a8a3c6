"""Sweeps, folds and whole experiments on a two-node Ray cluster started on this machine with Ray's own
`cluster_utils`, its head offering a logical GPU (a local Ray offering them is tests/test_logical_gpus.py's)."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import ray
from helpers import assert_same_as_history, read_trials, sweep_and_export, sweep_params
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter
from ray.cluster_utils import Cluster

from kerasflow.flows.pipeline import pipeline_flow
from kerasflow.flows.ray_driver import check_cluster
from kerasflow.flows.ray_folds import spreads, train_folds
from kerasflow.tasks.config.errors import SweepError
from kerasflow.tasks.config.schema import parse_params
from kerasflow.tasks.data.table import load_table
from kerasflow.tasks.training.evaluate import cross_validate, encode_labels, folds_on_ray, prepare_folds, refit


@pytest.fixture(scope="module")
def two_nodes():
    """A head with 1 CPU and 1 logical GPU, and a node with 1 CPU: one for the module, as each start takes tens of
    seconds of the machine's CPU (a sweep or a fold spread leaves nothing running on it)."""
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture
def cluster(two_nodes):
    """This process connected to the two nodes, as a driver of its own for each test (a job on the cluster, as each
    `kerasflow` command is)."""
    ray.shutdown()
    ray.init(address=two_nodes.address, log_to_driver=False)
    yield two_nodes
    ray.shutdown()


def test_the_suites_ray_nodes_listen_on_loopback_only(cluster):
    """tests/conftest.py makes every Ray node of the suite a loopback one: no test reaches another address."""
    nodes = [node for node in ray.nodes() if node["Alive"]]
    assert len(nodes) == 2 and {node["NodeManagerAddress"] for node in nodes} == {"127.0.0.1"}
    assert cluster.address.split(":")[0] == "127.0.0.1"


def test_trials_run_on_both_nodes_and_local_storage_is_refused_unless_shared(cancer_project, cluster):
    with pytest.raises(SweepError, match="the cluster has 2 nodes but the sweep's storage .* is a local folder"):
        sweep_and_export(sweep_params(epochs=2), cancer_project / "tune")
    # TensorBoard's folder is refused as the storage is: trials on the other node would write their own.
    sweep = parse_params(sweep_params(epochs=2)).sweeps["cancer"]
    with pytest.raises(SweepError, match="the cluster has 2 nodes but tracking.tensorboard .* is a local folder"):
        check_cluster("cancer", sweep, "s3://bucket/sweep", tensorboard=cancer_project / "tb")
    # Long enough that one node's reused trial actor cannot run all four trials while the other node's first
    # actor is still starting (a loaded machine once took that long: every trial ran on one node).
    sweep_and_export(sweep_params(epochs=150, shared_storage=True), cancer_project / "tune",
                     tensorboard=cancer_project / "tb")
    rows = read_trials(cancer_project / "tune")
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    assert len({r["node"] for r in rows}) == 2
    for row in rows:  # logged by trials in processes of their own, on both nodes (which share this disk)
        assert_same_as_history(cancer_project / "tb" / row["config_id"],
                               cancer_project / "tune/history" / row["config_id"], 2, "accuracy")


def test_quarter_gpu_trials_pack_four_at_a_time_on_one_logical_gpu(cancer_project, cluster):
    # One config a trial (grouped, the four configs are two trials), each long enough to be still training when the
    # last of the four has started: a trial's start time is taken before it imports Keras, which four trials do at
    # once.
    raw = sweep_params(epochs=100, gpu=0.25, cpu=0.25, shared_storage=True, stack_configs=False)
    sweep_and_export(raw, cancer_project / "tune")
    rows = read_trials(cancer_project / "tune")
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows) and len({r["trial_id"] for r in rows}) == 4
    # Every trial ran on the GPU node, and all four were running at once.
    assert len({r["node"] for r in rows}) == 1
    intervals = [(float(r["started_at"]), float(r["started_at"]) + float(r["seconds"])) for r in rows]
    latest_start = max(start for start, _ in intervals)
    assert all(end > latest_start for _, end in intervals)


def _digits_cnn(parallel: str) -> dict:
    """The bundled 8x8 digits through a small CNN (which cannot stack), 4 folds as Ray tasks or in turn."""
    return {"experiments": {"digits": {
        "dataset": {"file": "data/digits.csv", "target": "digit", "task": "multiclass"},
        "preprocess": {"scale": "minmax"},
        "model": {"layers": [{"type": "reshape", "target_shape": [8, 8, 1]},
                             {"type": "conv2d", "filters": 4, "kernel_size": 3, "activation": "relu"},
                             {"type": "flatten"},
                             {"type": "dense", "units": 10, "activation": "softmax"}]},
        "train": {"optimizer": "adam", "learning_rate": 0.01, "epochs": 2, "batch_size": 32, "seed": 4},
        "evaluate": {"n_splits": 4, "stratify": True, "seed": 4, "parallel": parallel, "cpu": 1}}},
        "continued": {}, "sweeps": {}}


def test_a_cnns_folds_spread_over_both_nodes_with_the_scores_of_folds_trained_in_turn(bundled_data, tmp_path,
                                                                                      monkeypatch, cluster,
                                                                                      configured_server):
    """`evaluate.parallel: ray`: the folds of a model that cannot stack train as Ray tasks, one per fold; on a
    two-node cluster both nodes train folds, and the run's scores and histories are those of the folds trained one
    after another in this process. run.json's environment says where they trained, and on what devices."""
    monkeypatch.chdir(bundled_data.parent)
    spec = parse_params(_digits_cnn("ray")).experiments["digits"]
    table = load_table(spec.dataset)
    folds = prepare_folds(spec, table, encode_labels(spec, table))
    auto = spec.with_overrides({"evaluate.parallel": "auto"})
    assert folds_on_ray(spec) and not folds_on_ray(auto)  # 'auto' spreads only over the cluster RAY_ADDRESS names
    monkeypatch.setenv("RAY_ADDRESS", cluster.address)
    assert folds_on_ray(auto) and spreads(auto)  # two nodes: worth it
    monkeypatch.delenv("RAY_ADDRESS")
    done = []
    trained = train_folds(spec, folds, on_done=done.append)
    assert sorted(done) == [0, 1, 2, 3] and len({place.node for _, place in trained}) == 2  # both nodes trained
    in_turn = cross_validate(spec, folds)  # the sequential path, in this process
    assert [result.score for result, _ in trained] == in_turn.scores
    for (result, _), alone in zip(trained, in_turn.folds):
        np.testing.assert_allclose(result.history["loss"], alone.history["loss"], rtol=1e-4)
        np.testing.assert_array_equal(result.y_pred, alone.y_pred)

    # The pipeline sends them to Ray, and writes what they return as it writes folds trained here.
    summaries = pipeline_flow({"digits": spec.with_overrides({"evaluate.refit": False})}, tmp_path / "results",
                              tensorboard=tmp_path / "tb")
    assert summaries["digits"]["folds"] == in_turn.scores and not summaries["digits"]["stacked"]
    assert sorted(p.name for p in (tmp_path / "results/digits/history/plots/metrics").iterdir()) == [
        "fold_00", "fold_01", "fold_02", "fold_03"]
    (events,) = (tmp_path / "tb/digits").iterdir()  # the histories that came back, as TensorBoard scalars too
    assert_same_as_history(events, tmp_path / "results/digits/history", 4, "accuracy")
    environment = json.loads((tmp_path / "results/digits/run.json").read_text())["environment"]
    devices = {device for _, place in trained for device in place.devices}
    assert environment["ray_tasks"] == "4 on 2 node(s)" and environment["devices"] == ", ".join(sorted(devices))


def test_experiments_that_train_on_the_cluster_run_side_by_side_each_as_alone(bundled_data, tmp_path, monkeypatch,
                                                                              cluster, configured_server):
    """`kerasflow run A B` where both train as Ray tasks: the two experiments' flows run at the same time (the
    cluster trains both experiments' folds at once), and each writes the fold scores and the refitted model it
    gets trained alone, in turn, in this process."""
    monkeypatch.chdir(bundled_data.parent)
    digits = parse_params(_digits_cnn("ray")).experiments["digits"].with_overrides({"evaluate.n_splits": 2})
    experiments = {"digits": digits,
                   "digits_wider": digits.with_overrides({"model.layers[1].filters": 6, "train.seed": 5})}
    state = pipeline_flow(experiments, tmp_path / "results", return_state=True)
    summaries = state.result()
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [state.state_details.flow_run_id]}))
    spans = [(run.start_time, run.end_time) for run in runs if run.task_key.startswith("experiment_on_cluster")]
    assert len(spans) == 2 and max(start for start, _ in spans) < min(end for _, end in spans)  # side by side
    for name, spec in experiments.items():
        table = load_table(spec.dataset)
        labels = encode_labels(spec, table)
        assert summaries[name]["folds"] == cross_validate(spec, prepare_folds(spec, table, labels)).scores
        alone = refit(spec, table, labels).model.get_weights()
        saved = keras.saving.load_model(tmp_path / "results" / name / "model" / "model.keras").get_weights()
        for here, there in zip(alone, saved, strict=True):
            np.testing.assert_allclose(there, here, rtol=1e-5, atol=1e-7)
