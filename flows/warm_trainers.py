"""Warm trainers: Ray actors that outlive a command with Keras imported, so that a sweep on a Ray kept running
(`RAY_ADDRESS`) trains from its trials' first seconds instead of after each trial process has imported Keras.

A trial (flows/ray_trial.py) leases an idle trainer on its own node, creating one when none is idle, and streams
its reports to Ray Tune (a Ray streaming generator), renewing the lease every few seconds while it does. The
trainers of one set-up share a name prefix (:func:`pool_prefix`: kerasflow's code and the workers' settings), so a
sweep never trains in a trainer of other code or another backend. A trainer asks for no CPU: the trial that leases
it holds the trial's CPUs, so Ray's count of the node stays right.

The trainer logs and reports an epoch only once the trial has handed the previous report to Ray Tune and Tune
has asked for more, as a trial that trains in its own process does (`tune.report` returns only then): so a trial
Tune's scheduler stops logs no epoch past its last report. The lease ends when the trial releases it (done, failed,
stopped by Tune's scheduler), when the trial's process ends without releasing it (killed: the trainer watches it
every second, on the same node), or when it renews nothing for :data:`LEASE_SECONDS`. The training then stops at
its next epoch's end, before logging or reporting it, and the trainer waits for the next lease; a training whose
epochs are too long to stop within :data:`ABANDONED_SECONDS` ends with its trainer. So no CPU is used and no
history written for a trial gone for more than about a second, and its retry trains from its checkpoint. A
trainer idle for :data:`IDLE_SECONDS` ends itself; `ray stop` ends them all. Trials that ask for a GPU keep their
own processes (a trainer holds none).
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
from kerasflow.tasks.runtime.processes import running

NAMESPACE = "kerasflow"
LEASE_SECONDS = 30.0
"""A lease not renewed for this long has ended: its trial hangs, or is gone without the trainer seeing it end."""
RENEW_SECONDS = 2.0
WATCH_SECONDS = 1.0
"""How often a trainer checks its lease's trial and its own idle time."""
ABANDONED_SECONDS = 10.0
"""A training still running this long after its lease ended ends with its trainer."""
IDLE_SECONDS = 600.0
MAX_TRAINERS = 64
"""Per node and prefix; more than a node's concurrent trials is never needed."""

# tasks/sweep/trial.py's `Report`, named again here: that module imports Keras, which a trial's process and this
# module's importers must not.
Report = Callable[[dict[str, Any], Path | None], None]


class TrainingEnded(Exception):
    """Raised in a trainer's training thread, at an epoch's end, once the trial it trains for has released it."""


class LeaseLapsed(RuntimeError):
    """Raised to a trial (should it still be there to hear it) whose lease the trainer ended: its process had ended,
    or it had renewed nothing for :data:`LEASE_SECONDS`. The trial fails and Ray Tune retries it."""


@ray.remote(num_cpus=0, concurrency_groups={"lease": 1})
class WarmTrainer:
    """Trains one trial at a time for the trial that holds its lease; the lease methods answer while it trains."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)  # the lease ended, or its trial took a report
        self.holder: str | None = None
        self.taken = 0  # the reports of this lease that its trial has handed to Ray Tune, which asked for more
        self.holder_pid = 0
        self.lapsed: str | None = None  # the holder whose lease :meth:`_watch` ended last
        self.renewed = self.used = time.monotonic()
        self.training = self.ending = False
        threading.Thread(target=self._watch, name="kerasflow-watch", daemon=True).start()

    @ray.method(concurrency_group="lease")
    def lease(self, holder: str, pid: int) -> bool:
        """Lease the trainer to `holder`, the trial whose process is `pid` on this node, if it is idle; False if a
        trial holds it, an ended lease's training has not stopped yet, or it is ending."""
        with self.lock:
            if self.holder is not None or self.training or self.ending:
                return False
            self.holder, self.holder_pid, self.renewed, self.taken = holder, pid, time.monotonic(), 0
            return True

    @ray.method(concurrency_group="lease")
    def renew(self, holder: str) -> None:
        with self.lock:
            if self.holder == holder:
                self.renewed = time.monotonic()

    @ray.method(concurrency_group="lease")
    def took(self, holder: str, count: int) -> None:
        """The trial `holder` has handed its first `count` reports to Ray Tune, and Tune asked for more."""
        with self.lock:
            if self.holder == holder and count > self.taken:
                self.taken = count
                self.changed.notify_all()

    @ray.method(concurrency_group="lease")
    def release(self, holder: str) -> None:
        with self.lock:
            if self.holder == holder:
                self.holder, self.used = None, time.monotonic()
                self.changed.notify_all()

    @ray.method(num_returns="streaming")
    def train(self, holder: str, config: dict[str, Any], spec_json: str, sweep_json: str, data: tuple,
              history_root: str, tensorboard_root: str | None, trial_id: str, work_dir: str,
              resume_from: str | None) -> Iterator[tuple[dict[str, Any], str | None]]:
        """The trial's training (:func:`kerasflow.flows.ray_driver.train_trial`), its reports yielded as
        `(metrics, checkpoint folder)` as they come, the metrics with this process's `trainer_pid`; checkpoints
        are written under `work_dir`, the trial's."""
        from kerasflow.flows.ray_driver import train_trial  # Keras, imported once per trainer

        reports: queue.Queue = queue.Queue()
        sent = 0

        def check() -> None:  # at every epoch's end, before the epoch is logged or reported
            with self.lock:
                while self.holder == holder and self.taken < sent:  # Tune has not asked for more yet
                    self.changed.wait(WATCH_SECONDS)
                if self.holder != holder:
                    raise LeaseLapsed(f"the lease of warm trainer {os.getpid()} lapsed: its trial's process ended, "
                                      f"or it renewed nothing for {LEASE_SECONDS:g} s") \
                        if self.lapsed == holder else TrainingEnded

        def report(metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
            nonlocal sent
            sent += 1
            folder = None if checkpoint_dir is None else str(checkpoint_dir)
            reports.put(({**metrics, "trainer_pid": os.getpid()}, folder))

        def work() -> None:
            try:
                train_trial(config, spec_json, sweep_json, *data, history_root, tensorboard_root, trial_id,
                            Path(work_dir), None if resume_from is None else Path(resume_from), report, check)
                reports.put(None)
            except BaseException as exc:  # handed to the generator, which raises it to the trial
                reports.put(exc)

        # Keras' callbacks call `report` from inside `fit`: training runs in a thread and the reports come out here.
        with self.lock:
            self.training = True
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
            with self.lock:
                self.training, self.used = False, time.monotonic()

    def _watch(self) -> None:
        """End the lease of a trial whose process has ended or that stopped renewing; end this trainer when a
        training outlives its lease by :data:`ABANDONED_SECONDS`, or when it has been idle for
        :data:`IDLE_SECONDS`."""
        abandoned_since: float | None = None  # when the training now running lost its lease
        while True:
            time.sleep(WATCH_SECONDS)
            with self.lock:
                now = time.monotonic()
                if self.holder is not None and (not running(self.holder_pid) or now - self.renewed > LEASE_SECONDS):
                    self.holder, self.lapsed, self.used = None, self.holder, now  # training stops at its epoch's end
                    self.changed.notify_all()
                if self.holder is None and self.training:
                    abandoned_since = abandoned_since or now
                else:
                    abandoned_since = None
                idle = self.holder is None and not self.training and now - self.used > IDLE_SECONDS
                if idle or (abandoned_since is not None and now - abandoned_since > ABANDONED_SECONDS):
                    self.ending = True
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
            if ray.get(trainer.lease.remote(holder, os.getpid())):
                return trainer
        except ray.exceptions.RayActorError:  # it ended itself (idle, or a training outlived its lease)
            continue
    raise RuntimeError(f"no warm trainer of {prefix} could be leased on node {node} ({MAX_TRAINERS} are busy)")


def train_warm(prefix: str, config: dict[str, Any], spec_json: str, sweep_json: str, data: ray.ObjectRef,
               history_root: str, tensorboard_root: str | None, trial_id: str, work_dir: Path,
               resume_from: Path | None, report: Report) -> None:
    """Train a trial's config in a leased warm trainer, passing each of its reports to `report` as it comes."""
    holder = uuid.uuid4().hex
    trainer = lease_trainer(prefix, holder)
    done = threading.Event()

    def renew() -> None:
        while not done.wait(RENEW_SECONDS):
            trainer.renew.remote(holder)

    threading.Thread(target=renew, name="kerasflow-lease", daemon=True).start()
    try:
        stream = trainer.train.remote(holder, config, spec_json, sweep_json, data, history_root, tensorboard_root,
                                      trial_id, str(work_dir), None if resume_from is None else str(resume_from))
        for count, item in enumerate(stream, start=1):
            metrics, checkpoint_dir = ray.get(item)
            report(metrics, None if checkpoint_dir is None else Path(checkpoint_dir))  # returns once Tune goes on
            trainer.took.remote(holder, count)
    finally:
        done.set()
        trainer.release.remote(holder)
