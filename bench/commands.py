"""Commands that train nothing, timed as a user runs them: `kerasflow --help`, `kerasflow list`, and `kerasflow run`
on a params file with a bad key (exit 2) or a bad Keras name, each the median of `--repeats` fresh processes.

Run from the repository root (after `make install`):

    .venv/bin/python bench/commands.py

Beside them, `python -c "import keras"`: what each would cost if it imported Keras (the bad Keras name must: only
Keras knows its names).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

KERASFLOW = Path(sys.executable).with_name("kerasflow")


def median_seconds(command: list[str], cwd: Path, repeats: int, status: int) -> float:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
        seconds.append(time.perf_counter() - start)
        assert done.returncode == status, (command, done.returncode, done.stderr[-500:])
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    params = yaml.safe_load(Path("params.yaml").read_text())
    with tempfile.TemporaryDirectory(prefix="kerasflow-commands-") as folder:
        root = Path(folder)
        for name, edit in (("bad_key", ("epochs", "epoch")), ("bad_name", ("optimizer", "optimizer"))):
            (root / name).mkdir()
            bad = yaml.safe_load(yaml.safe_dump(params))
            train = bad["experiments"]["iris_mlp"]["train"]
            train[edit[1]] = train.pop(edit[0])
            if name == "bad_name":
                train["optimizer"] = "adamm"
            (root / name / "params.yaml").write_text(yaml.safe_dump(bad, sort_keys=False))
        cwd = Path.cwd()
        rows = [("kerasflow --help", median_seconds([str(KERASFLOW), "--help"], cwd, args.repeats, 0)),
                ("kerasflow list", median_seconds([str(KERASFLOW), "list"], cwd, args.repeats, 0)),
                ("kerasflow run, a bad key",
                 median_seconds([str(KERASFLOW), "run"], root / "bad_key", args.repeats, 2)),
                ("kerasflow run, a bad Keras name",
                 median_seconds([str(KERASFLOW), "run"], root / "bad_name", args.repeats, 2)),
                ("python -c 'import keras'", median_seconds([sys.executable, "-c", "import keras"], cwd,
                                                            args.repeats, 0))]
    print(f"{'command':<34} {'seconds':>8}   (median of {args.repeats})")
    for command, seconds in rows:
        print(f"{command:<34} {seconds:8.2f}")


if __name__ == "__main__":
    main()
