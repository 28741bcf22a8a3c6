"""The cost of nested cross-validation: `kerasflow tune --nested K` against K separate sweeps, side by side.

Run from the repository root (after `make install` and `kerasflow data`):

    .venv/bin/python bench/nested.py              # the shipped cancer_mlp grid (12 configs, 10 folds), K = 5
    .venv/bin/python bench/nested.py --outer 3

Both sides run the `kerasflow` command as a user does, each in a fresh process, into temporary results folders:

- separate: `kerasflow tune cancer_mlp`, K times one after another: what K sweeps cost when each starts its own
  Python, Prefect server and Ray (the way to get K estimates without nesting);
- nested:   `kerasflow tune cancer_mlp --nested K`: K sweeps (each on (K-1)/K of the rows) and K refits in one
  process, on one Ray.

Printed: both wall times, their ratio, and nested's estimate beside the sweep's best.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KERASFLOW = Path(sys.executable).with_name("kerasflow")


def timed_tune(experiment: str, results: Path, *extra: str) -> float:
    start = time.perf_counter()
    subprocess.run([str(KERASFLOW), "tune", experiment, "--results", str(results), *extra], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="cancer_mlp")
    parser.add_argument("--outer", type=int, default=5, help="K, the outer folds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kerasflow-nested-bench-") as folder:
        root = Path(folder)
        separate = [timed_tune(args.experiment, root / f"separate_{i}") for i in range(args.outer)]
        nested_s = timed_tune(args.experiment, root / "nested", "--nested", str(args.outer))
        best = json.loads((root / "separate_0" / args.experiment / "tune/best.json").read_text())
        record = json.loads((root / "nested" / args.experiment / "tune/nested.json").read_text())
    outer = record["outer"]
    print(f"{args.experiment}: K={args.outer} outer folds, {record['metric']}")
    print(f"{'side':<10} {'seconds':>8}")
    print(f"{'separate':<10} {sum(separate):8.1f}   ({args.outer} sweeps: "
          f"{', '.join(f'{s:.1f}' for s in separate)})")
    print(f"{'nested':<10} {nested_s:8.1f}   (its flow: {record['seconds']:.1f} s)")
    print(f"nested / {args.outer} separate sweeps: {nested_s / sum(separate):.2f}x   "
          f"nested / one sweep: {nested_s / (sum(separate) / args.outer):.2f}x")
    print(f"estimate: tuned model {outer['mean']:.4f} [{outer['low']:.4f}, {outer['high']:.4f}] vs inner best "
          f"{record['inner_best_mean']:.4f}, the sweep's best {best[record['metric']]['mean']:.4f}; "
          f"{record['configs_chosen']} configs chosen")


if __name__ == "__main__":
    main()
