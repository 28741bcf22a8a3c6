"""The Ray side of a sweep, without Prefect: the Tuner over an experiment's space, and what a trial trains
(:func:`train_trial`, in the trial's process or a warm trainer: flows/ray_trial.py, flows/warm_trainers.py);
joining or starting Ray is flows/ray_cluster.py's.

`flows/sweep.py` wraps these in Prefect tasks; a machine without Prefect (bench/gpu.py on the GPU machine) runs
them as they are. Trial processes and warm trainers import this module: it imports no Prefect. Locally Ray runs
embedded; with `RAY_ADDRESS` set the same sweep runs on that cluster, its CPU trials in warm trainers. The table
goes to the object store once; each trial reports per epoch and keeps its best checkpoints; a crashed driver
resumes with `Tuner.restore`.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import keras
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator

from kerasflow.flows.ray_cluster import alive_nodes, kept_running_env, unfit_nodes
from kerasflow.flows.ray_trial import run_trial_process
from kerasflow.flows.warm_trainers import pool_prefix
from kerasflow.tasks.config.errors import SweepError
from kerasflow.tasks.config.overrides import dotted_leaves
from kerasflow.tasks.config.schema import ExperimentSpec
from kerasflow.tasks.config.search import ASHA_REDUCTION_FACTOR, SearchSpec
from kerasflow.tasks.data.table import Table, file_md5
from kerasflow.tasks.outputs.atomic import write_json
from kerasflow.tasks.outputs.metrics import SWEEP_SETTINGS, SWEEP_STATE, read_record, reopen_sweep
from kerasflow.tasks.runtime.progress import ProgressLine
from kerasflow.tasks.sweep.dvc_experiments import RECORD
from kerasflow.tasks.sweep.groups import GROUP, drawn_configs, stacked_groups, trial_configs
from kerasflow.tasks.sweep.trial import Report, history_dirs, run_trial
from kerasflow.tasks.training import evaluate

RUN_NAME = "sweep"
def tune_space(spec: ExperimentSpec, sweep: SearchSpec) -> dict[str, Any]:
    """The `space:` section as Ray Tune's sampling objects: a grid over the stacked groups where configs group
    (one trial per group, see `kerasflow.tasks.sweep.groups.stacked_groups`), or over a random search's configs
    drawn without replacement (:func:`~kerasflow.tasks.sweep.groups.drawn_configs`), else one trial per config."""
    groups = stacked_groups(spec, sweep)
    if groups is None and (drawn := drawn_configs(sweep)) is not None:
        groups = [[config] for config in drawn]
    if groups is not None:
        return {GROUP: tune.grid_search(groups)}
    make = {"grid": tune.grid_search, "choice": tune.choice,
            "uniform": lambda v: tune.uniform(*v), "loguniform": lambda v: tune.loguniform(*v),
            "randint": lambda v: tune.randint(*v)}
    return {key: make[kind](values) for key, dist in sweep.space.items() for kind, values in dist.items()}


class TrialProgress(tune.Callback):
    """Finished trials of the sweep's total on the terminal line (see `tasks/runtime/progress.py`); errors count too.

    The line is made in `setup`, where Ray gives the total; the callback itself stays picklable for Ray.
    """

    def __init__(self, label: str) -> None:
        self.label = label
        self.line: ProgressLine | None = None

    def setup(self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None,
              **info: Any) -> None:
        self.line = ProgressLine(self.label, total_num_samples or num_samples or 0, "trials")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.line.advance()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.line.advance()


def storage_folder(out_dir: Path) -> Path:
    """Where a sweep writing to `out_dir` keeps Ray Tune's run: trials, checkpoints, what `--resume` reads."""
    return (out_dir / SWEEP_STATE).resolve()


def history_folder(storage: Path) -> Path:
    """Where a sweep's configs log their folds' epochs, one dvclive folder per config (its :func:`config_id`):
    beside Ray Tune's run, so on a cluster it is as shared as the checkpoints are."""
    return storage.parent / "history"


def check_cluster(name: str, sweep: SearchSpec, storage: Path | str, tensorboard: Path | None = None) -> None:
    """Refuse what Ray Tune would otherwise wait on forever or fail at late: no node fits a trial, or
    checkpoints (or TensorBoard's files, in the folder `tensorboard`) written to a folder other nodes cannot
    read."""
    if (have := unfit_nodes(sweep.cpu, sweep.gpu)) is not None:
        raise SweepError(f"sweeps.{name}: each trial asks for cpu={sweep.cpu:g}, gpu={sweep.gpu:g} but no node "
                         f"of the cluster has that much ({have})")
    nodes = alive_nodes()
    if len(nodes) > 1 and "://" not in str(storage) and not sweep.shared_storage:
        raise SweepError(f"sweeps.{name}: the cluster has {len(nodes)} nodes but the sweep's storage {storage} is "
                         f"a local folder that other nodes cannot read; use an object-store URI, or a folder "
                         f"every node mounts and set sweeps.{name}.shared_storage: true")
    if len(nodes) > 1 and tensorboard is not None and not sweep.shared_storage:
        raise SweepError(f"sweeps.{name}: the cluster has {len(nodes)} nodes but tracking.tensorboard {tensorboard} "
                         f"is a local folder the trials on other nodes would write apart; make it a folder every "
                         f"node mounts, as the sweep's, and set sweeps.{name}.shared_storage: true")


def restore_sweep(name: str, storage: Path, trainable: Any = run_trial_process) -> tune.Tuner:
    """The sweep saved in `storage`, restored to run its unfinished and errored trials again with `trainable`.

    Refused where nothing was saved there, or where what was saved names code this version lacks: Ray pickles the
    sweep's objects by module and name, and restoring them (which starts no Ray) is what finds such a name gone.
    The command restores once before Ray or Prefect start, so that a refusal is one line and no flow's traceback.
    """
    path = storage / RUN_NAME
    if not tune.Tuner.can_restore(str(path)):
        raise SweepError(f"sweeps.{name}: nothing to resume at {path}; run without --resume first")
    try:
        return tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True, resume_errored=True)
    except (AttributeError, ImportError) as exc:
        raise SweepError(f"sweeps.{name}: the sweep at {path} was saved by another version of kerasflow and "
                         f"cannot be resumed by this one ({exc}); run without --resume") from None


def sweep_settings(spec: ExperimentSpec, sweep: SearchSpec) -> dict[str, Any]:
    """What a sweep trains, as a resume must find it again (and a nested sweep's record is checked against): the
    experiment and the sweep, the Keras backend, and the md5 of the data (a folder's, of its files)."""
    return {"experiment": spec.model_dump(mode="json"), "sweep": sweep.model_dump(mode="json"),
            "backend": keras.backend.backend(), "data_md5": file_md5(spec.dataset.file)}


RESUMED_SETTINGS = ("experiment", "sweep", "backend", "data_md5")
"""The settings a resume is checked against, where the sweep saved them (one saved before the backend and the
data's md5 were kept is checked on the others)."""


def save_settings(storage: Path, spec: ExperimentSpec, sweep: SearchSpec) -> None:
    """Keep when a new sweep in `storage` started and the experiment and sweep it trains
    (:data:`~kerasflow.tasks.outputs.metrics.SWEEP_SETTINGS`)."""
    storage.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_json(storage / SWEEP_SETTINGS, {"started_at": started, **sweep_settings(spec, sweep)})


def check_settings(name: str, storage: Path, spec: ExperimentSpec, sweep: SearchSpec) -> None:
    """Refuse resuming the sweep saved in `storage` with other settings than it started with: its finished trials
    trained those, and the rest would train these (one saved before settings were kept is not checked)."""
    saved = read_record(storage / SWEEP_SETTINGS)
    if saved is None:
        return
    kept = [key for key in RESUMED_SETTINGS if key in saved]
    now = sweep_settings(spec, sweep)
    saved, now = dotted_leaves({key: saved[key] for key in kept}), dotted_leaves({key: now[key] for key in kept})
    changed = [key for key in now | saved if now.get(key) != saved.get(key)]
    if changed:
        named = {"backend": "the Keras backend (backend:, KERAS_BACKEND)", "data_md5": f"{spec.dataset.file}'s data"}
        shown = ", ".join(named.get(key, key) for key in sorted(changed)[:5]) + (
            f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        raise SweepError(f"sweeps.{name}: {shown} changed since the sweep at {storage / RUN_NAME} started: its "
                         f"finished trials trained the settings it started with; run without --resume, or put "
                         f"them back")


def make_tuner(name: str, spec: ExperimentSpec, sweep: SearchSpec, table: Table, labels: evaluate.Encoded,
               storage: Path, resume: bool, tensorboard: Path | None = None) -> tune.Tuner:
    """The sweep's Tuner, its run kept in `storage`/sweep: a new one (what was there removed), or with `resume`
    the one there, its unfinished and errored trials run again. With `tensorboard` (the sweep's folder,
    :func:`kerasflow.tasks.outputs.tensorboard.run_folder`), each config's folds log their epochs there too."""
    env = kept_running_env()
    warm = pool_prefix(env) if env is not None and sweep.gpu == 0 else None
    # The data goes to the object store once; trials pass its reference on (`run_trial_process`).
    trainable = tune.with_resources(
        tune.with_parameters(run_trial_process, spec_json=spec.model_dump_json(), sweep_json=sweep.model_dump_json(),
                             data=[ray.put((table, labels))], history_root=str(history_folder(storage)),
                             tensorboard_root=None if tensorboard is None else str(tensorboard), warm_prefix=warm),
        {"cpu": sweep.cpu, "gpu": sweep.gpu})
    path = storage / RUN_NAME
    if resume:
        reopen_sweep(storage.parent)
        return restore_sweep(name, storage, trainable)
    shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(history_folder(storage), ignore_errors=True)
    # A config's record that `dvc exp apply` brought in (tasks/sweep/dvc_experiments.py) describes the old sweep.
    shutil.rmtree(storage.parent / RECORD, ignore_errors=True)
    save_settings(storage, spec, sweep)
    mode = "max" if spec.higher_is_better else "min"
    space = tune_space(spec, sweep)
    scheduler = (ASHAScheduler(time_attr="epoch", max_t=sweep.max_epochs(spec.train.epochs),
                               grace_period=sweep.grace_period,
                               reduction_factor=ASHA_REDUCTION_FACTOR)
                 if sweep.scheduler == "asha" else FIFOScheduler())
    if sweep.algorithm == "optuna":
        # TPE, seeded: its first points are seeded random draws, later ones model the scores so far.
        from ray.tune.search.optuna import OptunaSearch  # imports Optuna: only the sweeps that use it pay

        # A `choice` of lists (hidden widths) is a valid categorical for Optuna's in-memory study, which is all a
        # sweep keeps; Optuna warns that a database storage could not hold one, and a sweep uses none.
        warnings.filterwarnings("ignore", message="Choices for a categorical distribution should be",
                                category=UserWarning, module="optuna")
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "A new study created in memory" on the terminal
        searcher = OptunaSearch(seed=sweep.seed)
    else:
        searcher = BasicVariantGenerator(random_state=sweep.seed, max_concurrent=sweep.max_concurrent_trials or 0)
    return tune.Tuner(
        trainable, param_space=space,
        # A grid of groups holds every trial already: drawn once.
        tune_config=tune.TuneConfig(metric="score", mode=mode, num_samples=1 if GROUP in space else sweep.num_samples,
                                    search_alg=searcher, scheduler=scheduler,
                                    max_concurrent_trials=sweep.max_concurrent_trials,
                                    reuse_actors=True),
        run_config=tune.RunConfig(
            name=RUN_NAME, storage_path=str(storage), verbose=0,
            callbacks=[TrialProgress(f"{name}: sweep")],
            failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=sweep.keep_checkpoints,
                                                    checkpoint_score_attribute="score",
                                                    checkpoint_score_order=mode)))


def train_trial(config: dict[str, Any], spec_json: str, sweep_json: str, table: Table, labels: evaluate.Encoded,
                history_root: str, tensorboard_root: str | None, trial_id: str, work_dir: Path,
                resume_from: Path | None, report: Report, check: Callable[[], None] | None = None) -> None:
    """Train one trial's config (or each of a stacked group's), in a trial's process or a warm trainer: the
    experiment with its overrides, each config's folds logged under `history_root` (and as TensorBoard scalars
    under `tensorboard_root`, if given) where Ray Tune's trial `trial_id` is theirs
    (:func:`kerasflow.tasks.sweep.trial.history_dirs`), its reports passed to `report`
    and its checkpoints written under `work_dir`; resumed from the checkpoint folder `resume_from` if given.
    `check` raises to stop the training at an epoch's end (:func:`kerasflow.tasks.sweep.trial.run_trial`)."""
    base = ExperimentSpec.model_validate_json(spec_json)
    configs = trial_configs(config)
    specs = [base.with_overrides(overrides) for overrides in configs]
    histories = history_dirs(Path(history_root), configs, trial_id)
    run_trial(specs, SearchSpec.model_validate_json(sweep_json), table, labels, report, work_dir,
              resume_from=resume_from, history_dirs=histories,
              tensorboard_dirs=[Path(tensorboard_root) / folder.name for folder in histories]
              if tensorboard_root is not None else (), check=check)
