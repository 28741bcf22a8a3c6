"""The Prefect flow composes the plain functions: same inputs, same metrics, same files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flows.pipeline import experiment_flow, pipeline_flow
from tasks.data import load_table
from tasks.evaluate import cross_validate, encode_labels, prepare_folds
from tasks.results import load_model
from tasks.spec import parse_params
from tasks.train import predict, score

from conftest import tiny_params


def test_flow_under_prefect_harness_matches_the_plain_functions(project, prefect_harness, monkeypatch):
    monkeypatch.chdir(project)
    spec = parse_params(tiny_params()).experiments["iris"]

    table = load_table(spec.dataset)
    labels = encode_labels(spec, table)
    plain = cross_validate(spec, prepare_folds(spec, table, labels)).summary()

    from_flow = experiment_flow("iris", spec, project / "results")
    # Same seeds, same folds, same CPU kernels: the flow adds orchestration, not arithmetic.
    np.testing.assert_allclose(from_flow["folds"], plain["folds"], rtol=0, atol=1e-6)
    assert from_flow["metric"] == "accuracy" and from_flow["mean"] == pytest.approx(plain["mean"], abs=1e-6)

    written = json.loads((project / "results/iris/metrics.json").read_text())
    assert written == from_flow
    histories = sorted((project / "results/iris/history").glob("fold_*.csv"))
    assert len(histories) == 3
    assert histories[0].read_text().splitlines()[0] == "epoch,loss,val_loss,accuracy,val_accuracy"

    # The refitted model reloads in safe mode with its preprocessing and predicts every class well.
    model, preprocessor, codec = load_model(project / "results/iris/model")
    assert codec.classes_ == ["setosa", "versicolor", "virginica"]
    accuracy = score(spec, codec.transform(table.y), predict(model, preprocessor.transform(table.X)))
    assert accuracy > 0.8


def test_pipeline_flow_runs_every_experiment_and_publishes_the_report(project, prefect_harness, monkeypatch):
    monkeypatch.chdir(project)
    experiments = parse_params(tiny_params()).experiments
    summaries = pipeline_flow(experiments, project / "results", project / "reports/summary.md")
    assert set(summaries) == {"iris", "diabetes"}
    assert summaries["diabetes"]["metric"] == "mse" and summaries["diabetes"]["n_folds"] == 2
    report = (project / "reports/summary.md").read_text()
    assert "| iris | accuracy |" in report and "| diabetes | mse |" in report

    from prefect.client.orchestration import get_client

    async def artifact_keys():
        async with get_client() as client:
            return {a.key for a in await client.read_artifacts()}

    import asyncio

    assert {"kerasflow-summary", "kerasflow-scores"} <= asyncio.run(artifact_keys())
