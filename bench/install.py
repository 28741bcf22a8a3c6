"""The install `make run` and `make test` start with, from nothing: `make install` (uv, brought by the venv's pip)
against the same environment installed by pip alone, each into a fresh venv with cold caches, side by side.

Run from the repository root (the Makefile's folder; nothing else needs to be installed):

    python3 bench/install.py               # one install each, pip first
    python3 bench/install.py --repeats 2   # pip, uv, pip, uv

- pip: `python3 -m venv`, then `pip install -c requirements.lock -e ".[<the Makefile's extras>]"` (the venv's
       pip, which compiles the bytecode as it installs);
- uv:  `python3 -m venv`, then `make install VENV=<the venv>`: what the Makefile runs.

Cold caches, as on a fresh machine: pip's off (`PIP_NO_CACHE_DIR`, also for the pip that brings uv), uv's a new
empty folder (`UV_CACHE_DIR`). Each finds the packages where its own configuration says (pip's `pip.conf` and
`PIP_*` variables, uv's `uv.toml` and `UV_*` ones). The two environments of each run must hold the same
distributions at the same versions (uv's own aside): the script checks it and exits 1 if not. Each venv is deleted
after its run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EDITABLE = re.search(r'-e "(\.\[[^\]]*\])"', Path("Makefile").read_text()).group(1)
"""What `make install` installs, `.[test,mlflow,...]`, read from the Makefile: pip installs the same extras."""

LIST = ("import importlib.metadata as m, json; "
        "print(json.dumps(sorted({d.metadata['Name'].lower().replace('_', '-'): d.version "
        "for d in m.distributions()}.items())))")
"""Printed by a venv's Python: its distributions and versions, names normalised as pip and uv may spell them."""


def install(tool: str, folder: Path) -> tuple[float, dict[str, str]]:
    """Install the environment with `tool` into a new venv under `folder`: its wall seconds (the venv's creation
    included) and what it then holds."""
    venv, cache = folder / "venv", folder / "uv-cache"
    env = {**os.environ, "PIP_NO_CACHE_DIR": "1", "UV_CACHE_DIR": str(cache)}
    python = venv / "bin/python"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    if tool == "pip":
        command = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-c",
                   "requirements.lock", "-e", EDITABLE]
    else:
        command = ["make", "--silent", "install", f"VENV={venv}"]
    done = subprocess.run(command, env=env, capture_output=True, text=True)  # shown on failure only
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{tool}: {' '.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    held = dict(json.loads(subprocess.run([str(python), "-c", LIST], check=True, capture_output=True,
                                          text=True).stdout))
    held.pop("uv", None)
    return seconds, held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    seconds: dict[str, list[float]] = {"pip": [], "uv": []}
    differ: set[tuple[str, str]] = set()
    for _ in range(args.repeats):
        held: dict[str, dict[str, str]] = {}
        for tool in seconds:
            with tempfile.TemporaryDirectory(prefix=f"kerasflow-install-{tool}-") as folder:
                took, held[tool] = install(tool, Path(folder))
            seconds[tool].append(took)
            print(f"{tool}: {took:.1f} s", flush=True)
        differ |= set(held["pip"].items()) ^ set(held["uv"].items())
    print(f"\n{'tool':<5} {'seconds':>24} {'pip / uv':>24}")
    for tool, runs in seconds.items():
        ratios = ", ".join(f"{pip / run:.2f}" for pip, run in zip(seconds["pip"], runs))
        print(f"{tool:<5} {', '.join(f'{s:.1f}' for s in runs):>24} {ratios:>24}")
    print(f"\n{len(held['uv'])} distributions; " +
          ("the same in both, every run" if not differ else f"differing: {sorted(differ)}"))
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
