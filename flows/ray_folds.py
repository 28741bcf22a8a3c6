"""Folds of a model that cannot stack into one program (a CNN, an LSTM), and its refit on all rows, trained as Ray
tasks: each on a node of the cluster Ray is connected to, with the resources `evaluate.cpu` and `evaluate.gpu` ask
for (fractions share a GPU). `flows/pipeline.py` sends them here when `evaluate.parallel` says so
(:func:`kerasflow.tasks.training.evaluate.folds_on_ray`) and :func:`spreads` finds the cluster worth it; several
such experiments of one `kerasflow run` then train side by side.

Each task trains as the sequential path does (:func:`kerasflow.tasks.training.train.fit_fold`, seeded by the fold's
index; :func:`kerasflow.tasks.training.evaluate.refit`), so the scores and the model are the same; what a task
returns (history, held-out predictions, the refitted model, where it trained) comes back to the driver, which
writes the results, so no node needs the driver's folders. Imports no Prefect.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import keras
import ray

from kerasflow.flows.ray_cluster import alive_nodes, connect, unfit_nodes
from kerasflow.tasks.config.errors import ParamsError
from kerasflow.tasks.config.schema import ExperimentSpec
from kerasflow.tasks.data.table import Table
from kerasflow.tasks.outputs.results import inference_model
from kerasflow.tasks.runtime.keras_threads import keras_turn
from kerasflow.tasks.training.evaluate import Encoded, FinalModel, Placement, refit
from kerasflow.tasks.training.start import Start
from kerasflow.tasks.training.train import FoldData, FoldResult, fit_fold


def spreads(spec: ExperimentSpec) -> bool:
    """Whether the folds go to Ray: always with `evaluate.parallel: ray`; with 'auto' only when the cluster
    `RAY_ADDRESS` names has more than one node or a GPU. One node without a GPU (a Ray started on this machine
    to reuse between commands) gains nothing from tasks: they share the cores one process already uses
    (bench/fold_tasks.py)."""
    if spec.evaluate.parallel == "ray":
        return True
    connect()
    return len(alive_nodes()) > 1 or ray.cluster_resources().get("GPU", 0) > 0


def train_folds(spec: ExperimentSpec, folds: list[FoldData],
                on_done: Callable[[int], None] = lambda index: None) -> list[tuple[FoldResult, Placement]]:
    """Every fold's result and where it trained, in fold order; `on_done(index)` as each ends.

    A task that asks for more than any node has would wait forever: :func:`check_resources` refuses it first."""
    check_resources(spec)
    train = ray.remote(_train_fold).options(num_cpus=spec.evaluate.cpu, num_gpus=spec.evaluate.gpu,
                                             max_retries=2)
    spec_json = spec.model_dump_json()
    pending = {train.remote(spec_json, fold, index): index for index, fold in enumerate(folds)}
    done: dict[int, tuple[FoldResult, Placement]] = {}
    while pending:
        (ready,), _ = ray.wait(list(pending), num_returns=1)
        index = pending.pop(ready)
        done[index] = ray.get(ready)
        on_done(index)
    return [done[index] for index in range(len(folds))]


def _train_fold(spec_json: str, fold: FoldData, index: int) -> tuple[FoldResult, Placement]:
    return fit_fold(ExperimentSpec.model_validate_json(spec_json), fold, index), _placement()


def _placement() -> Placement:
    """Where this task runs: its node, and the devices Keras' backend sees there."""
    return Placement(ray.get_runtime_context().get_node_id(), tuple(keras.distribution.list_devices()))


def refit_on_ray(spec: ExperimentSpec, table: Table, labels: Encoded, start: Start | None = None) -> FinalModel:
    """The refit on all rows (:func:`kerasflow.tasks.training.evaluate.refit`) as one Ray task with the folds'
    resources; the model comes back to the driver as its uncompiled inference twin
    (:func:`kerasflow.tasks.outputs.results.inference_model`: Keras pickles a model whole, compiled metrics
    included, and kerasflow's are not Keras' to load)."""
    check_resources(spec)
    task = ray.remote(_refit).options(num_cpus=spec.evaluate.cpu, num_gpus=spec.evaluate.gpu, max_retries=2)
    done = task.remote(spec.model_dump_json(), table, labels, start)
    ray.wait([done], num_returns=1)
    with keras_turn():  # unpickling the model builds it here, where other threads may be in Keras
        return ray.get(done)


def _refit(spec_json: str, table: Table, labels: Encoded, start: Start | None) -> FinalModel:
    spec = ExperimentSpec.model_validate_json(spec_json)
    final = refit(spec, table, labels, start=start)
    return dataclasses.replace(final, model=inference_model(spec, final), placement=_placement())


def check_resources(spec: ExperimentSpec) -> None:
    """Refuse, in one line naming the nodes, fold tasks that ask for more CPU or GPU than any node of the cluster
    Ray is connected to has (they would wait forever); joins or starts Ray first."""
    connect()
    cpu, gpu = spec.evaluate.cpu, spec.evaluate.gpu
    if (have := unfit_nodes(cpu, gpu)) is not None:
        raise ParamsError(f"{spec.evaluate.key('cpu')}={cpu:g}, {spec.evaluate.key('gpu')}={gpu:g}: each fold's "
                          f"Ray task asks for that much but no node of the cluster has it ({have})")
