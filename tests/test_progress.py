"""Progress lines: the whole job counted on one terminal line, and silence in logs and CI."""

from __future__ import annotations

import io

import pytest

from kerasflow.tasks.config.schema import ExperimentSpec
from kerasflow.tasks.data.table import load_table
from kerasflow.tasks.runtime.progress import EpochProgress, ProgressLine, interactive
from kerasflow.tasks.training.evaluate import (
    cross_validate,
    encode_labels,
    prepare_folds,
)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _lines(stream: io.StringIO) -> list[str]:
    """Each state of the line as drawn: tqdm rewrites it after a carriage return."""
    return [text for text in stream.getvalue().split("\r") if text]


def test_the_line_shows_done_of_total_in_its_unit_and_ends_when_all_are_done():
    stream = io.StringIO()
    line = ProgressLine("iris_mlp", total=4, unit="epochs", stream=stream, enabled=True, min_interval=0)
    assert _lines(stream)[0].startswith("iris_mlp: 0/4 epochs   0%|")
    line.advance()
    assert _lines(stream)[-1].startswith("iris_mlp: 1/4 epochs  25%|")
    line.advance(3)
    assert line.done == 4
    assert _lines(stream)[-1].startswith("iris_mlp: 4/4 epochs 100%|") and stream.getvalue().endswith("\n")
    written = stream.getvalue()
    line.advance()  # a unit past the total (a retried trial) draws nothing more
    assert stream.getvalue() == written


def test_an_unknown_total_shows_the_count_without_a_percentage():
    stream = io.StringIO()
    line = ProgressLine("iris: sweep", total=0, unit="trials", stream=stream, enabled=True, min_interval=0)
    line.advance(2)
    assert _lines(stream)[-1].startswith("iris: sweep: 2 trials [") and "%" not in stream.getvalue()


def test_a_disabled_line_writes_nothing_but_still_counts(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    stream = io.StringIO()  # not a terminal: disabled by default
    line = ProgressLine("iris_mlp", total=3, unit="epochs", stream=stream, min_interval=0)
    line.advance(3)
    assert stream.getvalue() == "" and line.done == 3
    terminal = FakeTerminal()
    monkeypatch.setenv("CI", "true")
    ProgressLine("iris_mlp", total=3, unit="epochs", stream=terminal, min_interval=0).advance(3)
    assert terminal.getvalue() == ""


def test_shown_on_a_terminal_only_and_never_in_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    assert interactive(FakeTerminal()) and not interactive(io.StringIO())
    monkeypatch.setenv("CI", "true")
    assert not interactive(FakeTerminal())


@pytest.mark.parametrize("stack_folds", [True, False])
def test_a_kfold_job_counts_every_fold_models_epochs(project, monkeypatch, stack_folds):
    monkeypatch.chdir(project)
    monkeypatch.delenv("CI", raising=False)
    spec = ExperimentSpec.model_validate({
        "dataset": {"file": "data/iris.csv", "target": "species", "task": "multiclass"},
        "model": {"layers": [{"type": "dense", "units": 3, "activation": "softmax"}]},
        "train": {"epochs": 4, "batch_size": 32, "seed": 1},
        "evaluate": {"n_splits": 3, "stratify": True, "seed": 1, "stack_folds": stack_folds},
    })
    table = load_table(spec.dataset)
    folds = prepare_folds(spec, table, encode_labels(spec, table))
    total = spec.train.epochs * (1 if stack_folds else len(folds))
    terminal = FakeTerminal()
    line = ProgressLine("iris", total=total, unit="epochs", stream=terminal, min_interval=0)
    cross_validate(spec, folds, callbacks=[EpochProgress(line)])

    shown = _lines(terminal)
    assert shown[0].startswith(f"iris: 0/{total} epochs   0%|")
    counts = [int(text.removeprefix("iris: ").split("/")[0]) for text in shown]
    assert sorted(set(counts)) == list(range(total + 1))  # every epoch of every fold model counted once
    assert shown[-1].startswith(f"iris: {total}/{total} epochs 100%|") and shown[-1].endswith("\n")


def test_a_sweep_counts_its_finished_trials(tmp_path, bundled_data, monkeypatch, kept_ray):
    from kerasflow.flows.pipeline import load_data
    from kerasflow.flows.sweep import run_sweep
    from kerasflow.tasks.config.schema import parse_params

    (tmp_path / "data").mkdir()
    (tmp_path / "data/iris.csv").write_bytes((bundled_data / "iris.csv").read_bytes())
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CI", raising=False)
    terminal = FakeTerminal()
    monkeypatch.setattr("sys.stderr", terminal)  # the driver's callback writes where a person would look
    params = parse_params({"experiments": {"iris": {
        "dataset": {"file": "data/iris.csv", "target": "species", "task": "multiclass"},
        "model": {"layers": [{"type": "dense", "units": 3, "activation": "softmax"}]},
        "train": {"epochs": 1, "batch_size": 32, "seed": 1},
        "evaluate": {"n_splits": 2, "stratify": True, "seed": 1}}},
        "continued": {}, "sweeps": {"iris": {"space": {"train": {"batch_size": {"grid": [16, 32, 64]}}}}}})
    spec, sweep = params.experiments["iris"], params.sweeps["iris"]
    run_sweep.fn("iris", spec, sweep, *load_data.fn("iris", spec), tmp_path / "tune", False)
    shown = [line for line in _lines(terminal) if line.startswith("iris: sweep")]
    assert shown[-1].startswith("iris: sweep: 3/3 trials 100%|") and shown[-1].endswith("\n")
