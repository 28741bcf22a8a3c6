"""A sweep's configs as DVC experiments (`kerasflow tune --dvc-exp`): `dvc exp show` lists one per config, with its
params and score, and `dvc exp apply` of one puts its params in the workspace, where `dvc repro` reproduces it.

Each experiment is the workspace as the sweep read it (HEAD plus the workspace's changes to tracked files), with
the config's params written into the params file and the config's record in `<results>/<experiment>/tune/config/`
(the --results folder):
its score (``metrics.json``, keyed by the metric as best.json is), its folds' per-epoch history, and a dvc.yaml
declaring both, as dvclive's own experiments do. `dvc exp save` records them from a temporary git worktree, so the
workspace, its dvc.lock and DVC's cache are untouched, and nothing in an experiment claims a pipeline stage ran
under the config's params: dvc.lock is the workspace's, and `dvc status` at the experiment says which stages the
params put out of date.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.util import load_yaml_guess_indent

from kerasflow.tasks.config.errors import SweepError
from kerasflow.tasks.config.overrides import apply_overrides
from kerasflow.tasks.outputs.metrics import row_params

RECORD = "config"
"""The folder under a sweep's `tune/` that holds, in each experiment, the config's score and history."""

RECORD_DVC_YAML = """\
# The sweep config this DVC experiment records (kerasflow tune --dvc-exp): its score, and each fold's validation
# loss per epoch. It exists in the experiments only (and in the workspace after `dvc exp apply`).
metrics:
  - metrics.json
plots:
  - history/plots/custom/folds.json:
      x: epoch
      y: val_loss
      template: folds
"""


def experiment_name(experiment: str, config: str) -> str:
    """The DVC experiment of config `config` (its id) of experiment `experiment`'s sweep.

    Examples
    --------
    >>> experiment_name("cancer_mlp", "10265a61")
    'cancer_mlp-10265a61'
    """
    return f"{experiment}-{config}"


def config_params(text: str, experiment: str, config: dict[str, Any]) -> str:
    """The params file `text` with `config` (dotted keys, as a sweep's) applied to `experiments.<experiment>`;
    comments, order and layout are kept, so the experiment's params differ from the workspace's by the config alone.
    A key the file leaves at its default is written in (`train.learning_rate`, each layer's `initializer` for
    `model.initializer`).

    Examples
    --------
    >>> print(config_params("experiments:\\n  a:\\n    train: {epochs: 10, seed: 1}  # the book's\\n", "a",
    ...                     {"train.epochs": 5}), end="")
    experiments:
      a:
        train: {epochs: 5, seed: 1}   # the book's
    """
    document, indent, dash_offset = load_yaml_guess_indent(text)  # round-trip: comments, order, flow style kept
    yaml = YAML()
    yaml.indent(mapping=2, sequence=indent, offset=dash_offset)  # block lists indented as the file indents them
    yaml.width = 4096  # lines are not re-wrapped
    apply_overrides(document["experiments"][experiment], config, sparse=True)
    out = io.StringIO()
    yaml.dump(document, out)
    return out.getvalue()


def _git(args: list[str], cwd: Path, input: bytes = b"") -> bytes:
    """git's output for `args` run in `cwd`; a failure is a SweepError with git's message."""
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, input=input)
    if done.returncode != 0:
        raise SweepError(f"--dvc-exp: git {' '.join(args[:2])} in {cwd} failed: "
                         f"{done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def check_repository(project: Path, params_file: Path, tune_dir: Path) -> None:
    """Refuse, before a sweep starts, a project where experiments cannot be saved: DVC experiments are git commits
    on top of HEAD, in a DVC project, with the params file and each config's record (in the sweep's folder
    `tune_dir`) inside it, the record not ignored by git (DVC saves no dvc.yaml git ignores)."""
    if not (project / ".dvc").is_dir():
        raise SweepError(f"--dvc-exp: {project.resolve()} is not a DVC project (no .dvc folder); run `dvc init` "
                         f"there, or run without --dvc-exp")
    if subprocess.run(["git", "rev-parse", "--verify", "--quiet", "HEAD"], cwd=project, capture_output=True).returncode:
        raise SweepError(f"--dvc-exp: {project.resolve()} has no git commit to base experiments on; commit the "
                         f"project first (git add -A && git commit), or run without --dvc-exp")
    if not params_file.resolve().is_relative_to(project.resolve()):
        raise SweepError(f"--dvc-exp: {params_file} is outside the DVC project {project.resolve()}, so experiments "
                         f"cannot record it")
    if not tune_dir.resolve().is_relative_to(project.resolve()):
        raise SweepError(f"--dvc-exp: --results {tune_dir.parent.parent} is outside the DVC project "
                         f"{project.resolve()}, so experiments cannot record the configs' scores there")
    record = (tune_dir.resolve() / RECORD / "dvc.yaml").relative_to(project.resolve())
    ignored = subprocess.run(["git", "check-ignore", "--verbose", "--no-index", str(record)], cwd=project,
                             capture_output=True, text=True)
    if ignored.returncode == 0:  # `<source>:<line>:<pattern>\t<path>`
        source, line, pattern = ignored.stdout.split("\t")[0].split(":", 2)
        raise SweepError(f"--dvc-exp: each config's record, {record.parent}/, is ignored by git ({source} line "
                         f"{line}: {pattern}), and DVC saves no experiment file git ignores; narrow that rule so that "
                         f"it leaves the record out, as kerasflow's own .gitignore does, or run without --dvc-exp")


@contextmanager
def worktree(project: Path) -> Iterator[Path]:
    """A temporary git worktree of HEAD with the workspace's changes to tracked files applied; yields the project's
    folder in it, and removes the worktree on leaving."""
    top = Path(_git(["rev-parse", "--show-toplevel"], project).decode().strip())
    prefix = _git(["rev-parse", "--show-prefix"], project).decode().strip()
    root = Path(tempfile.mkdtemp(prefix="kerasflow-dvc-exp-")) / "worktree"
    _git(["worktree", "add", "--quiet", "--detach", str(root), "HEAD"], top)
    try:
        changes = _git(["diff", "--binary", "HEAD"], top)
        if changes:
            _git(["apply", "--whitespace=nowarn", "-"], root, input=changes)
        yield root / prefix
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(root)], cwd=top, capture_output=True)
        shutil.rmtree(root.parent, ignore_errors=True)


def write_record(folder: Path, metric: str, score: float, score_std: float, history: Path | None) -> None:
    """The config's record in `folder` (replacing what was there): its score, its history if logged, the dvc.yaml."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({metric: {"mean": score, "std": score_std}}, indent=2) + "\n")
    (folder / "dvc.yaml").write_text(RECORD_DVC_YAML)
    if history is not None and history.is_dir():
        shutil.copytree(history, folder / "history")


def save_experiments(project: Path, params_file: Path, tune_dir: Path, experiment: str, metric: str,
                     rows: list[dict[str, Any]], history_root: Path) -> list[str]:
    """Save each scored config of `rows` (trials.csv's rows: ``config_id``, ``param:<key>`` columns, ``score``,
    ``score_std``) as a DVC experiment of `project`, replacing one of the same name; return their names.

    `params_file` is the params file the sweep read and `tune_dir` the sweep's folder
    (`<results>/<experiment>/tune`), both inside `project`: each experiment holds its config's record in
    `tune_dir`'s `config` folder; `history_root` holds each config's history folder, by config id. Configs that did
    not finish (failed, stopped by ASHA, diverged) are in trials.csv only: their scores, if any, are from an earlier
    epoch.
    """
    # Here, not at the top: the module's checks run before the command imports Keras, which the export brings.
    from kerasflow.tasks.sweep.export import finished

    project, params_file = project.resolve(), params_file.resolve()
    text = params_file.read_text()
    record = (tune_dir.resolve() / RECORD).relative_to(project)
    names = []
    with worktree(project) as copy:
        params_copy = copy / params_file.relative_to(project)
        for row in rows:
            if not finished(row):
                continue
            config = row_params(row)
            params_copy.write_text(config_params(text, experiment, config))
            write_record(copy / record, metric, row["score"], row["score_std"], history_root / row["config_id"])
            name = experiment_name(experiment, row["config_id"])
            # The record's dvc.yaml, which has no stages, is the one target: DVC caches nothing, and dvc.lock stays.
            saved = subprocess.run(
                [sys.executable, "-m", "dvc", "exp", "save", "--force", "--name", name,
                 "--include-untracked", str(record), "--include-untracked", str(params_copy.relative_to(copy)),
                 "--message", f"kerasflow tune {experiment}: config {row['config_id']} {config}",
                 str(record / "dvc.yaml")],
                cwd=copy, capture_output=True, text=True)
            if saved.returncode != 0:
                said = (saved.stderr.strip() or saved.stdout.strip()).splitlines()[-1:] or [f"exit {saved.returncode}"]
                raise SweepError(f"--dvc-exp: dvc exp save of {name} failed: {said[0]}")
            names.append(name)
    return names
