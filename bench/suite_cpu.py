"""Where the test suite's CPU goes: the suite run as `make test` runs it, every process on the machine sampled once a
second, its CPU seconds summed by kind (Ray's daemons and workers, the `kerasflow` commands the tests start, the
pytest workers, Prefect servers, DVC, anything else by name).

Run from the repository root (after `make install` and `kerasflow data`), on an otherwise idle machine:

    .venv/bin/python bench/suite_cpu.py                        # the whole suite, three xdist workers
    .venv/bin/python bench/suite_cpu.py -- tests/test_dvc.py   # pytest's own arguments after --

The suite keeps two cores busy for nearly all its run (BENCHMARKS.md, "`make test`'s suite"), so its time follows
the CPU it spends: this says which kind of process to make cheaper. A process that lives less than a second may be
missed; the machine's busy time (/proc/stat) is printed beside the sum to show how much was.

`--by-test N` also prints the N test folders whose processes spent most: each process is counted under the pytest
temporary folder it runs in (its working directory; pytest names the folder after the test, cut to 30
characters), so a `kerasflow` command, the Prefect server or Ray it starts and Ray's workers count for the test that
ran it. Work a pytest worker does in its own process is not split by test (`--durations` says that), nor is that of
the servers kept for the whole run (the Prefect server, the Ray head and its warm trainers, which train the trials of
every test that joins it): their total is printed as "not in a test's folder".
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

RAY_DAEMONS = ("raylet", "gcs_server", "dashboard/agent", "dashboard.py", "log_monitor", "monitor.py",
               "runtime_env/agent", "ray_client_server")


def kind(process: psutil.Process) -> str | None:
    """What a process is, for the table; None once it is gone."""
    try:
        words = process.cmdline()
        name = process.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    line = " ".join(words)
    if line.startswith("ray::") or "default_worker.py" in line:
        return "Ray workers (trials, tasks, actors)"
    daemon = next((daemon for daemon in RAY_DAEMONS if daemon in line), None)
    if daemon:
        return f"Ray {daemon}"
    if ("prefect" in line and "server" in line) or "uvicorn" in line:
        return "Prefect servers"
    if "prefect" in line and "worker" in line:
        return "Prefect workers"
    if "xdist" in line or "execnet" in line or "exec(eval(sys.stdin.readline()))" in line or "pytest" in line:
        return "pytest and its workers (in-process tests)"
    if "/kerasflow" in line and len(words) > 2:
        return f"kerasflow {words[2]}"
    if "dvc" in line:
        return "dvc"
    if "mlflow" in line or "gunicorn" in line:
        return "MLflow server"
    return name


def test_folder(process: psutil.Process) -> str:
    """The pytest temporary folder (`.../popen-gw0/<test>0/...`, or `.../pytest-N/<test>0/...` without xdist) a
    process works in, named for its test; "-" for any other working directory."""
    try:
        parts = Path(process.cwd()).parts
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return "-"
    for index, part in enumerate(parts[:-1]):
        if part.startswith("popen-gw") or (part.startswith("pytest-") and not part.startswith("pytest-of-")
                                           and not parts[index + 1].startswith("popen-gw")):
            return parts[index + 1]
    return "-"


def busy_seconds() -> float:
    """The machine's busy CPU seconds so far (every core, /proc/stat)."""
    first = Path("/proc/stat").read_text().splitlines()[0]
    user, nice, system, _idle, _iowait, irq, softirq, *_ = (int(field) for field in first.split()[1:])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> Iterator[tuple[tuple[int, float], psutil.Process, float]]:
    """Every other process now: its key (pid, start time: a pid can be reused), itself, its CPU seconds so far."""
    me = os.getpid()
    for process in psutil.process_iter():
        if process.pid == me:
            continue
        try:
            times = process.cpu_times()
            yield (process.pid, process.create_time()), process, times.user + times.system
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pytest_args", nargs="*", help="pytest's arguments (default: the suite as `make test`)")
    parser.add_argument("--by-test", type=int, default=0, metavar="N",
                        help="also print the N test folders whose processes spent the most CPU")
    args = parser.parse_args()
    command = [sys.executable, "-m", "pytest", "-q", "-n", "3", "--dist", "loadfile", "-p", "no:cacheprovider",
               *args.pytest_args]
    before = {key: seconds for key, _, seconds in cpu_seconds()}  # spent before the suite: not its own
    # (pid, start) -> (kind, test folder, CPU seconds last sampled)
    seen: dict[tuple[int, float], tuple[str, str, float]] = {}
    started, busy = time.monotonic(), busy_seconds()
    suite = subprocess.Popen(command)
    while suite.poll() is None:
        for key, process, seconds in cpu_seconds():
            what, folder = seen[key][:2] if key in seen else (kind(process), test_folder(process))
            if what is not None:
                seen[key] = (what, folder, seconds - before.get(key, 0.0))
        time.sleep(1)
    wall, busy = time.monotonic() - started, busy_seconds() - busy
    totals, counts = collections.Counter(), collections.Counter()
    by_test: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for what, folder, seconds in seen.values():
        if seconds > 0:
            totals[what] += seconds
            counts[what] += 1
            by_test[folder][what] += seconds
    print(f"\n{' '.join(command[1:])}: exit status {suite.returncode}, {wall:.0f} s wall, "
          f"{busy:.0f} core-seconds busy on the machine ({busy / wall:.2f} cores), {sum(totals.values()):.0f} sampled")
    print(f"{'core-s':>8} {'share':>6} {'procs':>6}  kind")
    for what, seconds in totals.most_common(20):
        print(f"{seconds:8.0f} {seconds / busy:6.1%} {counts[what]:6d}  {what}")
    if args.by_test:
        print(f"\n{'core-s':>8}  test folder: its processes' core-seconds by kind")
        ranked = sorted(((sum(kinds.values()), folder) for folder, kinds in by_test.items() if folder != "-"),
                        reverse=True)
        for seconds, folder in ranked[:args.by_test]:
            split = ", ".join(f"{what} {part:.0f}" for what, part in by_test[folder].most_common(4))
            print(f"{seconds:8.0f}  {folder}: {split}")
        print(f"{sum(by_test['-'].values()):8.0f}  not in a test's folder (pytest's workers, the servers kept for the "
              f"run, anything else)")


if __name__ == "__main__":
    main()
