"""The report from a real small run: held-out predictions, dvclive histories, and the HTML page as headless
Chromium renders it (every plot decoded, every table laid out, no console error, no network request)."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import shutil
import subprocess
import time
import urllib.request
from html import escape
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from helpers import stop, tiny_params, written_run

from kerasflow.tasks.config.errors import DataError
from kerasflow.tasks.config.schema import parse_params
from kerasflow.tasks.data.split import fold_settings
from kerasflow.tasks.data.table import file_md5, load_table
from kerasflow.tasks.outputs.live import HistoryFolder, LiveHistory, fold_folders, history_names
from kerasflow.tasks.outputs.metrics import (
    SWEEP_SETTINGS,
    SWEEP_STATE,
    finish_sweep,
    read_experiment,
    read_sweep_best,
    reopen_sweep,
    unfinished_sweep,
    write_sweep_best,
)
from kerasflow.tasks.outputs.results import write_history
from kerasflow.tasks.report import plots, tables
from kerasflow.tasks.report.collect import DataFacts, ExperimentReport, Report, collect, dvc_tracking
from kerasflow.tasks.report.html import render_html
from kerasflow.tasks.report.markdown import render_markdown
from kerasflow.tasks.sweep.export import with_ties, write_trials
from kerasflow.tasks.training.evaluate import (
    cross_validate,
    encode_labels,
    prepare_folds,
)

pytestmark = pytest.mark.slow


def _params(**iris_evaluate) -> dict:
    raw = tiny_params()
    raw["experiments"]["iris"]["train"]["epochs"] = 6
    raw["experiments"]["iris"]["evaluate"].update(iris_evaluate)
    # Listed in the params but never run: the report must say so, not fail.
    raw["experiments"]["iris_later"] = {**raw["experiments"]["iris"]}
    return raw


def _sweep(tune_dir: Path) -> None:
    """A finished sweep's files, in the shape `kerasflow.tasks.sweep.export.export_best` writes them."""
    rows = with_ties([{"config_id": f"c{i}", "param:train.optimizer": optimizer, "param:train.learning_rate": rate,
                       "param:train.epochs": 6, "score": float(np.mean(folds)), "score_std": float(np.std(folds)),
                       "fold_scores": folds, "epochs": 6, "seconds": 1.5, "node": "n", "started_at": 0.0,
                       "trial_id": f"t{i}", "status": "ok"}
                      for i, (optimizer, rate, folds) in enumerate([
                          ("adam", 0.05, [0.93, 0.95, 0.97]), ("rmsprop", 0.01, [0.92, 0.88, 0.9]),
                          ("adam", 0.01, [0.8, 0.9, 0.85]), ("rmsprop", 0.05, [0.78, 0.8, 0.82])])],
                     ratio=0.5, metric="accuracy")
    write_trials(tune_dir / "trials.csv", rows)
    write_sweep_best(tune_dir, {
        "experiment": "iris", "metric": "accuracy", "mode": "max", "scoring": "kfold", "score": rows[0]["score"],
        "score_std": rows[0]["score_std"], "score_low": rows[0]["score_low"], "score_high": rows[0]["score_high"],
        "tied": [row["config_id"] for row in rows if row["tied_with_best"]],
        "params": {"train.optimizer": "adam", "train.learning_rate": 0.05, "train.epochs": 6},
        "checkpoint": None, "checkpoint_epoch": None, "n_configs": 4, "n_trials": 4, "n_errors": 0, "seconds": 7.5})


@pytest.mark.parametrize("stack_folds", [True, False], ids=["stacked", "one-by-one"])
def test_held_out_predictions_are_the_scored_ones_with_their_file_rows(project, monkeypatch, stack_folds):
    monkeypatch.chdir(project)
    spec = parse_params(_params(stack_folds=stack_folds)).experiments["iris"]
    table = load_table(spec.dataset)
    cv = cross_validate(spec, prepare_folds(spec, table, encode_labels(spec, table)))
    assert cv.stacked is stack_folds
    for fold in cv.folds:
        # Every fold's accuracy recomputed from its kept predictions is the score it reported.
        assert np.mean(fold.y_true == fold.y_pred) == pytest.approx(fold.score, abs=1e-12)
    rows = np.concatenate([fold.rows for fold in cv.folds])
    assert sorted(rows.tolist()) == list(range(150))  # 3-fold: each file row held out exactly once
    codes = encode_labels(spec, table).codes
    for fold in cv.folds:
        np.testing.assert_array_equal(fold.y_true, codes[fold.rows])


class _ReadsLiveFiles(keras.callbacks.Callback):
    """Counts, at each epoch's end, the rows a reader of fold 1's live step file sees."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path, self.seen = path, []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seen.append(len(self.path.read_text().splitlines()) - 1 if self.path.exists() else 0)


@pytest.mark.parametrize("stack_folds, scheduled", [(True, False), (False, False), (True, True)],
                         ids=["stacked", "one-by-one", "stacked-with-a-schedule"])
def test_history_is_on_disk_while_training_and_the_final_one_is_the_same(project, monkeypatch, stack_folds,
                                                                         scheduled):
    """With a learning-rate schedule, each epoch's rate is in every fold's history too."""
    monkeypatch.chdir(project)
    raw = _params(stack_folds=stack_folds)
    if scheduled:
        raw["experiments"]["iris"]["train"]["lr_schedule"] = {"type": "step", "factor": 0.5, "every": 2}
    spec = parse_params(raw).experiments["iris"]
    table = load_table(spec.dataset)
    live_dir = project / "live"
    folder = HistoryFolder(live_dir, fold_folders(3), history_names("accuracy", scheduled))
    probe = _ReadsLiveFiles(live_dir / "plots/metrics/fold_01/val_loss.tsv")
    cv = cross_validate(spec, prepare_folds(spec, table, encode_labels(spec, table)),
                        callbacks=[LiveHistory(folder, every=None), probe])
    # Each epoch's row is on disk when the epoch ends (fold 1 trains second when the folds train one by one).
    assert probe.seen == (list(range(1, 7)) if stack_folds else [0] * 6 + list(range(1, 7)) + [6] * 6)

    first = write_history(project / "a", cv)
    second = write_history(project / "b", cv)

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    assert files(first) == files(second)  # same numbers, same bytes: no timestamp anywhere
    names = set(files(first))
    steps = {f"plots/metrics/fold_{j:02d}/{key}.tsv" for j in range(3)
             for key in ("loss", "val_loss", "accuracy", "val_accuracy", *(["learning_rate"] if scheduled else []))}
    assert names == steps | {"plots/custom/folds.json", "metrics.json"}
    # What was written live is what the run keeps (the table's rows come epoch by epoch when stacked).
    live = files(live_dir)
    assert {name: live[name] for name in steps} == {name: files(first)[name] for name in steps}
    table_rows = [pd.DataFrame(json.loads((root / "plots/custom/folds.json").read_text()))
                  for root in (live_dir, first)]
    pd.testing.assert_frame_equal(*(t.sort_values(["fold", "epoch"], ignore_index=True) for t in table_rows))
    assert live["metrics.json"] == files(first)["metrics.json"]
    summary = json.loads((first / "metrics.json").read_text())
    assert set(summary) == {"epoch", "loss", "val_loss", "accuracy", "val_accuracy"} | (
        {"learning_rate"} if scheduled else set()) and summary["epoch"] == 6
    if scheduled:
        rates = (first / "plots/metrics/fold_02/learning_rate.tsv").read_text().splitlines()[1:]
        assert [float(line.split("\t")[1]) for line in rates] == pytest.approx([0.05] * 2 + [0.025] * 2 + [0.0125] * 2)
        history = pd.DataFrame(json.loads((first / "plots/custom/folds.json").read_text()))
        assert len(plots.learning_curves(history, "accuracy").axes) == 3  # the report draws the rate beside
    assert summary["val_loss"] == pytest.approx(np.mean([fold.history["val_loss"][-1] for fold in cv.folds]),
                                                rel=1e-5)
    assert (first / "plots/metrics/fold_01/val_loss.tsv").read_text().splitlines()[:2][0] == "step\tval_loss"
    rows = table_rows[1]
    assert rows.groupby("fold")["epoch"].apply(list).tolist() == [list(range(1, 7))] * 3
    np.testing.assert_allclose(rows[rows.fold == 2]["val_loss"], cv.folds[2].history["val_loss"], rtol=1e-5)


def _chromium_render(page: Path, screenshot: Path) -> dict:
    """Open `page` in headless Chromium over the DevTools protocol; return what the page holds once loaded,
    with every console message, exception, log error and request URL seen while loading it."""
    from websockets.sync.client import connect

    profile = screenshot.parent / "chromium-profile"
    browser = subprocess.Popen(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
         "--remote-debugging-port=0", f"--user-data-dir={profile}", "--window-size=1280,1000", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            assert time.monotonic() < deadline and browser.poll() is None, "chromium did not start"
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            target = next(t for t in json.load(response) if t["type"] == "page")
        seen: dict[str, list] = {"console": [], "exceptions": [], "log": [], "requests": []}
        with connect(target["webSocketDebuggerUrl"], max_size=None) as ws:
            ids = iter(range(1, 1000))

            def call(method: str, **params) -> dict:
                message_id = next(ids)
                ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
                while True:
                    message = json.loads(ws.recv(timeout=60))
                    if message.get("id") == message_id:
                        assert "error" not in message, message
                        return message["result"]
                    record(message)

            def record(message: dict) -> None:
                method, params = message.get("method"), message.get("params", {})
                if method == "Runtime.consoleAPICalled":
                    seen["console"].append((params["type"], [a.get("value") for a in params["args"]]))
                elif method == "Runtime.exceptionThrown":
                    seen["exceptions"].append(params["exceptionDetails"])
                elif method == "Log.entryAdded":
                    entry = params["entry"]
                    seen["log"].append((entry["level"], f"{entry['text']} {entry.get('url', '')}"))
                elif method == "Network.requestWillBeSent":
                    url = params["request"]["url"]
                    seen["requests"].append("data:..." if url.startswith("data:") else url)
                elif method == "Page.loadEventFired":
                    seen["loaded"] = True

            for domain in ("Runtime", "Log", "Network", "Page"):
                call(f"{domain}.enable")
            call("Page.navigate", url=page.resolve().as_uri())
            while "loaded" not in seen:
                record(json.loads(ws.recv(timeout=60)))
            state = call("Runtime.evaluate", returnByValue=True, expression="""JSON.stringify({
                images: [...document.images].map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth,
                                                        shown: i.getBoundingClientRect().height})),
                tables: [...document.querySelectorAll('table')].map(t => t.getBoundingClientRect().height),
                text: document.body.innerText})""")
            size = call("Page.getLayoutMetrics")["cssContentSize"]
            shot = call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                        clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        return {**json.loads(state["result"]["value"]), **seen}
    finally:
        stop(browser)


def test_report_from_a_real_run_renders_in_headless_chromium(project, monkeypatch, tmp_path):
    monkeypatch.chdir(project)
    experiments = parse_params(_params()).experiments
    for name in ("iris", "diabetes"):
        written_run(name, experiments[name], project / "results")
    _sweep(project / "results/iris/tune")

    content = collect(project / "results", experiments)
    markdown = render_markdown(content)
    assert "| iris | accuracy |" in markdown and "| diabetes | mse |" in markdown
    assert "| iris_later | not run yet |" in markdown
    iris_md5 = file_md5(project / "data/iris.csv")
    assert f"setosa 50, versicolor 50, virginica 50 | {iris_md5} (not tracked by DVC)" in markdown
    assert "| evaluate@iris |" in markdown
    # The sweep's best with its 95% interval, cut to the accuracies there can be (its t-interval reaches 1.0286),
    # and the 2 configs its folds cannot tell from it (the 4th is worse on every fold).
    assert "| iris | 4 | 4 | 0 | accuracy 0.9500 ± 0.0163 | [0.8714, 1.0000] | 2 |" in markdown
    assert "These 3 configs are statistically tied: the folds cannot tell them from the best at 5% (corrected " \
           "resampled t-test on the same folds): c0, c1, c2." in render_html(content)

    page = tmp_path / "report.html"
    page.write_text(render_html(content))
    assert "http://" not in page.read_text() and "https://" not in page.read_text()  # nothing to fetch
    if shutil.which("chromium") is None:
        pytest.skip("the `chromium` command is not on PATH (Debian: apt-get install chromium); "
                    "the report was built but not rendered")
    screenshot = tmp_path / "report.png"
    rendered = _chromium_render(page, screenshot)
    print(f"report screenshot: {screenshot}")

    # iris: scores, learning curves, confusion matrix, sweep; diabetes: scores, curves, residuals.
    assert len(rendered["images"]) == 7
    for image in rendered["images"]:
        assert image["complete"] and image["width"] > 100 and image["shown"] > 50, image
    assert len(rendered["tables"]) >= 11 and all(height > 0 for height in rendered["tables"])
    for text in ("iris_later", "Not run yet", "Confusion matrix", "Residuals", "Learning curves", "Sweep",
                 "Wall time per stage", "Environment", iris_md5):
        assert text in rendered["text"]
    assert rendered["console"] == [] and rendered["exceptions"] == []
    assert [entry for entry in rendered["log"] if entry[0] == "error"] == []
    assert all(url.startswith(("file:", "data:")) for url in rendered["requests"]), rendered["requests"]
    assert screenshot.stat().st_size > 50_000


def test_the_chromium_check_sees_console_errors_broken_images_and_requests(tmp_path):
    """The check above proves something only if it fails on a page that is broken in those ways."""
    if shutil.which("chromium") is None:
        pytest.skip("the `chromium` command is not on PATH (Debian: apt-get install chromium)")
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><table><tr><td>x</td></tr></table>'
                    '<img alt="bad" src="data:image/png;base64,AAAA"><img alt="gone" src="missing.png">'
                    '<script>console.error("boom")</script></body></html>')
    rendered = _chromium_render(page, tmp_path / "broken.png")
    assert ("error", ["boom"]) in rendered["console"]
    assert [image["width"] for image in rendered["images"]] == [0, 0]
    assert any(level == "error" and "missing.png" in text for level, text in rendered["log"])
    assert any(url.endswith("missing.png") for url in rendered["requests"])


def test_a_stacked_groups_configs_share_one_trial(project):
    """Configs trained as one stacked program share their Ray trial's seconds, counted once."""
    experiments = parse_params(_params()).experiments
    tune_dir = project / "results/iris/tune"
    rows = [{"param:model.initializer": init, "param:train.learning_rate": 0.001, "score": score, "score_std": 0.01,
             "epochs": 6, "seconds": 4.0, "trial_id": "t0", "configs_in_trial": 2, "status": "ok"}
            for init, score in [("glorot_uniform", 0.95), ("random_normal", 0.9)]]
    write_trials(tune_dir / "trials.csv", rows)
    best = {"experiment": "iris", "metric": "accuracy", "mode": "max", "scoring": "kfold", "score": 0.95,
            "score_std": 0.01, "params": {"model.initializer": "glorot_uniform"}, "checkpoint": None,
            "checkpoint_epoch": None, "n_configs": 2, "n_trials": 1, "n_errors": 0, "seconds": 5.0}
    write_sweep_best(tune_dir, best)
    content = collect(project / "results", experiments)
    (row,) = tables.sweeps(content).to_dict("records")
    assert (row["configs"], row["Ray trials"], row["trials' seconds"]) == (2, 1, 4.0)
    # Scores as the report shows them; a searched value and seconds as they are.
    first = tables.trials(content.experiments[0].sweep).to_dict("records")[0]
    assert (first["score"], first["train.learning_rate"], first["seconds"]) == ("0.9500", 0.001, 4.0)
    assert "2 configs in 1 Ray trials" in render_html(content)


def _small_report() -> Report:
    """A report of one run experiment and one not run, whose data file could not be read: no training."""
    experiments = parse_params(_params()).experiments
    iris = ExperimentReport(
        name="iris", spec=experiments["iris"],
        metrics={"metric": "accuracy", "mean": 0.95, "std": 0.02, "n_folds": 3, "folds": [0.93, 0.95, 0.97],
                 "fold_settings": fold_settings(experiments["iris"]), "test_train_ratio": 0.5,
                 "seconds": 1.5, "timing": {"load": 0.1, "cross_validate": 1.5, "total": 1.7},
                 "environment": {"keras": "3", "python": "3.11"}},
        data=DataFacts(file="data/iris.csv", rows=150, columns=5, target="species", task="multiclass", md5="abc",
                       classes={"setosa": 50, "versicolor": 50, "virginica": 50}))
    later = ExperimentReport(name="iris_later", spec=experiments["iris_later"],
                             data_error="data/iris.csv: not found <here>")
    return Report(experiments=[iris, later])


def test_each_table_is_one_frame_that_markdown_and_html_both_render():
    content = _small_report()
    scores = tables.scores(content)
    assert list(scores.columns) == ["experiment", "metric", "mean ± std", "95% interval", "folds",
                                    "naive last value", "seconds"]
    assert scores.to_dict("records")[0] == {"experiment": "iris", "metric": "accuracy", "mean ± std": "0.9500 ± 0.0200",
                                            "95% interval": "", "folds": 3, "naive last value": "", "seconds": 1.5}
    assert [title for title, _ in tables.overview(content)] == [
        "Cross-validated scores", "Data", "Wall time per stage (seconds)", "Environment"]  # no sweep: no table

    markdown = render_markdown(content)
    assert "| iris | accuracy | 0.9500 ± 0.0200 |  | 3 |  | 1.5 |" in markdown
    assert "| iris_later | not run yet |  |  |  |  |  |" in markdown
    assert "| evaluate@iris | 0.1 |  | 1.5 |  |  | 1.7 |" in markdown  # steps not timed stay empty
    assert "| iris | python | keras |" not in markdown and "| iris | 3.11 | 3 |" in markdown  # environment order
    page = render_html(content)
    for title, table in tables.overview(content):
        assert f"## {title}" in markdown and f"<h2>{title}</h2>" in page
        assert all(f"<th class=\"col_heading level0 col{i}\" >{escape(column)}</th>" in page
                   for i, column in enumerate(table.columns))
    # Numbers aligned, absent results marked, paths in monospace, text escaped.
    assert re.search(r'<td class="data row0 col4 num" >3</td>', page)
    assert re.search(r'<td class="data row1 col1 missing" >not run yet</td>', page)
    assert re.search(r'<td class="data row0 col1 code" >data/iris.csv</td>', page)
    assert "not found &lt;here&gt;" in page and "<here>" not in page
    assert render_html(content) == page  # the same report, the same bytes (no random ids)


def test_an_unfinished_sweeps_command_is_set_as_code_in_the_html_tables():
    content = _small_report()
    content.experiments[0] = dataclasses.replace(content.experiments[0], unfinished_sweep="2026-12-06T17:40:00+00:00")
    (row,) = tables.sweeps(content).to_dict("records")
    assert "`kerasflow tune iris --resume`" in row["unfinished"]
    page = render_html(content)
    assert re.search(r'<td class="data row0 col\d+ missing" >A sweep started 2026-12-06T17:40:00\+00:00 .*'
                     r'<code>kerasflow tune iris --resume</code> finishes a stopped one.</td>', page)
    assert "`" not in page


def test_a_hold_out_score_is_shown_without_a_spread():
    content = _small_report()
    one = {**content.experiments[0].metrics, "std": 0.0, "n_folds": 1, "folds": [0.95]}
    content.experiments[0] = dataclasses.replace(content.experiments[0], metrics=one)
    assert tables.scores(content).to_dict("records")[0]["mean ± std"] == "0.9500"
    assert "accuracy: <strong>0.9500</strong> on the held-out rows." in render_html(content)


def test_learning_curves_show_the_mean_with_a_clipped_band_and_every_fold_faint():
    history = pd.DataFrame([{"fold": fold, "epoch": epoch, "loss": loss, "val_loss": loss, "accuracy": accuracy,
                             "val_accuracy": accuracy}
                            for fold, loss, accuracy in [(0, 0.0, 0.7), (1, 0.0, 1.0), (2, 0.3, 1.0)]
                            for epoch in (1, 2, 3)])
    figure = plots.learning_curves(history, "accuracy")
    for ax, (low, high) in zip(figure.axes, [(0.0, 0.24), (0.76, 1.0)]):
        (training_band, validation_band) = ax.collections
        for band in (training_band, validation_band):
            y = band.get_paths()[0].vertices[:, 1]
            # mean ± std (ddof=0) is 0.1 ± 0.141 and 0.9 ± 0.141: cut at 0 and at 1, where no value can go.
            assert y.min() == pytest.approx(low, abs=0.01) and y.max() == pytest.approx(high, abs=0.01)
        folds = [line for line in ax.get_lines() if line.get_alpha() is not None]
        means = [line for line in ax.get_lines() if line.get_alpha() is None]
        assert len(folds) == 6 and all(line.get_alpha() < 0.5 for line in folds)  # 3 folds, training and validation
        assert [line.get_label() for line in means] == ["training, mean ± std", "validation, mean ± std"]


def test_a_series_fold_plot_marks_the_naive_forecast_of_each_fold():
    """A series' record holds the naive last-value forecast's scores (`baseline`, from metrics.json)."""
    record = {"metric": "rmse", "mean": 20.0, "std": 2.0, "folds": [18.0, 22.0],
              "baseline": {"mean": 25.0, "folds": [24.0, 26.0]}}
    lines = plots.fold_scores(record).axes[0].get_lines()
    (naive,) = [line for line in lines if line.get_label() == "naive last value"]
    assert list(naive.get_ydata()) == [24.0, 26.0]


def test_the_confusion_matrix_is_scikit_learns_count_of_held_out_rows():
    predictions = pd.DataFrame({"fold": [0, 0, 1, 1, 1], "true": ["a", "a", "b", "b", "c"],
                                "predicted": ["a", "b", "b", "b", "a"]})
    ax = plots.confusion_matrix(predictions, ["a", "b", "c"]).axes[0]
    assert [text.get_text() for text in ax.texts] == ["1", "1", "0", "0", "2", "0", "1", "0", "0"]
    assert [label.get_text() for label in ax.get_xticklabels()] == ["a", "b", "c"]
    assert ax.get_title() == "held-out rows of every fold: 5, 60.0% on the diagonal"


def test_a_result_whose_run_names_a_metric_its_scores_lack_is_read_as_not_written(tmp_path):
    """A run stopped between writing metrics.json and run.json after `evaluate.metric` changed: the report shows
    the experiment as not run, not a KeyError."""
    (tmp_path / "metrics.json").write_text(json.dumps({"accuracy": {"mean": 0.9, "std": 0.0, "folds": [0.9]}}))
    (tmp_path / "run.json").write_text(json.dumps({"metric": "rmse", "n_folds": 1}))
    assert read_experiment(tmp_path) is None
    (tmp_path / "run.json").write_text(json.dumps({"metric": "accuracy", "n_folds": 1}))
    assert read_experiment(tmp_path)["folds"] == [0.9]


def test_a_sweep_whose_files_name_different_metrics_is_read_as_not_written(tmp_path):
    """A sweep stopped between writing sweep.json and best.json after `evaluate.metric` changed."""
    write_sweep_best(tmp_path, {"metric": "accuracy", "score": 0.9, "score_std": 0.01, "n_configs": 2})
    (tmp_path / "sweep.json").write_text(json.dumps({"metric": "f1", "n_configs": 2}))
    assert read_sweep_best(tmp_path) is None
    (tmp_path / "sweep.json").write_text(json.dumps({"metric": "accuracy", "n_configs": 2}))
    assert read_sweep_best(tmp_path)["score"] == 0.9  # a sweep.json of an older kerasflow: no md5 to check


def test_a_sweeps_record_is_read_only_with_the_scores_it_was_written_with(tmp_path):
    """A sweep stopped between writing sweep.json and best.json: its new facts beside the earlier best score."""
    write_sweep_best(tmp_path, {"metric": "accuracy", "score": 0.9, "score_std": 0.01, "n_configs": 2})
    assert read_sweep_best(tmp_path) == {"metric": "accuracy", "score": 0.9, "score_std": 0.01, "score_low": None,
                                         "score_high": None, "n_configs": 2}
    earlier = (tmp_path / "best.json").read_text()
    write_sweep_best(tmp_path, {"metric": "accuracy", "score": 0.8, "score_std": 0.02, "n_configs": 3})
    (tmp_path / "best.json").write_text(earlier)
    assert read_sweep_best(tmp_path) is None


def test_a_resumed_sweep_is_unfinished_until_it_exports_again(tmp_path):
    settings = tmp_path / SWEEP_STATE / SWEEP_SETTINGS
    settings.parent.mkdir()
    settings.write_text(json.dumps({"started_at": "2026-12-06T17:40:00+00:00"}))
    assert unfinished_sweep(tmp_path) == "2026-12-06T17:40:00+00:00"
    finish_sweep(tmp_path)
    assert unfinished_sweep(tmp_path) is None
    reopen_sweep(tmp_path)  # `kerasflow tune --resume`: its results, until exported, are the earlier run's
    assert unfinished_sweep(tmp_path) == "2026-12-06T17:40:00+00:00"
    assert json.loads(settings.read_text()) == {"started_at": "2026-12-06T17:40:00+00:00"}


def test_a_dvc_file_dvc_did_not_write_is_named_not_a_traceback(tmp_path):
    """A `.dvc` file left with a merge conflict in it, or edited into something else, is refused naming it: the
    report shows the message in place of the data's facts (`collect` keeps a DataError per data file)."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data/x.csv").write_text("a,y\n1,0\n")
    (tmp_path / "data.dvc").write_text("outs:\n<<<<<<< HEAD\n- md5: 1\n=======\n- md5: 2\n>>>>>>> theirs\n")
    with pytest.raises(DataError, match=r"^.*data\.dvc: not valid YAML: .*; `dvc add` of its output writes it again$"):
        dvc_tracking(tmp_path / "data/x.csv")
    (tmp_path / "data.dvc").write_text("- md5: 1\n")
    with pytest.raises(DataError, match=r"data\.dvc: holds no `outs:` list of the files DVC tracks"):
        dvc_tracking(tmp_path / "data/x.csv")
