"""What logging every fold's epochs while it trains costs: cross-validation with and without kerasflow's
`LiveHistory`, with the same rows logged through dvclive's own API (`Live.log_metric` per value, the summary each
epoch), and with TensorBoard's event files too (kerasflow's, and through tensorboardX's `SummaryWriter`), side by
side in one process.

Run from the repository root (after `make install` and `kerasflow data`):

    .venv/bin/python bench/live.py                              # iris_mlp and cancer_mlp, 3 repeats
    .venv/bin/python bench/live.py --experiments iris_mlp --repeats 1

Each experiment of params.yaml is cross-validated as `kerasflow run` does it (its folds stacked into one program
where they stack, the backend set up as `kerasflow run` sets it), first once to warm the compiled functions, then
`--repeats` rounds, each round timing the three variants one after another (interleaved, so drift hits them
alike); each figure is the median over the rounds:

- none:     no logging callback (the training alone);
- live:     `LiveHistory`: each epoch's rows buffered, appended to the step files at most once a second and at the
            end, the all-folds table and the summary rewritten then;
- dvclive:  a callback logging each value with `dvclive.Live.log_metric` (one file append per value) and
            `Live.make_summary()` each epoch: what writing the same folder through dvclive's API costs;
- tb:       `LiveHistory` with `tracking.tensorboard`'s event files too (tasks/outputs/tensorboard.py), its
            files closed at the end, as `kerasflow run` closes them;
- tbx:      `LiveHistory`, and the same scalars through tensorboardX's `SummaryWriter.add_scalar` each epoch (a
            writer per fold and part, closed at the end): what kerasflow's TensorBoard files would cost that way.

It prints each variant's seconds and its overhead over `none` (issue 27's target for live logging: <= 3%), the
seconds `LiveHistory`'s own calls took as a share of its run (`live own %`, `tb own %`: the overhead without the
noise of comparing runs), and the final
`write_history` (the whole folder written again, atomically, once training ends).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from kerasflow.tasks.config.backend import set_backend_defaults

set_backend_defaults()  # as `kerasflow run` does before Keras is imported (TensorFlow's switches: oneDNN off...)

import keras  # noqa: E402
from dvclive import Live  # noqa: E402
from tensorboardX import SummaryWriter  # noqa: E402

from kerasflow.tasks.config.schema import load_params  # noqa: E402
from kerasflow.tasks.data.table import load_table  # noqa: E402
from kerasflow.tasks.outputs.live import HistoryFolder, LiveHistory, fold_folders, history_names  # noqa: E402
from kerasflow.tasks.outputs.results import write_history  # noqa: E402
from kerasflow.tasks.outputs.tensorboard import scalar  # noqa: E402
from kerasflow.tasks.training.evaluate import cross_validate, encode_labels, prepare_folds  # noqa: E402


class TimedLiveHistory(LiveHistory):
    """`LiveHistory`, adding up the seconds its own calls take (`spent`): a figure wall-time differences between
    runs of several seconds are too noisy to show."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.spent = 0.0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        start = time.perf_counter()
        super().on_epoch_end(epoch, logs)
        self.spent += time.perf_counter() - start

    def on_train_end(self, logs: dict | None = None) -> None:
        start = time.perf_counter()
        super().on_train_end(logs)
        self.spent += time.perf_counter() - start


class SummaryWriterHistory(keras.callbacks.Callback):
    """The TensorBoard scalars through tensorboardX's `SummaryWriter`: an `add_scalar` per fold and value each
    epoch, into `<fold>/train` and `<fold>/validation` as tasks/outputs/tensorboard.py lays them out."""

    def __init__(self, directory: Path, n_folds: int, names: list[str]) -> None:
        super().__init__()
        self.writers = {(fold, part): SummaryWriter(str(directory / f"fold_{fold:02d}" / part))
                        for fold in range(n_folds) for part in ("train", "validation")}
        self.n_folds, self.names = n_folds, names

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        for fold in range(self.n_folds):
            for name in self.names:
                key = f"val_f{fold}_{name[4:]}" if name.startswith("val_") else f"f{fold}_{name}"
                if key in logs:
                    part, tag = scalar(name)
                    self.writers[fold, part].add_scalar(tag, float(logs[key]), epoch)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


class DvcliveHistory(keras.callbacks.Callback):
    """The same rows through dvclive's API: a `log_metric` per fold and value, the summary each epoch."""

    def __init__(self, directory: Path, n_folds: int, names: list[str]) -> None:
        super().__init__()
        self.live = Live(dir=str(directory), save_dvc_exp=False, dvcyaml=None, report=None)
        self.n_folds, self.names = n_folds, names

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        self.live.step = epoch + 1
        for fold in range(self.n_folds):
            for name in self.names:
                key = f"val_f{fold}_{name[4:]}" if name.startswith("val_") else f"f{fold}_{name}"
                if key in logs:
                    self.live.log_metric(f"fold_{fold:02d}/{name}", round(float(logs[key]), 6))
        self.live.make_summary()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", nargs="+", default=["iris_mlp", "cancer_mlp"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    params = load_params("params.yaml")
    print(f"{'experiment':<12} {'folds':>5} {'epochs':>6} {'none s':>7} {'live s':>7} {'live +%':>8} "
          f"{'live own %':>10} {'dvclive s':>9} {'dvclive +%':>10} {'tb s':>6} {'tb +%':>7} {'tb own %':>8} "
          f"{'tbx s':>6} {'tbx +%':>7} {'final write s':>13}")
    for name in args.experiments:
        spec = params.experiments[name]
        table = load_table(spec.dataset)
        folds = prepare_folds(spec, table, encode_labels(spec, table))
        names = history_names(spec.metric)
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch)

            own: dict[str, list[float]] = {"live": [], "tb": []}

            def run(variant: str) -> float:
                history = HistoryFolder(root / variant, fold_folders(len(folds)), names,
                                        tensorboard=root / "events" / str(len(own["tb"])) if variant == "tb" else None)
                live = TimedLiveHistory(history)
                writers = SummaryWriterHistory(root / "tbx" / str(len(own["tb"])), len(folds), names) \
                    if variant == "tbx" else None
                callbacks = {"none": [], "live": [live], "tb": [live], "tbx": [live, writers],
                             "dvclive": [DvcliveHistory(root / "dvclive", len(folds), names)]}[variant]
                start = time.perf_counter()
                cross_validate(spec, folds, callbacks=callbacks)
                closing = time.perf_counter()
                history.close()  # the TensorBoard files' last flush: one of LiveHistory's own costs
                live.spent += time.perf_counter() - closing
                if writers is not None:
                    writers.close()
                seconds = time.perf_counter() - start
                if variant in own:
                    own[variant].append(100 * live.spent / seconds)
                return seconds

            result = cross_validate(spec, folds)  # warm-up: compiled functions, page faults
            seconds: dict[str, list[float]] = {"none": [], "live": [], "dvclive": [], "tb": [], "tbx": []}
            for _ in range(args.repeats):
                for variant in seconds:
                    seconds[variant].append(run(variant))
            start = time.perf_counter()
            write_history(root / "final", result)
            final = time.perf_counter() - start
        median = {variant: statistics.median(values) for variant, values in seconds.items()}
        over = {variant: 100 * (median[variant] / median["none"] - 1) for variant in ("live", "dvclive", "tb", "tbx")}
        print(f"{name:<12} {len(folds):>5} {spec.train.epochs:>6} {median['none']:>7.2f} {median['live']:>7.2f} "
              f"{over['live']:>+7.1f}% {statistics.median(own['live']):>9.1f}% {median['dvclive']:>9.2f} "
              f"{over['dvclive']:>+9.1f}% {median['tb']:>6.2f} {over['tb']:>+6.1f}% "
              f"{statistics.median(own['tb']):>7.1f}% {median['tbx']:>6.2f} {over['tbx']:>+6.1f}% {final:>13.3f}")


if __name__ == "__main__":
    main()
