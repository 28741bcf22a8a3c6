"""The cross-experiment report's content: everything ``results/`` and the data files say about each experiment,
gathered once into plain objects.

`tables.py` turns a :class:`Report` into DataFrames, which `markdown.py` and `html.py` render and the flows
publish as Prefect artifacts. An experiment not run yet is kept, with empty metrics, and listed as such.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from kerasflow.tasks.config.errors import DataError
from kerasflow.tasks.config.messages import yaml_problem
from kerasflow.tasks.config.schema import CLASS_TASKS, ExperimentSpec
from kerasflow.tasks.data.table import file_md5, listing_md5
from kerasflow.tasks.data.tokens import load_rows
from kerasflow.tasks.outputs.metrics import (
    PARAM_PREFIX,
    TRIALS_FILE,
    read_experiment,
    read_nested,
    read_sweep_best,
    unfinished_sweep,
)
from kerasflow.tasks.report.compare import Comparison, data_md5, pair, pairing_key
from kerasflow.tasks.training.statistics import Interval, corrected_t, score_range

MOST_FREQUENT_TOKENS = 10
"""How many of a text's tokens the report's data table lists, most frequent first."""
TIMING_STEPS = ("load", "preprocess", "cross_validate", "refit", "write", "total")
"""The steps `run.json` times (seconds), in the order they run."""
ENVIRONMENT_KEYS = ("python", "keras", "backend", "backend_version", "device", "devices", "ray_tasks", "prefect", "ray",
                    "dvc", "dvclive")
"""The order the report shows `run.json`'s environment in (see
:func:`kerasflow.tasks.outputs.results.environment`)."""


@dataclass(frozen=True)
class DataFacts:
    """What an experiment's data file holds, and the hash DVC knows it by."""

    file: str
    rows: int
    columns: int
    target: str
    task: str
    md5: str
    """The md5 of the file's bytes: what DVC 3 records for a file (in a `.dvc` file or a folder's manifest)."""
    classes: dict[str, int] | None = None
    """Classification: rows per class, in the codec's order; multilabel: rows each label applies to."""
    target_stats: dict[str, dict[str, float]] | None = None
    """Regression: each target column's mean, std, min and max, keyed by its name."""
    dvc_file: str | None = None
    """The `.dvc` file tracking the data file or a folder holding it (e.g. `data.dvc`), if any."""
    dvc_md5: str | None = None
    """What that `.dvc` file records: the file's md5, or its folder's manifest hash (`<md5>.dir`)."""
    tracked_md5: str | None = None
    """The file's md5 as DVC recorded it, when the folder's manifest is in the local cache."""

    @property
    def matches_dvc(self) -> bool | None:
        """Whether the bytes are those DVC tracks; None when the recorded md5 is not at hand."""
        return None if self.tracked_md5 is None else self.tracked_md5 == self.md5


@dataclass(frozen=True)
class Sweep:
    """A Ray Tune sweep's results: its best (`best.json` with `sweep.json`) and the trials, best first
    (`trials.csv`)."""

    best: dict[str, Any]
    trials: pd.DataFrame

    @property
    def params(self) -> list[str]:
        """The searched parameters, as dotted keys (`train.optimizer`)."""
        return [column.removeprefix(PARAM_PREFIX) for column in self.trials.columns if column.startswith(PARAM_PREFIX)]

    @property
    def n_configs(self) -> int:
        """Configs tried (a stacked group's configs share one Ray trial)."""
        return int(self.best["n_configs"])


@dataclass
class ExperimentReport:
    """One experiment as the report shows it; `metrics` is empty when it has not run yet."""

    name: str
    spec: ExperimentSpec
    metrics: dict[str, Any] = field(default_factory=dict)
    history: pd.DataFrame | None = None
    """Per-epoch rows of every fold (`fold`, `epoch`, `loss`, `val_loss`, metric, `val_` + metric)."""
    predictions: pd.DataFrame | None = None
    """Held-out rows of every fold (`fold`, `row`, `true`, `predicted`)."""
    sweep: Sweep | None = None
    unfinished_sweep: str | None = None
    """When a sweep that has exported no results started (UTC, ISO 8601): stopped, failed or still running,
    `sweep` (if any) is an earlier one's (:func:`kerasflow.tasks.outputs.metrics.unfinished_sweep`)."""
    nested: dict[str, Any] | None = None
    """The sweep's nested cross-validation (`tune/nested.json`), when `kerasflow tune --nested` has run."""
    data: DataFacts | None = None
    data_error: str | None = None
    augmented: np.ndarray | None = None
    """An image experiment's first training images, each beside a few augmented copies, (images, 1 + copies,
    height, width, channels) in [0, 1] (:func:`augmented_images`)."""

    @property
    def has_run(self) -> bool:
        return bool(self.metrics)

    @property
    def is_classification(self) -> bool:
        """One class a row, a confusion matrix's."""
        return self.spec.dataset.task in CLASS_TASKS


@dataclass
class Report:
    """Every experiment of the params file, in its order, with each one's mean and 95% interval and the pairwise
    comparisons of those scored on the same folds (:func:`same_fold_comparisons`)."""

    experiments: list[ExperimentReport]
    intervals: dict[str, Interval] = field(default_factory=dict)
    comparisons: list[Comparison] = field(default_factory=list)

    def environments(self) -> list[tuple[dict[str, str], list[str]]]:
        """Each distinct environment the experiments ran in (keys in `ENVIRONMENT_KEYS` order), with the
        experiments that ran in it."""
        groups: dict[str, tuple[dict[str, str], list[str]]] = {}
        for experiment in self.experiments:
            environment = experiment.metrics.get("environment")
            if environment:
                ordered = {k: environment[k] for k in sorted(environment, key=_environment_order)}
                groups.setdefault(json.dumps(ordered), (ordered, []))[1].append(experiment.name)
        return list(groups.values())


def _environment_order(key: str) -> tuple[int, str]:
    return (ENVIRONMENT_KEYS.index(key) if key in ENVIRONMENT_KEYS else len(ENVIRONMENT_KEYS), key)


def _recorded_md5(dvc_file: Path) -> str:
    """The md5 a `.dvc` file records for its output ("" for none yet); a file that is not one DVC wrote (a merge
    conflict left in it, an edit) is a DataError naming it, which the report shows in place of the data's facts."""
    try:
        document = yaml.safe_load(dvc_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{dvc_file}: cannot be read ({exc}); `dvc add` of its output writes it again") from None
    except yaml.YAMLError as exc:
        raise DataError(f"{dvc_file}: not valid YAML: {yaml_problem(exc)}; `dvc add` of its output writes it "
                        f"again") from None
    outs = document.get("outs") if isinstance(document, dict) else None
    if not (isinstance(outs, list) and outs and isinstance(outs[0], dict)):
        raise DataError(f"{dvc_file}: holds no `outs:` list of the files DVC tracks; `dvc add` of its output writes "
                        f"it again")
    return str(outs[0].get("md5", ""))


def dvc_tracking(path: Path) -> tuple[Path, str, str | None] | None:
    """The `.dvc` file tracking `path` (itself or a folder above it), its recorded hash, and the md5 recorded
    for `path` in the folder's manifest when that is in the local cache (`.dvc/cache/files/md5`); for a folder
    inside the tracked one, the md5 of its files' entries there, as DVC would record the folder."""
    for tracked in [path, *path.parents]:
        if tracked.name in ("", ".", ".."):
            break
        dvc_file = tracked.with_name(tracked.name + ".dvc")
        if not dvc_file.is_file():
            continue
        recorded = _recorded_md5(dvc_file)
        if tracked == path:
            return dvc_file, recorded, recorded or None
        manifest = _cached_manifest(dvc_file.parent, recorded)
        relpath = path.relative_to(tracked).as_posix()
        in_manifest = next((entry["md5"] for entry in manifest if entry.get("relpath") == relpath), None)
        below = [{"md5": entry["md5"], "relpath": entry["relpath"][len(relpath) + 1:]} for entry in manifest
                 if entry.get("relpath", "").startswith(relpath + "/")]
        if below:  # a folder inside the tracked one: its md5 from its files' entries
            in_manifest = listing_md5(below)
        return dvc_file, recorded, in_manifest
    return None


def _cached_manifest(start: Path, dir_md5: str) -> list[dict[str, str]]:
    """A folder's `.dir` manifest from the DVC cache of the repository holding `start`; [] when absent."""
    if not dir_md5.endswith(".dir"):
        return []
    for folder in [start.resolve(), *start.resolve().parents]:
        candidate = folder / ".dvc" / "cache" / "files" / "md5" / dir_md5[:2] / dir_md5[2:]
        if candidate.is_file():
            return json.loads(candidate.read_text())
        if (folder / ".dvc").is_dir():
            break
    return []


def data_facts(spec: ExperimentSpec) -> DataFacts:
    """Shape, class balance (or target summary; a text's most frequent tokens) and DVC hash of the experiment's
    data file."""
    table = load_rows(spec)
    path = table.source
    classes = target_stats = None
    if spec.dataset.task == "regression":
        y = table.y.to_frame() if isinstance(table.y, pd.Series) else table.y
        target_stats = {str(name): {"mean": float(column.mean()), "std": float(column.std(ddof=0)),
                                    "min": float(column.min()), "max": float(column.max())}
                        for name, column in y.astype(float).items()}
    elif spec.dataset.task == "multilabel":  # the rows each label applies to
        classes = {str(label): int(column.sum()) for label, column in table.y.astype(int).items()}
    elif spec.dataset.task == "next_token":
        counts = table.y.value_counts().head(MOST_FREQUENT_TOKENS)
        classes = {repr(token)[1:-1]: int(count) for token, count in counts.items()}  # "\n" shown as such
    else:
        counts = table.y.value_counts()
        classes = {str(label): int(counts[label]) for label in sorted(counts.index, key=_label_order)}
    tracking = dvc_tracking(path)
    return DataFacts(file=str(spec.dataset.file), rows=table.n_rows, columns=table.X.shape[1] + len(table.targets),
                     target=", ".join(table.targets), task=spec.dataset.task, md5=file_md5(path), classes=classes,
                     target_stats=target_stats,
                     dvc_file=str(tracking[0]) if tracking else None,
                     dvc_md5=tracking[1] if tracking else None,
                     tracked_md5=tracking[2] if tracking else None)


def _label_order(label: Any) -> tuple:
    """Class labels as the codec orders them: by type, then value (numbers numerically)."""
    return (str(type(label)), label)


def collect(results_dir: str | Path, experiments: dict[str, ExperimentSpec]) -> Report:
    """Read every experiment's results and data; what is missing stays empty and is reported as such."""
    results_dir = Path(results_dir)
    facts: dict[str, DataFacts | str] = {}
    reports = []
    for name, spec in experiments.items():
        out = results_dir / name
        # Class labels stay text (as the confusion matrix shows them), even when they look like numbers.
        labels = None if spec.dataset.task == "regression" else {"true": str, "predicted": str}
        report = ExperimentReport(name=name, spec=spec, metrics=read_experiment(out) or {},
                                  history=_read_history(out / "history"),
                                  predictions=_read_csv(out / "predictions.csv", dtype=labels),
                                  sweep=_read_sweep(out / "tune"), unfinished_sweep=unfinished_sweep(out / "tune"),
                                  nested=read_nested(out / "tune"))
        # Several experiments often share a file: read and hash it once for each way it is read.
        key = _rows_key(spec)
        if key not in facts:
            try:
                facts[key] = data_facts(spec)
            except DataError as exc:
                facts[key] = str(exc)
        found = facts[key]
        if isinstance(found, str):
            report.data_error = found
        else:
            report.data = found
            augment = spec.preprocess.augment
            if augment is not None and augment.random:
                report.augmented = augmented_images(spec)
        reports.append(report)
    intervals, comparisons = same_fold_comparisons(reports, results_dir)
    return Report(experiments=reports, intervals=intervals, comparisons=comparisons)


def _rows_key(spec: ExperimentSpec) -> str:
    """What :func:`~kerasflow.tasks.data.tokens.load_rows` reads the experiment's rows by: the dataset section
    (file, target, task, an image folder's size and colours), and a text's tokenization."""
    tokens = spec.preprocess.tokens.model_dump_json() if spec.dataset.task == "next_token" else ""
    return spec.dataset.model_dump_json() + tokens


def same_fold_comparisons(reports: list[ExperimentReport],
                          results_dir: Path) -> tuple[dict[str, Interval], list[Comparison]]:
    """Each run's mean with its 95% interval, and every pair of runs scored on the same folds (same data md5,
    rows and splits as the runs recorded them, and the same saved model their folds start from, if any:
    :func:`pairing_key`) compared by the corrected resampled t-test, in params order. Runs with one fold (a
    hold-out) or a diverged fold have no interval, nor do runs whose run.json records no fold settings."""
    groups: dict[str, list[ExperimentReport]] = {}
    for e in reports:
        m = e.metrics
        if not m or m["mean"] is None or m["n_folds"] < 2 or "fold_settings" not in m:
            continue
        try:
            md5 = data_md5(results_dir / e.name)
        except DataError:
            continue
        groups.setdefault(pairing_key(m, md5), []).append(e)
    intervals: dict[str, Interval] = {}
    comparisons: list[Comparison] = []
    for members in groups.values():
        for e in members:
            intervals[e.name] = corrected_t(e.metrics["folds"], e.metrics["test_train_ratio"],
                                            within=score_range(e.metrics["metric"]))
        for i, first in enumerate(members):
            for second in members[i + 1:]:
                comparisons.append(pair((first.name, second.name), [first.metrics, second.metrics]))
    return intervals, comparisons


def augmented_images(spec: ExperimentSpec, count: int = 3, copies: int = 5) -> np.ndarray:
    """The data file's first `count` images (as its reshape lays them out), each followed by `copies` augmented
    versions drawn as the training draws them, scaled together to [0, 1] for display."""
    from kerasflow.tasks.training.models import augmented_examples  # Keras, for image experiments only

    shape = spec.model.layers[spec.model.image_at].target_shape
    table = load_rows(spec)
    images = table.X.iloc[:count].to_numpy(dtype=np.float32).reshape((-1, *shape))
    shown = np.concatenate([images[:, None], augmented_examples(spec.preprocess.augment, images, copies,
                                                                spec.train.seed)], axis=1)
    low, high = float(shown.min()), float(shown.max())
    return (shown - low) / ((high - low) or 1.0)


def _read_csv(path: Path, dtype: dict[str, type] | None = None) -> pd.DataFrame | None:
    return pd.read_csv(path, dtype=dtype) if path.is_file() else None


def _read_history(history_dir: Path) -> pd.DataFrame | None:
    """The dvclive custom plot of all folds' epochs (see :func:`kerasflow.tasks.outputs.results.write_history`)."""
    path = history_dir / "plots" / "custom" / "folds.json"
    if not path.is_file():
        return None
    # A diverged fold's values are null: numbers throughout, NaN where null.
    return pd.DataFrame(json.loads(path.read_text())).apply(pd.to_numeric, errors="coerce")


def _read_sweep(tune_dir: Path) -> Sweep | None:
    best, trials = read_sweep_best(tune_dir), _read_csv(tune_dir / TRIALS_FILE)
    return Sweep(best=best, trials=trials) if best is not None and trials is not None else None
