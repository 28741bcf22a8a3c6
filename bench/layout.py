"""How many bytes of laid-out epochs to hand Keras per `fit` call: 10 stacked folds of the k-fold benchmark's
12-8-1 MLP (150 epochs: 94 MB laid out) timed with `kerasflow.tasks.training.fit.LAYOUT_BYTES` at several sizes,
beside one fold.

Run from the repository root (after `make install` and `kerasflow data`):

    .venv/bin/python bench/layout.py                       # TensorFlow
    KERAS_BACKEND=jax .venv/bin/python bench/layout.py     # JAX

Every size runs in this one process, taking turns with the others `--repeats` times; medians are compared.
"""

from __future__ import annotations

import argparse

from kerasflow.tasks.config.backend import set_backend_defaults

set_backend_defaults()  # the backends set up as `kerasflow` sets them (tasks/config/backend.py)

import keras  # noqa: E402
from kfold import interleaved, prepared  # noqa: E402

from kerasflow.tasks.training import fit  # noqa: E402
from kerasflow.tasks.training.evaluate import cross_validate  # noqa: E402
from kerasflow.tasks.training.train import fit_fold  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,64,32,16", help="LAYOUT_BYTES to compare, in MiB")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    spec, _, folds = prepared(150, 10)
    cross_validate(spec, folds)  # warm-up: the stacked model's first compile is not what we compare

    def stacked_in(mib: int):
        def run():
            fit.LAYOUT_BYTES = mib * 2**20
            return cross_validate(spec, folds)
        return run

    fns = {"one fold": lambda: fit_fold(spec, folds[0], 0)}
    fns.update({f"10 folds, {mib} MiB calls": stacked_in(int(mib)) for mib in args.sizes.split(",")})
    medians = interleaved(fns, args.repeats)
    one = medians["one fold"][0]
    print(f"backend={keras.backend.backend()} medians of {args.repeats}, interleaved")
    for name, (seconds, _) in medians.items():
        print(f"{name:<26} {seconds:6.2f} s   {seconds / one:5.2f}x one fold")


if __name__ == "__main__":
    main()
