"""How `fit` is fed on TensorFlow: Keras' own pipeline for NumPy arrays (`kerasflow.tasks.training.feed.as_arrays`)
against kerasflow's dataset of whole batches (`kerasflow.tasks.training.feed.in_batches`), for one fold and for
10 stacked folds of the k-fold benchmark's 12-8-1 MLP (150 epochs).

Run from the repository root (after `make install` and `kerasflow data`):

    .venv/bin/python bench/feed.py

The feeds run in this one process, taking turns `--repeats` times; the same batches reach the model every way, so
the histories are equal (checked here). Means are printed beside medians: Keras' pipeline sometimes stalls for a
fraction of a second as a `fit` call ends, and a median hides how often.
"""

from __future__ import annotations

import argparse

from kerasflow.tasks.config.backend import set_backend_defaults

set_backend_defaults()  # the backends set up as `kerasflow` sets them (tasks/config/backend.py)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from kfold import prepared, timed  # noqa: E402

from kerasflow.tasks.training import feed, fit  # noqa: E402
from kerasflow.tasks.training.evaluate import cross_validate  # noqa: E402
from kerasflow.tasks.training.train import fit_fold  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    if keras.backend.backend() != "tensorflow":
        raise SystemExit("bench/feed.py compares TensorFlow's feeds: run it with the TensorFlow backend")
    spec, _, folds = prepared(150, 10)
    feeds = {"keras": feed.as_arrays, "kerasflow": feed.in_batches}  # what `fit_epochs` hands `fit`
    work = {"one fold": lambda: fit_fold(spec, folds[0], 0), "10 folds": lambda: cross_validate(spec, folds)}
    seconds: dict = {(w, f): [] for w in work for f in feeds}
    histories: dict = {}
    for _ in range(args.repeats):
        for w, run in work.items():
            for f, function in feeds.items():
                fit.in_batches = function
                took, result = timed(run)
                seconds[w, f].append(took)
                histories[w, f] = [fold.history for fold in getattr(result, "folds", [result])]
    fit.in_batches = feed.in_batches
    print(f"backend={keras.backend.backend()} {args.repeats} runs each, taking turns")
    print(f"{'work':<10} {'feed':<18} {'median s':>9} {'mean s':>7} {'max s':>6}   same histories")
    for (w, f), values in seconds.items():
        same = histories[w, f] == histories[w, "keras"]
        print(f"{w:<10} {f:<18} {np.median(values):9.2f} {np.mean(values):7.2f} {max(values):6.2f}   {same}")
    for f in feeds:
        ratio = np.median(seconds["10 folds", f]) / np.median(seconds["one fold", f])
        print(f"{f} feed: 10 folds / one fold (medians) {ratio:.2f}x")


if __name__ == "__main__":
    main()
