"""Warm trainers: Ray actors that outlive a command with Keras imported, so that a sweep on a Ray kept running
(`RAY_ADDRESS`) trains from its trials' first seconds instead of after each trial process has imported Keras.

A trial (flows/ray_trial.py) leases an idle trainer on its own node, creating one when none is idle, and streams
its reports to Ray Tune (a Ray streaming generator), renewing the lease every few seconds while it does. The
trainers of one set-up share a name prefix (:func:`pool_prefix`: kerasflow's code and the workers' settings), so a
sweep never trains in a trainer of other code or another backend. A trainer asks for no CPU: the trial that leases
it holds the trial's CPUs, so Ray's count of the node stays right. Its training stops at its next report once the
lease has ended: released by the trial (done, stopped by Tune's scheduler, failed) or expired because the trial's
process died. A trainer idle for :data:`IDLE_SECONDS` ends itself; `ray stop` ends them all. Trials that ask for a
GPU keep their own processes (a trainer holds none).
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from kerasflow.flows.ray_cluster import code_files

NAMESPACE = "kerasflow"
LEASE_SECONDS = 30.0
"""A lease not renewed for this long has ended: its trial's process is gone."""
RENEW_SECONDS = 2.0
IDLE_SECONDS = 600.0
MAX_TRAINERS = 64
"""Per node and prefix; more than a node's concurrent trials is never needed."""

# tasks/sweep/trial.py's `Report`, named again here: that module imports Keras, which a trial's process and this
# module's importers must not.
Report = Callable[[dict[str, Any], Path | None], None]


class TrainingEnded(Exception):
    """Raised in a trainer's training thread, at a report, once the lease it trains for has ended."""


@ray.remote(num_cpus=0, concurrency_groups={"lease": 1})
class WarmTrainer:
    """Trains one trial at a time for the trial that holds its lease; the lease methods answer while it trains."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.holder: str | None = None
        self.renewed = self.used = time.monotonic()
        self.closing = False
        threading.Thread(target=self._end_when_idle, name="kerasflow-idle", daemon=True).start()

    def _held(self) -> bool:
        return self.holder is not None and time.monotonic() - self.renewed < LEASE_SECONDS

    def _holds(self, holder: str) -> bool:
        with self.lock:
            return self.holder == holder and self._held()

    @ray.method(concurrency_group="lease")
    def lease(self, holder: str) -> bool:
        """Lease the trainer to `holder` if no lease holds it; False if one does, or it is ending."""
        with self.lock:
            if self.closing or self._held():
                return False
            self.holder, self.renewed = holder, time.monotonic()
            return True

    @ray.method(concurrency_group="lease")
    def renew(self, holder: str) -> None:
        with self.lock:
            if self.holder == holder:
                self.renewed = time.monotonic()

    @ray.method(concurrency_group="lease")
    def release(self, holder: str) -> None:
        with self.lock:
            if self.holder == holder:
                self.holder, self.used = None, time.monotonic()

    @ray.method(num_returns="streaming")
    def train(self, holder: str, config: dict[str, Any], spec_json: str, sweep_json: str, data: tuple,
              history_root: str, work_dir: str, resume_from: str | None) -> Iterator[tuple[dict[str, Any], str | None]]:
        """The trial's training (:func:`kerasflow.flows.ray_driver.train_trial`), its reports yielded as
        `(metrics, checkpoint folder)` as they come, the metrics with this process's `trainer_pid`; checkpoints
        are written under `work_dir`, the trial's."""
        from kerasflow.flows.ray_driver import train_trial  # Keras, imported once per trainer

        reports: queue.Queue = queue.Queue()

        def report(metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
            if not self._holds(holder):
                raise TrainingEnded
            folder = None if checkpoint_dir is None else str(checkpoint_dir)
            reports.put(({**metrics, "trainer_pid": os.getpid()}, folder))

        def work() -> None:
            try:
                train_trial(config, spec_json, sweep_json, *data, history_root, Path(work_dir),
                            None if resume_from is None else Path(resume_from), report)
                reports.put(None)
            except BaseException as exc:  # handed to the generator, which raises it to the trial
                reports.put(exc)

        # Keras' callbacks call `report` from inside `fit`: training runs in a thread and the reports come out here.
        thread = threading.Thread(target=work, name="kerasflow-training")
        thread.start()
        try:
            while (item := reports.get()) is not None:
                if isinstance(item, TrainingEnded):
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            thread.join()

    def _end_when_idle(self) -> None:
        while True:
            time.sleep(min(30.0, IDLE_SECONDS))
            with self.lock:
                if not self._held() and time.monotonic() - max(self.used, self.renewed) > IDLE_SECONDS:
                    self.closing = True
                    break
        ray.kill(ray.get_runtime_context().current_actor)


def pool_prefix(worker_env: dict[str, str]) -> str:
    """The name prefix of the trainers that may train for this driver: kerasflow's code (:func:`code_files`, what
    a cluster's workers are sent) and the settings every worker gets (`worker_env`), hashed."""
    digest = hashlib.sha256()
    for name, path in code_files():
        digest.update(name.encode() + b"\0" + path.read_bytes())
    digest.update(repr(sorted(worker_env.items())).encode())
    return f"trainer-{digest.hexdigest()[:16]}"


def lease_trainer(prefix: str, holder: str) -> ray.actor.ActorHandle:
    """An idle trainer of `prefix` on this process's node, leased to `holder`: the first idle one, else a new one."""
    node = ray.get_runtime_context().get_node_id()
    for index in range(MAX_TRAINERS):
        trainer = WarmTrainer.options(
            name=f"{prefix}-{node[:16]}-{index}", namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote()
        try:
            if ray.get(trainer.lease.remote(holder)):
                return trainer
        except ray.exceptions.RayActorError:  # it ended itself, idle, as it was asked
            continue
    raise RuntimeError(f"no warm trainer of {prefix} could be leased on node {node} ({MAX_TRAINERS} are busy)")


def train_warm(prefix: str, config: dict[str, Any], spec_json: str, sweep_json: str, data: ray.ObjectRef,
               history_root: str, work_dir: Path, resume_from: Path | None, report: Report) -> None:
    """Train a trial's config in a leased warm trainer, passing each of its reports to `report` as it comes."""
    holder = uuid.uuid4().hex
    trainer = lease_trainer(prefix, holder)
    done = threading.Event()

    def renew() -> None:
        while not done.wait(RENEW_SECONDS):
            trainer.renew.remote(holder)

    threading.Thread(target=renew, name="kerasflow-lease", daemon=True).start()
    try:
        stream = trainer.train.remote(holder, config, spec_json, sweep_json, data, history_root, str(work_dir),
                                      None if resume_from is None else str(resume_from))
        for item in stream:
            metrics, checkpoint_dir = ray.get(item)
            report(metrics, None if checkpoint_dir is None else Path(checkpoint_dir))
    finally:
        done.set()
        trainer.release.remote(holder)
