"""The report as a Prefect flow and task: every experiment's results as a Markdown summary, an HTML page and
Prefect artifacts. Imports no training code, so `kerasflow report` (DVC's `report` stage) starts without Keras;
only an image experiment's augmented examples import it (tasks/report/collect.py)."""

# No `from __future__ import annotations`: Prefect validates flow parameters against these annotations.
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from kerasflow.flows.parameters import Experiment
from kerasflow.tasks.config.schema import ExperimentSpec
from kerasflow.tasks.outputs.atomic import command_output
from kerasflow.tasks.report import tables
from kerasflow.tasks.report.collect import collect
from kerasflow.tasks.report.html import render_html
from kerasflow.tasks.report.markdown import render_markdown


@task(name="report", cache_policy=NO_CACHE)
def write_report(results_dir: Path, experiments: dict[str, ExperimentSpec], out: Path | None = None,
                 html: Path | None = None) -> str:
    """Summarise every experiment as Markdown (and the full HTML report), on disk when asked and always as
    Prefect artifacts."""
    content = collect(results_dir, experiments)
    markdown = render_markdown(content)
    if out is not None:
        with command_output(out) as tmp:
            tmp.write_text(markdown)
    if html is not None:
        with command_output(html) as tmp:
            tmp.write_text(render_html(content))
    create_markdown_artifact(markdown=markdown, key="kerasflow-summary", description="kerasflow results")
    create_table_artifact(table=tables.scores(content).to_dict("records"), key="kerasflow-scores",
                          description="Cross-validated scores")
    sweeps = tables.sweeps(content)
    if not sweeps.empty:
        create_table_artifact(table=sweeps.to_dict("records"), key="kerasflow-sweeps",
                              description="Best trial of each sweep")
    return markdown


@flow(name="kerasflow-report")
def report_flow(experiments: dict[str, Experiment], results_dir: Path = Path("results"),
                out: Path = Path("reports/summary.md"), html: Path = Path("reports/report.html")) -> str:
    """The Markdown summary at `out` and the HTML report at `html`."""
    return write_report(Path(results_dir), experiments, Path(out), Path(html))
