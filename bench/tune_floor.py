"""The floor under a sweep's fixed cost: Ray's start and Ray Tune's first trial, for a trainable that imports
nothing and trains nothing, on an embedded Ray (cold) and on a Ray kept running on this machine (warm).

Run from the repository root (after `make install`), with no other Ray on the machine (the warm case runs
`ray start --head` on loopback and `ray stop` after it):

    .venv/bin/python bench/tune_floor.py              # 3 repeats of each, interleaved
    .venv/bin/python bench/tune_floor.py --repeats 1

Each measurement is a fresh process, as a user's command is:

- import ray / import ray.tune: `python -c "import ray"` and `... "from ray import tune"`, wall seconds: what every
  trial process imports before it runs a line of the trainable (Ray's worker imports `ray`; Tune's trial actor
  class lives in `ray.tune`);
- cold:  kerasflow's start of an embedded Ray (`connect()`, flows/ray_cluster.py), then `Tuner.fit()` of one trial
         that reports once, at its first line;
- warm:  the same `connect()` with `RAY_ADDRESS` naming the running head (and `RAY_AUTH_MODE=token`: `ray start`
         turns Ray's token authentication on): the head checked, kerasflow's code uploaded for the workers.

`ray.init` is timed after `from ray import tune` (the driver's imports are paid before it, as in `bench/sweep.py`);
`to first trial` runs from `Tuner.fit()` to the trial's first line (the time it reports, on the same clock).
kerasflow's sweeps pay both, plus their trial processes' import of Keras (`bench/sweep.py` splits a real sweep).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from tempfile import TemporaryDirectory

PORT = 6390
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray on 127.0.0.1 only, as in the tests


def trial(config: dict) -> None:
    """The trainable: reports the time its first line runs, and ends."""
    from ray import tune

    tune.report({"started": time.time()})


def child(storage: str) -> None:
    """One driver: Ray's start (or join, with `RAY_ADDRESS`) as kerasflow's, and one trial's wait, as JSON."""
    import ray
    from ray import tune

    from kerasflow.flows.ray_cluster import connect

    start = time.perf_counter()
    connect()
    joined, fit_at = time.perf_counter(), time.time()
    result = tune.Tuner(tune.with_resources(trial, {"cpu": 1}),
                        run_config=tune.RunConfig(storage_path=storage, verbose=0)).fit()
    first = result[0].metrics["started"] - fit_at
    ray.shutdown()
    print(json.dumps({"ray.init": joined - start, "to first trial": first}))


def timed(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def driver(address: str | None) -> dict[str, float]:
    # `ray start --head` turns on Ray's token authentication (its token in ~/.ray/auth_token): drivers join in kind.
    env = {**os.environ, "RAY_ADDRESS": address, "RAY_AUTH_MODE": "token"} if address else None
    with TemporaryDirectory() as storage:
        out = subprocess.run([sys.executable, __file__, "--child", storage], check=True,
                             capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", metavar="STORAGE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    rows: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        rows.setdefault("import ray", []).append(timed("import ray"))
        rows.setdefault("import ray.tune", []).append(timed("from ray import tune"))
        for step, seconds in driver(None).items():
            rows.setdefault(f"cold: {step}", []).append(seconds)
        subprocess.run([ray_cli, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(PORT),
                        "--include-dashboard=false", "--disable-usage-stats"], check=True, capture_output=True)
        try:
            for step, seconds in driver(f"127.0.0.1:{PORT}").items():
                rows.setdefault(f"warm: {step}", []).append(seconds)
        finally:
            subprocess.run([ray_cli, "stop"], check=True, capture_output=True)
    print(f"{os.cpu_count()} cores, {args.repeats} repeats (median, min-max)")
    for name, values in rows.items():
        print(f"{name:<26} {statistics.median(values):6.2f} s  ({min(values):.2f}-{max(values):.2f})")
    for kind in ("cold", "warm"):
        total = statistics.median(a + b for a, b in zip(rows[f"{kind}: ray.init"], rows[f"{kind}: to first trial"]))
        print(f"{kind}: Ray's start plus the first trial {total:.2f} s")


if __name__ == "__main__":
    main()
