"""Honest comparisons: the corrected resampled t-test and `kerasflow compare` on two experiments' folds.

The statistic is checked against SciPy's paired t-test with the correction off, and against hand-computed values
with it on; the command pairs two real runs' fold scores and refuses pairs that were not scored on the same folds.
"""

from __future__ import annotations

import contextlib
import json
import math
import re

import numpy as np
import pytest
import yaml
from helpers import run_in_process, tiny_params
from scipy import stats

from kerasflow.tasks.config.errors import ParamsError
from kerasflow.tasks.config.schema import parse_params
from kerasflow.tasks.report import tables
from kerasflow.tasks.report.collect import collect
from kerasflow.tasks.report.compare import compare
from kerasflow.tasks.report.html import render_html
from kerasflow.tasks.report.markdown import render_markdown
from kerasflow.tasks.training.statistics import corrected_t


def test_uncorrected_it_is_scipys_paired_t_test():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.80, 0.03, size=10), rng.normal(0.82, 0.03, size=10)
    ours = corrected_t(b - a, test_train_ratio=1 / 9, corrected=False)
    theirs = stats.ttest_rel(b, a)
    assert math.isclose(ours.t, theirs.statistic, rel_tol=1e-12)
    assert math.isclose(ours.p, theirs.pvalue, rel_tol=1e-9)
    low, high = theirs.confidence_interval(0.95)
    assert math.isclose(ours.low, low, rel_tol=1e-9) and math.isclose(ours.high, high, rel_tol=1e-9)


def test_corrected_it_matches_the_hand_computed_statistic_and_is_more_cautious():
    # 10-fold CV: each fold holds out 1/9 as many rows as it trains on. Differences with mean 0.01, sample sd 0.02:
    # plain t = 0.01 / (0.02 / sqrt(10)) = 1.5811; corrected t = 0.01 / (0.02 * sqrt(1/10 + 1/9)) = 1.0882.
    differences = 0.01 + 0.02 * np.array([1, -1, 1, -1, 1, -1, 1, -1, 1, -1]) * math.sqrt(9 / 10)
    assert math.isclose(np.std(differences, ddof=1), 0.02, rel_tol=1e-12)
    plain, corrected = corrected_t(differences, 1 / 9, corrected=False), corrected_t(differences, 1 / 9)
    assert round(plain.t, 4) == 1.5811 and round(corrected.t, 4) == 1.0882
    assert math.isclose(corrected.p, 2 * stats.t.sf(1.08821, 9), rel_tol=1e-4)
    assert corrected.p > plain.p and corrected.high - corrected.low > plain.high - plain.low


@pytest.mark.slow
def test_compare_pairs_two_runs_fold_by_fold_and_refuses_other_folds(project, configured_server):
    raw = tiny_params()
    iris = raw["experiments"]["iris"]
    iris["evaluate"] = {"n_splits": 5, "stratify": True, "seed": 1, "refit": False}
    raw["experiments"]["wider"] = json.loads(json.dumps(iris))
    raw["experiments"]["wider"]["model"]["layers"][0]["units"] = 12
    raw["experiments"]["other_seed"] = {**json.loads(json.dumps(iris)), "evaluate": {**iris["evaluate"], "seed": 2}}
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    status, _, err = run_in_process(["run", "iris", "wider", "other_seed"], project)
    assert status == 0, err[-3000:]

    status, out, _ = run_in_process(["compare", "iris", "wider", "--json"], project)
    assert status == 0
    result = json.loads(out)
    scores = {name: json.loads((project / f"results/{name}/metrics.json").read_text())["accuracy"]["folds"]
              for name in ("iris", "wider")}
    expected = corrected_t(np.subtract(scores["wider"], scores["iris"]), test_train_ratio=30 / 120)
    assert result["difference"]["of"] == "wider - iris" and result["difference"]["folds"] == 5
    assert math.isclose(result["difference"]["p"], expected.p) and result["test_train_ratio"] == 0.25
    assert result["means"]["iris"]["mean"] == pytest.approx(np.mean(scores["iris"]))
    status, out, _ = run_in_process(["compare", "iris", "wider"], project)
    assert status == 0 and "difference" in out and "(wider - iris)" in out and "paired folds" in out

    status, _, err = run_in_process(["compare", "iris", "other_seed"], project)
    assert status == 2 and err.strip() == (
        "kerasflow: error: iris and other_seed were not scored on the same folds, so their fold scores do not pair: "
        "results/iris/run.json records evaluate.seed 1, results/other_seed/run.json 2")
    status, _, err = run_in_process(["compare", "iris", "iris"], project)
    assert status == 2 and err.strip() == "kerasflow: error: compare: expected two different experiments, " \
                                          "received 'iris' twice"

    # Runs pair by the folds they were scored on, as their run.json records them, not by params.yaml as it is now:
    # wider's seed changed since it ran, and it still pairs with iris, not with other_seed.
    raw["experiments"]["wider"]["evaluate"]["seed"] = 2
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    status, out, _ = run_in_process(["compare", "iris", "wider", "--json"], project)
    assert status == 0 and math.isclose(json.loads(out)["difference"]["p"], expected.p)
    # A setting k-fold does not read (a hold-out's test_size) does not keep runs apart.
    wider_run = project / "results/wider/run.json"
    recorded = wider_run.read_text()
    record = json.loads(recorded)
    record["fold_settings"]["evaluate.test_size"] = 0.5
    wider_run.write_text(json.dumps(record))
    status, out, _ = run_in_process(["compare", "iris", "wider", "--json"], project)
    assert status == 0 and math.isclose(json.loads(out)["difference"]["p"], expected.p)
    wider_run.write_text(recorded)
    # The report pairs every two runs on the same folds, and gives each run its interval; diabetes (other data,
    # not run) is in neither, other_seed (other folds) in no pair.
    with contextlib.chdir(project):
        report = collect(project / "results", parse_params(raw).experiments)
    (comparison,) = report.comparisons
    assert comparison.names == ("iris", "wider") and math.isclose(comparison.difference.p, expected.p)
    assert set(report.intervals) == {"iris", "wider", "other_seed"}
    (row,) = tables.differences(report).to_dict("records")
    assert row["experiments"] == "wider − iris" and row["folds"] == 5
    # The difference in the report's format, its zeros kept, and set as a number in the HTML.
    assert row["difference"] == tables.shown(comparison.difference.mean) and isinstance(row["difference"],
                                                                                         tables.Number)
    assert re.search(r'<td class="data row0 col2 num" >-?\d+\.\d{4}</td>', render_html(report))
    assert "## Differences on the same folds (corrected resampled t-test)" in render_markdown(report)

    # Folds that start from a saved model (a continued experiment's, as its run.json records it) pair with no
    # others: it has trained on every held-out row.
    run_json = project / "results/wider/run.json"
    run_json.write_text(json.dumps({**json.loads(run_json.read_text()), "init_from": {
        "path": "results/iris/model", "model_md5": "0" * 32, "preprocessing_md5": "1" * 32}}))
    with contextlib.chdir(project):
        assert collect(project / "results", parse_params(raw).experiments).comparisons == []
    with pytest.raises(ParamsError, match=r"^iris and wider start their folds from different models \(iris from "
                                          r"scratch and wider from results/iris/model; train.init_from\)"):
        compare(("iris", "wider"), project / "results")
    # The same folder with other files: the saved model was refitted between the two runs.
    iris_json = project / "results/iris/run.json"
    saved_iris = iris_json.read_text()
    iris_json.write_text(json.dumps({**json.loads(saved_iris), "init_from": {
        "path": "results/iris/model", "model_md5": "2" * 32, "preprocessing_md5": "1" * 32}}))
    with pytest.raises(ParamsError, match=r"results/iris/run.json and \S+/results/wider/run.json record different "
                                          r"model files in results/iris/model \(model_md5 2{32} vs 0{32}\): it "
                                          r"was refitted between the two runs"):
        compare(("iris", "wider"), project / "results")
    iris_json.write_text(saved_iris)
    # A run.json from before runs recorded their folds pairs with nothing.
    run_json.write_text(json.dumps({key: value for key, value in json.loads(run_json.read_text()).items()
                                    if key not in ("fold_settings", "init_from")}))
    status, _, err = run_in_process(["compare", "iris", "wider"], project)
    assert status == 2 and err.strip() == ("kerasflow: error: results/wider/run.json: records no fold settings (an "
                                           "older kerasflow wrote it); run the experiment again (kerasflow run "
                                           "wider)")
    # The report says why it gives that run no interval.
    with contextlib.chdir(project):
        rows = tables.scores(collect(project / "results", parse_params(raw).experiments)).to_dict("records")
    assert [row["95% interval"] for row in rows if row["experiment"] == "wider"] == [
        "none: run.json records no fold settings; kerasflow run wider again"]
