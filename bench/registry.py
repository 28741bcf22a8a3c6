"""What `kerasflow predict` pays to find its model through DVC's registry: `--model NAME#STAGE` (the tag looked
up, the model read from DVC's cache at the tagged commit) against `--model <folder>`, side by side.

Run from the repository root (after `make install` and `kerasflow data`):

    .venv/bin/python bench/registry.py               # 5 repeats
    .venv/bin/python bench/registry.py --repeats 3

It trains params.yaml's `iris_mlp` model briefly (the plain functions, 5 epochs; its size, not its accuracy,
matters here), saves it as `kerasflow run` does into a new git + DVC repository in a temporary folder (`dvc add`,
dvc.yaml's `artifacts:` declaring it, one commit, `gto register` v1.0.0 and `gto assign` prod), then times, the
repeats interleaved and each figure the median:

- resolve: `model_folder("iris_mlp#prod")` in-process: the GTO tag lookup and the fetch from DVC's cache into a
           temporary folder (what the registry adds; the folder path costs nothing);
- predict, folder:    `kerasflow predict --model <folder> --input data/iris.csv --output <csv>`, a fresh process;
- predict, registry:  the same with `--model iris_mlp#prod`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from kerasflow.tasks.config.schema import load_params
from kerasflow.tasks.data.table import load_table
from kerasflow.tasks.outputs.registry import model_folder
from kerasflow.tasks.outputs.results import write_model
from kerasflow.tasks.training.evaluate import encode_labels, refit

BIN = Path(sys.executable).parent
NAME = "iris_mlp"


def registered_repo(root: Path) -> dict[str, str]:
    """`root` made a git + DVC repository with the model registered and in stage prod; the environment to use."""
    spec = load_params("params.yaml").experiments[NAME]
    spec = spec.model_copy(update={"train": spec.train.model_copy(update={"epochs": 5})})
    table = load_table(spec.dataset)
    write_model(root / "model", spec, refit(spec, table, encode_labels(spec, table)))
    shutil.copytree("data", root / "data")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "GIT_AUTHOR_NAME": "b",
           "GIT_AUTHOR_EMAIL": "b@example.com", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.com"}
    (root / "dvc.yaml").write_text(yaml.safe_dump({"artifacts": {NAME: {"path": "model", "type": "model"}}}))
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "add", "-q", "model"],
                    ["git", "add", "-A"], ["git", "commit", "-qm", "model"],
                    ["gto", "register", NAME, "--version", "v1.0.0"],
                    ["gto", "assign", NAME, "--version", "v1.0.0", "--stage", "prod"]):
        subprocess.run(command, cwd=root, env=env, check=True, capture_output=True)
    return env


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        env = registered_repo(root)
        seconds: dict[str, list[float]] = {"resolve": [], "predict, folder": [], "predict, registry": []}
        predict = [str(BIN / "kerasflow"), "predict", "--input", "data/iris.csv", "--output", "out.csv", "--model"]
        for _ in range(args.repeats):
            start = time.perf_counter()
            with model_folder(f"{NAME}#prod", root) as folder:
                assert (folder / "model.keras").is_file()
            seconds["resolve"].append(time.perf_counter() - start)
            seconds["predict, folder"].append(timed([*predict, "model"], root, env))
            seconds["predict, registry"].append(timed([*predict, f"{NAME}#prod"], root, env))
    median = {what: statistics.median(values) for what, values in seconds.items()}
    for what, value in median.items():
        print(f"{what:<18} {value:6.2f} s")
    print(f"registry / folder: {median['predict, registry'] / median['predict, folder']:.2f}x "
          f"(+{median['predict, registry'] - median['predict, folder']:.2f} s)")


if __name__ == "__main__":
    main()
