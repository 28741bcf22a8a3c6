"""The Prefect flow composes the plain functions: same inputs, same metrics, same files."""

from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest
from helpers import tiny_params
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter

from kerasflow.flows.cli import smoke
from kerasflow.flows.pipeline import experiment_flow, pipeline_flow
from kerasflow.tasks.config.schema import parse_params
from kerasflow.tasks.data.table import load_table
from kerasflow.tasks.outputs.metrics import read_experiment
from kerasflow.tasks.outputs.results import load_model
from kerasflow.tasks.training.evaluate import (
    cross_validate,
    encode_labels,
    prepare_folds,
    refit,
)
from kerasflow.tasks.training.scoring import score
from kerasflow.tasks.training.train import predict


def test_flow_on_a_prefect_server_matches_the_plain_functions(project, configured_server, monkeypatch):
    monkeypatch.chdir(project)
    spec = parse_params(tiny_params()).experiments["iris"]

    table = load_table(spec.dataset)
    labels = encode_labels(spec, table)
    plain = cross_validate(spec, prepare_folds(spec, table, labels)).summary()

    from_flow = experiment_flow("iris", spec, project / "results")
    # Same seeds, same folds, same CPU kernels: the flow adds orchestration, not arithmetic.
    np.testing.assert_allclose(from_flow["folds"], plain["folds"], rtol=0, atol=1e-6)
    assert from_flow["metric"] == "accuracy" and from_flow["mean"] == pytest.approx(plain["mean"], abs=1e-6)

    # metrics.json holds the scores only, keyed by the metric (what `dvc metrics diff` compares); run.json the rest.
    scores = json.loads((project / "results/iris/metrics.json").read_text())
    assert scores == {"accuracy": {key: from_flow[key] for key in ("mean", "std", "folds")}}
    written = read_experiment(project / "results/iris")
    assert written == from_flow
    assert set(written["timing"]) == {"load", "preprocess", "cross_validate", "refit", "write", "total"}
    assert written["environment"]["backend"] == keras.backend.backend()
    assert written["environment"]["device"] in ("CPU", "GPU")
    # dvclive's per-step logs, one folder per fold, and all folds in one table for DVC's one-line-per-fold plot.
    folds = sorted(p.name for p in (project / "results/iris/history/plots/metrics").iterdir())
    assert folds == ["fold_00", "fold_01", "fold_02"]
    loss = (project / "results/iris/history/plots/metrics/fold_00/val_loss.tsv").read_text().splitlines()
    assert loss[0] == "step\tval_loss" and len(loss) == 1 + spec.train.epochs
    epochs = json.loads((project / "results/iris/history/plots/custom/folds.json").read_text())
    assert len(epochs) == 3 * spec.train.epochs
    assert set(epochs[0]) == {"fold", "epoch", "loss", "val_loss", "accuracy", "val_accuracy"}
    # Every row held out once, with its row number in the file, its label and the prediction it was scored by.
    predictions = pd.read_csv(project / "results/iris/predictions.csv")
    assert list(predictions.columns) == ["fold", "row", "true", "predicted"]
    assert sorted(predictions["row"]) == list(range(150))
    assert (predictions["true"].to_numpy() == table.y.iloc[predictions["row"]].to_numpy()).all()
    per_fold = (predictions["true"] == predictions["predicted"]).groupby(predictions["fold"]).mean()
    np.testing.assert_allclose(per_fold.to_numpy(), from_flow["folds"], rtol=0, atol=1e-12)

    # The refitted model reloads in safe mode with its preprocessing and predicts every class well.
    model, preprocessor, codec = load_model(project / "results/iris/model")
    assert codec.classes_ == ["setosa", "versicolor", "virginica"]
    accuracy = score(spec, codec.transform(table.y), predict(model, preprocessor.transform(table.X)))
    assert accuracy > 0.8


def test_on_tensorflow_the_refit_trains_after_the_folds_and_keeps_the_model_it_trains_alone(
        project, configured_server, monkeypatch):
    """TensorFlow is not thread-safe (tasks/runtime/keras_threads.py): the flow's refit starts once
    cross-validation has ended (read back from Prefect), and the saved model's weights are, bit for bit, those of
    the refit trained alone. On JAX the two train side by side: tests/test_backend.py."""
    assert keras.backend.backend() == "tensorflow"
    monkeypatch.chdir(project)
    spec = parse_params(tiny_params()).experiments["iris"].with_overrides({"train.epochs": 40})
    state = experiment_flow("iris", spec, project / "results", return_state=True)
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [state.state_details.flow_run_id]}))
    spans = {run.task_key.split("-")[0]: (run.start_time, run.end_time) for run in runs
             if run.task_key.split("-")[0] in ("cross_validate", "refit")}
    assert spans["cross_validate"][1] <= spans["refit"][0]  # in turn

    table = load_table(spec.dataset)
    alone = refit(spec, table, encode_labels(spec, table)).model.get_weights()
    saved = keras.saving.load_model(project / "results/iris/model/model.keras").get_weights()
    for here, there in zip(alone, saved, strict=True):
        np.testing.assert_array_equal(there, here)
    assert state.result()["timing"]["refit"] > 0


def test_keras_work_in_threads_takes_turns_on_tensorflow():
    """Threads that each build and train a model inside `keras_turn` never overlap on TensorFlow."""
    import threading
    import time

    from kerasflow.tasks.runtime.keras_threads import keras_thread_safe, keras_turn

    assert not keras_thread_safe()
    spans: list[tuple[float, float]] = []
    rows = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")

    def train() -> None:
        with keras_turn():
            began = time.perf_counter()
            seeded = keras.initializers.GlorotUniform(seed=1)  # the tests' TensorFlow runs deterministic ops
            model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, kernel_initializer=seeded),
                                      keras.layers.Dense(1, kernel_initializer=seeded)])
            model.compile("adam", "mse")
            model.fit(rows, rows[:, :1], epochs=3, batch_size=8, shuffle=False, verbose=0)
            spans.append((began, time.perf_counter()))

    threads = [threading.Thread(target=train) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spans.sort()
    assert len(spans) == 3
    assert all(ended <= began for (_, ended), (began, _) in zip(spans, spans[1:]))


def _artifacts(flow_run_id) -> dict[str, list]:
    """The artifacts one flow run published on the run's Prefect server (which other tests share), by key."""
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    found: dict[str, list] = {}
    for artifact in artifacts:
        found.setdefault(artifact.key, []).append(artifact.data)
    return found


def test_pipeline_flow_runs_every_experiment_and_publishes_the_report(project, configured_server, monkeypatch):
    monkeypatch.chdir(project)
    experiments = parse_params(tiny_params()).experiments
    state = pipeline_flow(experiments, project / "results", project / "reports/summary.md", return_state=True)
    summaries = state.result()
    assert set(summaries) == {"iris", "diabetes"}
    assert summaries["diabetes"]["metric"] == "mse" and summaries["diabetes"]["n_folds"] == 2
    report = (project / "reports/summary.md").read_text()
    assert "| iris | accuracy |" in report and "| diabetes | mse |" in report
    assert "| evaluate@diabetes |" in report  # wall time per stage
    html = (project / "reports/report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 6 and "Confusion matrix" in html and "Residuals" in html
    published = _artifacts(state.state_details.flow_run_id)
    assert set(published) == {"kerasflow-summary", "kerasflow-scores"}
    assert published["kerasflow-summary"] == [report]


def test_pipeline_flow_without_a_report_path_still_publishes_the_summary(project, configured_server, monkeypatch):
    monkeypatch.chdir(project)
    spec = smoke(parse_params(tiny_params()).experiments["diabetes"])
    state = pipeline_flow({"diabetes": spec}, project / "results", return_state=True)
    assert state.is_completed()
    (summary,) = _artifacts(state.state_details.flow_run_id)["kerasflow-summary"]
    assert "| diabetes | mse |" in summary
    assert not (project / "reports").exists()  # nothing on disk without a report path
