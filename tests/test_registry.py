"""DVC's model registry: dvc.yaml declares every experiment's and sweep's model, and `kerasflow predict --model`
resolves a version or stage GTO tagged, in a real git + DVC repo, from the files of the tagged commit."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import BIN, ROOT, git_dvc_repo, run_cli
from helpers import run_checked as _run

from kerasflow.tasks.config.errors import DataError
from kerasflow.tasks.outputs.predict import predict_table
from kerasflow.tasks.outputs.registry import model_folder


def test_every_experiment_and_sweep_of_params_yaml_is_a_registered_model():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    artifacts = yaml.safe_load((ROOT / "dvc.yaml").read_text())["artifacts"]
    expected = {name: f"results/{name}/model" for name in [*params["experiments"], *params["continued"]]}
    expected |= {f"{name}-best": f"results/{name}/tune/best_model" for name in params["sweeps"]}
    assert {name: artifact["path"] for name, artifact in artifacts.items()} == expected
    assert {artifact["type"] for artifact in artifacts.values()} == {"model"}


def _files(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())}


FETCH = """
import hashlib, json, sys
from pathlib import Path
from kerasflow.tasks.outputs.registry import model_folder

found = {}
for reference in sys.argv[2:]:
    with model_folder(reference, sys.argv[1]) as folder:
        found[reference] = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}
print(json.dumps(found))
"""


def _fetched(root: Path, *references: str) -> dict[str, dict[str, str]]:
    """Each reference's model files (their hashes), as `model_folder` fetches them, in a process of its own: DVC's
    import wraps the process's stderr (colorama), which must not outlive pytest's capture of one test."""
    result = subprocess.run([sys.executable, "-c", FETCH, str(root), *references], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


@pytest.mark.slow
def test_predict_through_a_registered_version_and_stage(project, prefect_server):
    env = git_dvc_repo(project, prefect_server)
    pipeline = yaml.safe_load((project / "dvc.yaml").read_text())
    pipeline["artifacts"] = {"iris": {"path": "results/iris/model", "type": "model", "labels": ["tabular"]}}
    (project / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    gto = str(BIN / "gto")

    def train_and_register(epochs: int, version: str) -> dict[str, str]:
        params = yaml.safe_load((project / "params.yaml").read_text())
        params["experiments"]["iris"]["train"]["epochs"] = epochs
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        _run(["dvc", "repro", "--single-item", "evaluate@iris"], project, env)
        _run(["git", "add", "-A"], project, env)
        _run(["git", "commit", "-qm", f"iris, {epochs} epochs"], project, env)
        _run([gto, "register", "iris", "--version", version], project, env)
        return _files(project / "results/iris/model")

    first = train_and_register(2, "v1.0.0")
    shutil.copytree(project / "results/iris/model", project.parent / "v1.0.0")
    _run([gto, "assign", "iris", "--version", "v1.0.0", "--stage", "prod"], project, env)
    second = train_and_register(15, "v1.1.0")
    assert first != second

    # A version is read from its tagged commit, out of DVC's cache, whatever the working folder holds (v1.1.0 now).
    fetched = _fetched(project, "iris@v1.0.0", "iris#prod", "iris@v1.1.0", "iris")
    assert fetched["iris@v1.0.0"] == fetched["iris#prod"] == first
    assert fetched["iris@v1.1.0"] == fetched["iris"] == second  # no version named: the latest
    result = run_cli(["predict", "--model", "iris#prod", "--input", "data/iris.csv", "--output", "prod.csv"],
                     cwd=project, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = predict_table(project.parent / "v1.0.0", pd.read_csv(project / "data/iris.csv"))
    pd.testing.assert_frame_equal(pd.read_csv(project / "prod.csv"), expected, check_dtype=False, rtol=1e-6)

    refused = run_cli(["predict", "--model", "iris#staging", "--input", "data/iris.csv", "--output", "s.csv"],
                      cwd=project, env=env)
    assert refused.returncode == 2 and not (project / "s.csv").exists()
    assert refused.stderr.strip().splitlines() == [
        "kerasflow: error: --model iris#staging: no such folder, and no registered model iris in stage 'staging' "
        "(dvc.yaml declares: iris)"]
    with pytest.raises(DataError, match=r"a version is written with its v, as GTO tags it: iris@v1.0.0"):
        with model_folder("iris@1.0.0", project):
            pass

    # A registered version whose data is in no cache or remote here, and not in the working folder: a fresh clone's.
    for folder in (".dvc/cache", ".dvc/tmp", "results/iris/model"):  # .dvc/tmp: DVC's index of the cache
        shutil.rmtree(project / folder)
    missing = run_cli(["predict", "--model", "iris@v1.0.0", "--input", "data/iris.csv", "--output", "m.csv"],
                      cwd=project, env=env)
    assert missing.returncode == 2 and not (project / "m.csv").exists(), missing.stderr[-3000:]
    (line,) = missing.stderr.strip().splitlines()
    assert line.startswith("kerasflow: error: --model iris@v1.0.0: results/iris/model at ")
    assert line.endswith(" is in neither the local DVC cache nor a DVC remote (run `dvc pull` where it is)")
