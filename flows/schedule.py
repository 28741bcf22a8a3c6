"""Running experiments on a schedule: the pipeline flow deployed to a Prefect work pool with a cron.

`kerasflow schedule EXPERIMENT... --cron "0 3 * * *"` records the deployment in the project's `prefect.yaml`
(Prefect's deployment file, kept in the repo beside `params.yaml`), then deploys it with Prefect's own `prefect
deploy`, into a `process` work pool named after the project (`name:` in prefect.yaml). The deployment is named
after its experiments, sorted: scheduling the same experiments again, in any order, replaces their schedule. From
a clone, `prefect deploy --all` recreates every schedule on another server.

The server's scheduler creates the runs and a worker of the pool (`prefect worker start --pool <pool>`) starts
each in a process of its own, in the folder it was deployed from: the params file is read when a run starts, so an
edit to `params.yaml` reaches the next run, but for `backend:`: the run's process imports Keras with the backend
deployed (the deployment's `KERAS_BACKEND`) before it reads the file, so a new backend needs `kerasflow schedule`
again. With no Prefect server configured, `kerasflow` runs both for the user
(flows/local_server.py). `--serve` instead serves the flow from the command itself, blocking, as Prefect's
`flow.serve` does.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.schedules import CronSchedule
from prefect.deployments.runner import EntrypointType
from prefect.exceptions import ObjectNotFound
from prefect.workers.process import ProcessWorker

from kerasflow.flows.pipeline import pipeline_flow
from kerasflow.tasks.config.backend import DEFAULT_BACKEND, TENSORFLOW_DEFAULTS
from kerasflow.tasks.config.errors import ParamsError, ServiceError
from kerasflow.tasks.config.schema import load_params, read_yaml
from kerasflow.tasks.outputs.atomic import atomic_path
from kerasflow.tasks.outputs.mlflow_runs import tracking_uri
from kerasflow.tasks.outputs.tensorboard import logdir

FLOW_NAME = "kerasflow-scheduled"
PREFECT_FILE_HEADER = """\
# Prefect's deployment file. `kerasflow schedule EXPERIMENT... --cron CRON` adds or updates the deployment of
# those experiments here and deploys it (`prefect deploy`); `prefect deploy --all` from this folder recreates
# every schedule on another server. Runs go to the work pool named below, a `process` pool created if missing;
# `prefect worker start --pool <pool>` runs them, in the folder the deployment was made from (no pull step:
# Prefect's default for local code).
"""


@flow(name=FLOW_NAME)
def scheduled_pipeline(experiments: list[str], params_file: str, results_dir: str,
                       report: str) -> dict[str, dict[str, Any]]:
    """Load the params file as it is now and run the named experiments, then the report (and MLflow's runs, where
    the params or the worker's environment name a tracking server, and TensorBoard's where they name a folder)."""
    params = load_params(params_file)
    selected = params.select(experiments, source=params_file)
    return pipeline_flow(selected, Path(results_dir), Path(report), tracking_uri(params.tracking.mlflow, params_file),
                         logdir(params.tracking.tensorboard, params_file))


def deployment_name(experiments: list[str]) -> str:
    """The experiments, sorted and joined by "+": the same name whatever order they were given in."""
    return "+".join(sorted(set(experiments)))


def check_cron(cron: str) -> None:
    try:
        CronSchedule(cron=cron)
    except ValueError:
        raise ParamsError(f"`--cron` must be a cron expression such as '0 3 * * *'. Received: {cron!r}") from None


def deploy_schedule(prefect_file: Path, experiments: list[str], cron: str, params_file: Path, results_dir: Path,
                    report: Path, api_url: str) -> tuple[str, str]:
    """Record the deployment of `experiments` in `prefect_file` and deploy it to the server at `api_url`; return
    (deployment name, work pool). If the deployment fails, `prefect_file` is put back as it was."""
    previous = prefect_file.read_bytes() if prefect_file.exists() else None
    name, pool = record_deployment(prefect_file, experiments, cron, params_file, results_dir, report)
    try:
        asyncio.run(_ensure_process_pool(pool))
        deploy(prefect_file, name, api_url)
    except BaseException:
        if previous is None:
            prefect_file.unlink(missing_ok=True)
        else:
            with atomic_path(prefect_file) as tmp:
                tmp.write_bytes(previous)
        raise
    return name, pool


def record_deployment(prefect_file: Path, experiments: list[str], cron: str, params_file: Path, results_dir: Path,
                      report: Path) -> tuple[str, str]:
    """Add or replace the deployment of `experiments` in `prefect_file` (created, named after its folder, if
    missing); return (deployment name, work pool).

    Paths are kept as given: relative ones are relative to the folder the runs start in, the one `prefect deploy`
    runs from. The runs' processes get TensorFlow's switches and the Keras backend kerasflow gives its own
    processes (tasks/config/backend.py), as the deployment's job variables.
    """
    project = read_prefect_file(prefect_file)
    name, names = deployment_name(experiments), sorted(set(experiments))
    pool = project["name"]
    env = {**TENSORFLOW_DEFAULTS, "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", DEFAULT_BACKEND)}
    entry = {"name": name, "entrypoint": f"{__name__}.{scheduled_pipeline.fn.__name__}",
             "description": f"kerasflow run {' '.join(names)} on cron {cron!r}",
             "parameters": {"experiments": names, "params_file": str(params_file),
                            "results_dir": str(results_dir), "report": str(report)},
             "schedules": [{"cron": cron}],
             "work_pool": {"name": pool, "job_variables": {"env": env}}}
    deployments = [d for d in project.get("deployments") or [] if d.get("name") != name]
    project["deployments"] = sorted([*deployments, entry], key=lambda d: str(d.get("name")))
    with atomic_path(prefect_file) as tmp:
        tmp.write_text(PREFECT_FILE_HEADER + yaml.safe_dump(project, sort_keys=False))
    return name, pool


def read_prefect_file(prefect_file: Path) -> dict[str, Any]:
    """The project's prefect.yaml; a new one, named after its folder, where there is none."""
    if not prefect_file.exists():
        return {"name": prefect_file.resolve().parent.name, "prefect-version": _prefect_version(),
                "deployments": []}
    project = read_yaml(prefect_file)
    if not isinstance(project, dict) or not isinstance(project.get("name"), str) or not project["name"]:
        raise ParamsError(f"{prefect_file}: expected a mapping with the project's `name:` (the work pool's name)")
    deployments = project.get("deployments") or []
    if not isinstance(deployments, list) or not all(isinstance(entry, dict) for entry in deployments):
        raise ParamsError(f"{prefect_file}: `deployments:` must be a list of mappings, one a deployment (Prefect's "
                          f"prefect.yaml)")
    return project


def deploy(prefect_file: Path, name: str, api_url: str) -> None:
    """`prefect deploy` the deployment `name` from `prefect_file`, in its folder, to the server at `api_url`."""
    command = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--prefect-file", str(prefect_file.resolve()),
               "--name", f"{FLOW_NAME}/{name}"]
    done = subprocess.run(command, cwd=prefect_file.resolve().parent, env={**os.environ, "PREFECT_API_URL": api_url},
                          stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stdout + done.stderr).strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise ServiceError(f"{prefect_file}: `prefect deploy --name {FLOW_NAME}/{name}` failed: {last[0][:300]}")


async def _ensure_process_pool(pool: str) -> None:
    """Create the work pool `pool`, of type process, on Prefect's server unless it exists."""
    async with get_client() as client:
        try:
            await client.read_work_pool(pool)
        except ObjectNotFound:
            await client.create_work_pool(WorkPoolCreate(
                name=pool, type=ProcessWorker.type, base_job_template=ProcessWorker.get_default_base_job_template(),
                description="kerasflow's scheduled experiments (kerasflow schedule)"))


def serve_schedule(experiments: list[str], cron: str, params_file: Path, results_dir: Path,
                   report: Path) -> None:
    """Serve :func:`scheduled_pipeline` for `experiments` on `cron` from this process until interrupted.

    Paths are made absolute: runs start in their own processes, where a relative path would depend on where the
    server was started.
    """
    parameters = {"experiments": sorted(set(experiments)), "params_file": str(params_file.resolve()),
                  "results_dir": str(results_dir.resolve()), "report": str(report.resolve())}
    scheduled_pipeline.serve(name=deployment_name(experiments), cron=cron, parameters=parameters,
                             description=f"kerasflow run {' '.join(parameters['experiments'])} on cron {cron!r}",
                             # By module path: the installed package, wherever the server process started.
                             entrypoint_type=EntrypointType.MODULE_PATH)


def _prefect_version() -> str:
    import prefect

    return prefect.__version__
