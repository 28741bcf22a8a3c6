"""Running experiments on a schedule: the pipeline flow served by Prefect with a cron.

`kerasflow schedule EXPERIMENT --cron "0 3 * * *"` blocks, as ``prefect``'s own ``serve`` does: the process
registers a deployment on the Prefect server (``PREFECT_API_URL``, else Prefect's temporary local one) and runs
each scheduled or manually triggered flow run in a subprocess. The params file is read when a run starts, not
when the schedule is made, so an edit to ``params.yaml`` reaches the next run without restarting the server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.client.schemas.schedules import CronSchedule
from prefect.deployments.runner import EntrypointType

from kerasflow.flows.pipeline import pipeline_flow
from kerasflow.tasks.config.errors import ParamsError
from kerasflow.tasks.config.schema import load_params


@flow(name="kerasflow-scheduled")
def scheduled_pipeline(experiments: list[str], params_file: str, results_dir: str,
                       report: str) -> dict[str, dict[str, Any]]:
    """Load the params file as it is now and run the named experiments, then the report."""
    params = load_params(params_file)
    selected = params.select(experiments, source=params_file)
    return pipeline_flow(selected, Path(results_dir), Path(report))


def serve_schedule(experiments: list[str], cron: str, params_file: Path, results_dir: Path,
                   report: Path) -> None:
    """Serve :func:`scheduled_pipeline` for `experiments` on `cron` until interrupted.

    The deployment is named after the experiments (``kerasflow-scheduled/<a>+<b>``), so scheduling the same
    experiments again replaces their schedule instead of adding a second one. Paths are made absolute: runs
    start in their own processes, where a relative path would depend on where the server was started.
    """
    try:
        CronSchedule(cron=cron)
    except ValueError:
        raise ParamsError(f"`--cron` must be a cron expression such as '0 3 * * *'. Received: {cron!r}") from None
    parameters = {"experiments": list(experiments), "params_file": str(params_file.resolve()),
                  "results_dir": str(results_dir.resolve()), "report": str(report.resolve())}
    scheduled_pipeline.serve(name=deployment_name(experiments), cron=cron, parameters=parameters,
                             description=f"kerasflow {' '.join(experiments)} on cron {cron!r}",
                             # By module path: the installed package, wherever the server process started.
                             entrypoint_type=EntrypointType.MODULE_PATH)


def deployment_name(experiments: list[str]) -> str:
    return "+".join(experiments)
