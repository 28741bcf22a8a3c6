"""Determinism: the same params and seeds give the same folds and the same scores, run after run, in separate
processes, on CPU, with TensorFlow's default thread pools (not the single thread the rest of the suite uses).

Tolerance: none. Fold assignment, every fold's score, every held-out prediction and every per-epoch value are
compared for exact equality. The guarantee is for one machine and one installed environment (`requirements.lock`):
another CPU, BLAS or TensorFlow version may round differently (TensorFlow itself promises no more).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from helpers import BIN

from kerasflow.tasks.config.backend import backend_defaults
from kerasflow.tasks.outputs.metrics import read_experiment

# What the suite sets for its own process (tests/conftest.py), and what kerasflow must set itself.
SUITE_ONLY = tuple(backend_defaults())


def _user_env(prefect_server: str) -> dict[str, str]:
    """The environment of a user's shell: none of the suite's determinism settings."""
    env = {k: v for k, v in os.environ.items() if k not in SUITE_ONLY}
    return {**env, "PREFECT_API_URL": prefect_server}


def test_kerasflow_enables_deterministic_ops_and_disables_onednn_at_start(project):
    """`kerasflow` turns on TensorFlow's deterministic kernels and off oneDNN's custom ops (which TensorFlow turns on
    for some CPUs only) itself; users need not know the variables."""
    code = ("import sys; from kerasflow.flows.cli import main; main(['list']); "
            "from tensorflow.python.framework.config import is_op_determinism_enabled; "
            "from tensorflow.python.util._pywrap_util_port import IsMklEnabled; "
            "import os; print('deterministic', is_op_determinism_enabled(), 'onednn', IsMklEnabled(), "
            "os.environ['TF_ENABLE_ONEDNN_OPTS'])")
    env = {k: v for k, v in os.environ.items() if k not in SUITE_ONLY}
    result = subprocess.run([sys.executable, "-c", code], cwd=project, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    # IsMklEnabled() is False on a CPU where TensorFlow would not turn oneDNN on anyway: the variable is checked too.
    assert result.stdout.splitlines()[-1] == "deterministic True onednn False 0", (
        "flows/cli.py main() must enable TensorFlow's op determinism (TF_DETERMINISTIC_OPS=1) and disable oneDNN's "
        f"custom ops (TF_ENABLE_ONEDNN_OPTS=0) before TensorFlow loads; got {result.stdout.splitlines()[-1:]}")


@pytest.mark.slow
def test_the_same_seed_gives_the_same_folds_and_scores_in_two_processes(project, prefect_server):
    env = _user_env(prefect_server)
    runs = []
    for attempt in ("first", "second"):
        result = subprocess.run([str(BIN / "kerasflow"), "run", "iris", "diabetes"], cwd=project, env=env,
                                capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
        shutil.move(project / "results", project / attempt)
        runs.append(project / attempt)

    first, second = runs
    for name in ("iris", "diabetes"):
        # The same rows in the same folds (the `fold` of each `row`), with the same held-out predictions.
        folds = [pd.read_csv(run / name / "predictions.csv") for run in runs]
        pd.testing.assert_frame_equal(folds[0], folds[1], check_exact=True)
        assert sorted(folds[0]["row"]) == list(range(len(folds[0])))
        # The same score in every fold, to the last bit (diabetes' MSE shows any difference in the arithmetic).
        metrics = [read_experiment(run / name) for run in runs]
        assert metrics[0]["folds"] == metrics[1]["folds"] and metrics[0]["mean"] == metrics[1]["mean"]
        # And the same training curves, epoch by epoch.
        history = [(run / name / "history/plots/custom/folds.json").read_text() for run in runs]
        assert history[0] == history[1]
