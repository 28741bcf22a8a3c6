"""Helpers the reliability tests share: snapshots of a project tree, and `kerasflow` runs to interrupt."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from helpers import BIN

Snapshot = dict[str, str]


def snapshot(root: Path) -> Snapshot:
    """Every file and folder under `root`, hidden ones included: relative path -> content hash ("dir" for a folder,
    "link to <target>" for a symbolic link, which may lead to a file that cannot be read)."""
    found: Snapshot = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        if path.is_symlink():
            found[relative] = f"link to {path.readlink()}"
        else:
            found[relative] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def changes(before: Snapshot, after: Snapshot) -> dict[str, list[str]]:
    """What differs between two snapshots; empty lists when nothing does."""
    return {"created": sorted(set(after) - set(before)), "deleted": sorted(set(before) - set(after)),
            "changed": sorted(p for p in set(before) & set(after) if before[p] != after[p])}


def start_cli(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start `kerasflow` in its own process group (to kill it with everything it started), output to `log`."""
    with open(log, "w") as handle:
        return subprocess.Popen([str(BIN / "kerasflow"), *args], cwd=cwd, env={**os.environ, **env}, stdout=handle,
                                stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(condition: Callable[[], bool], process: subprocess.Popen, log: Path, timeout: float = 300,
             what: str = "the condition") -> None:
    """Poll `condition` every 50 ms while `process` runs; fail with the process's output if it never holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            kill_group(process)
            raise AssertionError(f"never saw {what} (exit status {process.poll()}); output:\n"
                                 f"{log.read_text()[-4000:]}")
        time.sleep(0.05)


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the process and every process it started (its session), then reap it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=60)
