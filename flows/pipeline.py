"""Prefect flows: load → preprocess per fold → cross-validate → refit → write, then report.

Tasks are thin wrappers over ``tasks/``; they take arrays and live models, so none is cached by Prefect
(``NO_CACHE``): DVC decides what to rerun, from the stage's deps and params.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from tasks import evaluate, report, results
from tasks.atomic import atomic_path
from tasks.data import Table, load_table
from tasks.spec import ExperimentSpec


@task(name="load-data", cache_policy=NO_CACHE)
def load_data(name: str, spec: ExperimentSpec) -> tuple[Table, evaluate.Encoded]:
    """Read the experiment's CSV and encode its target."""
    table = load_table(spec.dataset)
    return table, evaluate.encode_labels(spec, table, name)


@task(name="preprocess-folds", cache_policy=NO_CACHE)
def preprocess_folds(spec: ExperimentSpec, table: Table, labels: evaluate.Encoded) -> list:
    """Split and fit the preprocessing inside each fold."""
    return evaluate.prepare_folds(spec, table, labels)


@task(name="cross-validate", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def cross_validate(spec: ExperimentSpec, folds: list) -> evaluate.CVResult:
    """Train and score every fold (stacked into one program when the model allows)."""
    return evaluate.cross_validate(spec, folds)


@task(name="refit", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def refit(spec: ExperimentSpec, table: Table, labels: evaluate.Encoded) -> evaluate.FinalModel:
    """Retrain on all rows for the model to keep."""
    return evaluate.refit(spec, table, labels)


@task(name="write-results", cache_policy=NO_CACHE)
def write_results(name: str, spec: ExperimentSpec, cv: evaluate.CVResult, final: evaluate.FinalModel | None,
                  results_dir: Path) -> dict[str, Any]:
    """Write metrics, per-epoch history and the model under `results_dir/name`."""
    out_dir = results_dir / name
    results.write_history(out_dir, cv)
    if final is not None:
        results.write_model(out_dir / "model", spec, final)
    # Metrics last: their presence says the experiment's outputs are complete.
    results.write_metrics(out_dir, cv)
    return cv.summary()


@flow(name="kerasflow-experiment")
def experiment_flow(name: str, spec: ExperimentSpec, results_dir: Path = Path("results")) -> dict[str, Any]:
    """One experiment end to end; returns its `metrics.json` content."""
    table, labels = load_data(name, spec)
    folds = preprocess_folds(spec, table, labels)
    cv = cross_validate(spec, folds)
    final = refit(spec, table, labels) if spec.evaluate.refit else None
    return write_results(name, spec, cv, final, Path(results_dir))


@task(name="report", cache_policy=NO_CACHE)
def write_report(results_dir: Path, names: list[str], out: Path) -> str:
    """Summarise every experiment's metrics as Markdown, on disk and as Prefect artifacts."""
    metrics = report.collect_metrics(results_dir, names)
    markdown = report.render_markdown(metrics)
    with atomic_path(out) as tmp:
        tmp.write_text(markdown)
    create_markdown_artifact(markdown=markdown, key="kerasflow-summary", description="Cross-validated scores")
    create_table_artifact(table=report.summary_rows(metrics), key="kerasflow-scores")
    return markdown


@flow(name="kerasflow-report")
def report_flow(names: list[str], results_dir: Path = Path("results"),
                out: Path = Path("reports/summary.md")) -> str:
    return write_report(Path(results_dir), names, Path(out))


@flow(name="kerasflow-pipeline")
def pipeline_flow(experiments: dict[str, ExperimentSpec], results_dir: Path = Path("results"),
                  report_path: Path | None = None) -> dict[str, dict[str, Any]]:
    """Run the given experiments one after another, then (optionally) the report."""
    summaries = {name: experiment_flow(name, spec, results_dir) for name, spec in experiments.items()}
    if report_path is not None:
        write_report(Path(results_dir), list(experiments), Path(report_path))
    return summaries
