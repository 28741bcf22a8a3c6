"""Real DVC in a temporary git repo: repro, nothing-to-do, a changed param reruns only its stage, experiments
compared with `dvc metrics diff`, `dvc exp show` and `dvc plots show` (one line per fold), a sweep rerun by its
own data only."""

from __future__ import annotations

import ast
import hashlib
import itertools
import json
import os
import re
import shutil
import time

import pytest
import yaml
from helpers import ROOT, git_dvc_repo, read_trials, tiny_params
from helpers import run_checked as _run

from kerasflow.tasks.config.errors import SweepError
from kerasflow.tasks.config.schema import parse_params
from kerasflow.tasks.data.table import file_md5
from kerasflow.tasks.outputs.metrics import read_experiment
from kerasflow.tasks.report import collect as report
from kerasflow.tasks.sweep.dvc_experiments import check_repository, config_params


@pytest.fixture
def repo(project, prefect_server):
    return project, git_dvc_repo(project, prefect_server)


def test_repro_then_nothing_then_only_the_changed_experiment(repo):
    path, env = repo
    first = _run(["dvc", "repro"], path, env)
    for stage in ("evaluate@iris", "evaluate@diabetes", "report"):
        assert f"Running stage '{stage}'" in first.stdout
    assert read_experiment(path / "results/iris")["n_folds"] == 3
    assert (path / "results/iris/model/model.keras").is_file()
    summary = (path / "reports/summary.md").read_text()
    assert "| diabetes | mse |" in summary
    # DVC 3 records a file's plain md5: the report's hash of the bytes is the one in data.dvc's manifest.
    tracked = report.dvc_tracking(path / "data/iris.csv")
    assert tracked is not None and tracked[0] == path / "data.dvc"
    assert tracked[2] == file_md5(path / "data/iris.csv") == hashlib.md5(
        (path / "data/iris.csv").read_bytes()).hexdigest()
    assert f"{tracked[2]} (as recorded in data.dvc {tracked[1]})" in summary
    assert (path / "reports/report.html").read_text().count("data:image/png;base64,") == 6

    plots = json.loads(_run(["dvc", "plots", "show", "--json"], path, env).stdout)["data"]
    (iris,) = plots["results/iris/history/plots/custom/folds.json"]
    encoding, values = iris["content"]["encoding"], iris["content"]["data"]["values"]
    assert encoding["color"]["field"] == "fold" and encoding["y"]["field"] == "val_loss"
    assert sorted({row["fold"] for row in values}) == [0, 1, 2] and len(values) == 3 * 15

    second = _run(["dvc", "repro"], path, env)
    assert "Running stage" not in second.stdout
    assert "Data and pipelines are up to date" in second.stdout

    # A changed param puts only its own experiment's stage out of date.
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["experiments"]["iris"]["train"]["epochs"] = 10
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = _run(["dvc", "status"], path, env).stdout
    assert "evaluate@iris" in status and "evaluate@diabetes" not in status
    _run(["git", "checkout", "--", "params.yaml"], path, env)

    # An experiment with a param set on the command line reruns only that experiment's stage (and the report),
    # and is compared with the committed baseline.
    _run(["git", "add", "-A"], path, env)
    _run(["git", "commit", "-qm", "baseline"], path, env)
    ran = _run(["dvc", "exp", "run", "-n", "one-epoch", "-S", "experiments.diabetes.train.epochs=1"], path, env)
    assert "Running stage 'evaluate@diabetes'" in ran.stdout and "Running stage 'evaluate@iris'" not in ran.stdout
    diff = json.loads(_run(["dvc", "metrics", "diff", "HEAD", "one-epoch", "--json"], path, env).stdout)
    changed = diff["results/diabetes/metrics.json"]
    assert changed["mse.mean"]["old"] != changed["mse.mean"]["new"]
    assert not diff.get("results/iris/metrics.json")
    shown = _run(["dvc", "exp", "show", "--csv", "--no-pager"], path, env).stdout
    header, *rows = shown.splitlines()
    assert "mean" in header and "one-epoch" in {row.split(",")[0] for row in rows}
    compared = json.loads(_run(["dvc", "plots", "diff", "--json", "--targets",
                                "results/diabetes/history/plots/custom/folds.json", "--", "HEAD", "one-epoch"],
                               path, env).stdout)
    (curves,) = compared["data"]["results/diabetes/history/plots/custom/folds.json"]
    assert {(row["rev"], row["fold"]) for row in curves["content"]["data"]["values"]} == {
        (rev, fold) for rev in ("HEAD", "one-epoch") for fold in (0, 1)}


def _stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def _out_of_date(output: str) -> set[str]:
    """The stages `dvc status` lists (its unindented `<stage>:` lines)."""
    return set(re.findall(r"^(\S+):$", output, flags=re.MULTILINE))


def test_a_configs_dvc_experiment_holds_the_experiment_the_config_trained():
    """`kerasflow tune --dvc-exp` writes each config into the experiment's params.yaml: read back, the experiment is
    the one the config trained (`with_overrides`), also where the file leaves a swept key at its default: the
    shipped grid's `model.initializer` (no layer writes one), a learning rate the experiment does not write."""
    text = (ROOT / "params.yaml").read_text()
    params = parse_params(yaml.safe_load(text))
    space = params.sweeps["cancer_mlp"].space
    configs = [dict(zip(space, values)) for values in itertools.product(*(space[key]["grid"] for key in space))]
    configs.append({"train.learning_rate": 0.003, "model.widths": [6, 3], "model.initializer": "he_normal"})
    trained = params.experiments["cancer_mlp"]
    for config in configs:
        written = parse_params(yaml.safe_load(config_params(text, "cancer_mlp", config))).experiments["cancer_mlp"]
        assert written.model_dump() == trained.with_overrides(config).model_dump(), config
    assert len({config_params(text, "cancer_mlp", config) for config in configs}) == len(configs)


def test_dvc_exp_is_refused_where_a_configs_record_could_not_be_saved(tmp_path):
    """Each config's DVC experiment holds its record in the sweep's folder, `--results` included: one outside the
    project, or one git ignores (DVC saves no dvc.yaml git ignores), is refused before the sweep, not after it."""
    project = tmp_path / "project"
    (project / ".dvc").mkdir(parents=True)
    (project / "params.yaml").write_text("experiments: {}\n")
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "PATH": os.environ["PATH"]}
    for args in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        _run(args, project, env)
    shutil.copy(ROOT / ".gitignore", project / ".gitignore")
    check_repository(project, project / "params.yaml", project / "elsewhere/iris/tune")
    check_repository(project, project / "params.yaml", project / "results/iris/tune")  # the shipped .gitignore
    with pytest.raises(SweepError, match=r"--dvc-exp: --results .*/outside is outside the DVC project"):
        check_repository(project, project / "params.yaml", tmp_path / "outside/iris/tune")
    (project / ".gitignore").write_text("results/\n")
    with pytest.raises(SweepError, match=re.escape(
            "--dvc-exp: each config's record, results/iris/tune/config/, is ignored by git (.gitignore line 1: "
            "results/), and DVC saves no experiment file git ignores; narrow that rule so that it leaves the record "
            "out, as kerasflow's own .gitignore does, or run without --dvc-exp")):
        check_repository(project, project / "params.yaml", project / "results/iris/tune")


def test_a_sweep_is_out_of_date_when_its_own_data_changes_not_when_another_csv_is_added(project, bundled_data,
                                                                                        prefect_server, ray_server):
    """The tune stage depends on its experiment's data file (through evaluate's dataset.json), not on the whole
    `data` folder: bringing a new CSV puts only its own experiment out of date, as README's "Bring your own CSV"
    says."""
    params = tiny_params()
    del params["experiments"]["diabetes"]  # its CSV stays in data/: one more file the sweep must not follow
    params["experiments"]["iris"]["train"]["epochs"] = 2
    params["sweeps"] = {"iris": {"space": {"train": {"optimizer": {"grid": ["adam", "sgd"]}}}, "keep_checkpoints": 1}}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**git_dvc_repo(project, prefect_server), **ray_server}  # its four sweeps on a Ray kept running
    first = _run(["dvc", "repro"], project, env)
    assert _stages_run(first.stdout) == {"evaluate@iris", "tune@iris", "report"}
    recorded = json.loads((project / "results/iris/dataset.json").read_text())
    assert recorded == {"file": "data/iris.csv", "md5": file_md5(project / "data/iris.csv")}

    shutil.copy(bundled_data / "wine.csv", project / "data/wine.csv")
    params["experiments"]["wine"] = {**params["experiments"]["iris"],
                                     "dataset": {"file": "data/wine.csv", "target": "cultivar", "task": "multiclass"}}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(["dvc", "add", "-q", "data"], project, env)
    assert _out_of_date(_run(["dvc", "status"], project, env).stdout) == {"evaluate@wine", "report"}

    # One row fewer in iris.csv: its evaluation reruns, after which its sweep is out of date for its data.
    rows = (project / "data/iris.csv").read_text().splitlines(keepends=True)
    (project / "data/iris.csv").write_text("".join(rows[:-1]))
    _run(["dvc", "add", "-q", "data"], project, env)
    assert "evaluate@iris" in _out_of_date(_run(["dvc", "status"], project, env).stdout)
    _run(["dvc", "repro", "--single-item", "evaluate@iris"], project, env)
    status = _run(["dvc", "status", "tune@iris"], project, env).stdout
    assert _out_of_date(status) == {"tune@iris"} and re.search(r"modified:\s+results/iris/dataset.json", status)

    # The space nests as params.yaml does, so DVC's own override syntax reaches into it (dotted keys could not be).
    tried = _run(["dvc", "exp", "run", "-S", "sweeps.iris.space.train.optimizer.grid=[sgd]", "tune@iris"], project, env)
    assert _stages_run(tried.stdout) == {"tune@iris"}
    space = yaml.safe_load((project / "params.yaml").read_text())["sweeps"]["iris"]["space"]
    assert space == {"train": {"optimizer": {"grid": ["sgd"]}}}
    assert [row["param:train.optimizer"] for row in read_trials(project / "results/iris/tune")] == ["sgd"]

    # The metrics DVC compares are scores only: times and versions are in the run.json and sweep.json beside them,
    # so a rerun with nothing changed, which gives the same scores (tests/faults/test_determinism.py), shows no
    # metric change.
    _run(["git", "add", "-A"], project, env)
    _run(["git", "commit", "-qm", "the sgd sweep"], project, env)
    shown = json.loads(_run(["dvc", "metrics", "show", "--json"], project, env).stdout)
    metrics = shown[""]["data"]
    assert set(metrics["results/iris/metrics.json"]["data"]) == {"accuracy"}
    assert set(metrics["results/iris/tune/best.json"]["data"]) == {"accuracy"}

    # `--dvc-exp`: each config becomes a DVC experiment holding the workspace's params (a grid of two, not
    # committed) with the config applied, and the config's score; applying the best one and reproducing the
    # experiment's evaluation gives that score again (the sweep scores with the experiment's own folds).
    edited = yaml.safe_load((project / "params.yaml").read_text())
    edited["sweeps"]["iris"]["space"]["train"]["optimizer"]["grid"] = ["sgd", "adam"]
    del edited["experiments"]["wine"]  # never run: `dvc exp apply` would find no model of it to check out
    (project / "params.yaml").write_text(yaml.safe_dump(edited, sort_keys=False))
    before = _run(["git", "status", "--porcelain", "--", ":!results"], project, env).stdout
    tuned = _run(["kerasflow", "tune", "iris", "--dvc-exp"], project, env)
    trials = {row["config_id"]: row for row in read_trials(project / "results/iris/tune")}
    saved = {f"iris-{config}" for config in trials}
    assert "2 configs saved as DVC experiments (dvc exp show): " in tuned.stdout
    assert _run(["git", "worktree", "list"], project, env).stdout.count("\n") == 1  # the temporary one is gone
    assert _run(["git", "status", "--porcelain", "--", ":!results"], project, env).stdout == before
    experiments = {rev["name"]: rev["data"]
                   for baseline in json.loads(_run(["dvc", "exp", "show", "--json"], project, env).stdout)
                   for experiment in baseline.get("experiments") or [] for rev in experiment["revs"]}
    assert saved <= set(experiments)
    for name in saved:
        row = trials[name.removeprefix("iris-")]
        data = experiments[name]
        assert data["params"]["params.yaml"]["data"]["experiments"]["iris"]["train"]["optimizer"] == \
            row["param:train.optimizer"]
        score = data["metrics"]["results/iris/tune/config/metrics.json"]["data"]["accuracy"]
        assert score == {"mean": float(row["score"]), "std": float(row["score_std"])}
    best = next(iter(trials.values()))
    _run(["git", "add", "-A"], project, env)
    _run(["git", "commit", "-qm", "a grid of two"], project, env)
    _run(["dvc", "exp", "apply", f"iris-{best['config_id']}"], project, env)
    applied = yaml.safe_load((project / "params.yaml").read_text())
    assert applied["experiments"]["iris"]["train"]["optimizer"] == best["param:train.optimizer"]
    _run(["dvc", "repro", "--single-item", "evaluate@iris"], project, env)
    assert read_experiment(project / "results/iris")["mean"] == pytest.approx(float(best["score"]), rel=1e-6)


def _imported_modules(path: str, top_level_only: bool = False) -> set[str]:
    """The kerasflow modules (tasks/**.py, flows/*.py) a source file imports, as repository paths."""
    tree = ast.parse((ROOT / path).read_text())
    found = set()
    for node in (tree.body if top_level_only else ast.walk(tree)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kerasflow."):
            folder = node.module.removeprefix("kerasflow.").replace(".", "/")
            found.add(folder + ".py")
            found |= {f"{folder}/{alias.name}.py" for alias in node.names}  # `from kerasflow.tasks.x import module`
    return {module for module in found if (ROOT / module).is_file()}


def _code_closure(roots: list[str]) -> set[str]:
    """`roots` and every kerasflow module they import, directly or not (flows/cli.py: its module-level imports
    only; the rest are other commands')."""
    seen, todo = set(), list(roots)
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo += _imported_modules(path, top_level_only=path == "flows/cli.py")
    return seen


# Code that runs in a stage but cannot change its outputs: no stage depends on it, so editing it reruns nothing.
NEUTRAL = ("flows/cli.py", "flows/parameters.py", "flows/prefect_server.py", "flows/local_server.py",
           "tasks/runtime/")
# The report's code: the pipeline publishes the same summary as a Prefect artifact, but no file an evaluate or
# tune stage writes depends on it, so changing the report must not rerun training.
REPORT = ("tasks/report/", "flows/report.py")


def _covered(module: str, deps: list[str]) -> bool:
    return any(module == dep or module.startswith(dep.rstrip("/") + "/") for dep in deps)


def test_each_stage_depends_on_the_code_folders_it_runs():
    """A module missing from a stage's deps would let `dvc repro` keep results the new code would change; a
    folder listed but not run, or neutral code listed, would rerun training for nothing."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    deps = {name: [dep for dep in (stage.get("do", stage))["deps"] if dep.startswith(("tasks", "flows"))]
            for name, stage in stages.items()}
    runs = {"evaluate": _code_closure(["flows/cli.py", "flows/pipeline.py"]),
            "tune": _code_closure(["flows/cli.py", "flows/sweep.py"]),
            "report": _code_closure(["flows/cli.py", "flows/report.py"])}
    for name, closure in runs.items():
        ignored = NEUTRAL if name == "report" else (*NEUTRAL, *REPORT)
        needed = {module for module in closure if not module.startswith(ignored)}
        if name == "report":  # the report reads results and data; the training code that wrote them is not its own,
            # but the model code that draws its augmented images is, and the statistics of its intervals
            needed = {module for module in needed if module.startswith(("tasks/config/", "tasks/data/", *REPORT))
                      or module in ("tasks/outputs/metrics.py", "tasks/training/models.py",
                                    "tasks/training/statistics.py")}
        assert {module for module in needed if not _covered(module, deps[name])} == set(), name
        assert [dep for dep in deps[name] if not any(_covered(module, [dep]) for module in needed)] == [], name
        assert [dep for dep in deps[name] if dep.startswith(ignored)] == [], name



def test_dvc_reads_a_runs_history_while_it_trains(project, prefect_server):
    """The history is on disk as the folds train: DVC's own `metrics show` and `plots show` read the epochs so far
    in the middle of a run (what `dvc exp show`, DVC's VS Code extension and Studio read)."""
    from faults.support import kill_group, start_cli

    params = tiny_params()
    params["experiments"]["iris"]["train"]["epochs"] = 5000  # minutes: stopped once DVC has seen it under way
    del params["experiments"]["diabetes"]
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = git_dvc_repo(project, prefect_server)
    run = start_cli(["run", "iris"], project, env, project.parent / "run.log")
    try:
        history = project / "results/iris/history/metrics.json"
        deadline = time.monotonic() + 300
        while not history.is_file() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        shown = json.loads(_run(["dvc", "metrics", "show", "--json"], project, env).stdout)
        live = shown[""]["data"]["results/iris/history/metrics.json"]["data"]
        plotted = json.loads(_run(["dvc", "plots", "show", "--json"], project, env).stdout)["data"]
        (table,) = plotted["results/iris/history/plots/custom/folds.json"]
        assert run.poll() is None, "the run ended before DVC read its history"
    finally:
        kill_group(run)
    assert 0 < live["epoch"] < 5000 and set(live) == {"epoch", "loss", "val_loss", "accuracy", "val_accuracy"}
    rows = table["content"]["data"]["values"]
    assert {row["fold"] for row in rows} == {0, 1, 2} and 0 < max(row["epoch"] for row in rows) < 5000
    assert not (project / "results/iris/metrics.json").exists()  # the scores come when the run ends
