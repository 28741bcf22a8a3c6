"""Joining or starting Ray, for sweeps (flows/ray_driver.py) and for folds trained as Ray tasks
(flows/ray_folds.py): an existing cluster named by `RAY_ADDRESS` (checked in seconds, its token authentication
included), else one started here for the command, as `ray.init()` starts one: on the address Ray picks for the
machine, with Ray's token authentication (the tests keep theirs on loopback, tests/conftest.py). Imports no Prefect
and no kerasflow training code.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import warnings
from pathlib import Path

import grpc
import ray

from kerasflow.tasks.config.backend import DEFAULT_BACKEND, backend_settings
from kerasflow.tasks.config.errors import SweepError

# Every Ray worker (a sweep's trial, a fold's task) gets these, and the driver's backend settings
# (tasks/config/backend.py: TensorFlow's switches, JAX's compilation cache, whose folder workers on this machine
# share): GPU memory taken as needed so that workers can share a GPU.
WORKER_ENV = {"TF_FORCE_GPU_ALLOW_GROWTH": "true", "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
              "RAY_CHDIR_TO_TRIAL_DIR": "0"}


_kept_running: tuple[str, dict[str, str]] | None = None
"""Set by :func:`connect` when this driver joined an existing cluster quietly: that cluster's GCS address and the
settings its workers get (see :func:`kept_running_env`)."""


def connect(num_gpus: int | None = None, verbose: bool = False) -> None:
    """Join `RAY_ADDRESS`'s cluster if set (checked first: :func:`check_head`), else start one here, its dashboard
    off.

    `num_gpus` sets the GPUs a cluster started here offers (logical ones, for a check of fractional-GPU
    scheduling on a machine without any); by default Ray counts the machine's own. `verbose`: the workers' own
    output (Keras, TensorFlow, Ray's) reaches this process's terminal.
    """
    global _kept_running
    if ray.is_initialized():
        return
    _kept_running = None
    # Checkpointing every few epochs is by design here; Ray's warning about it would flood the log.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Ray Tune's output engine prints a sweep's settings and where its files are even at `verbose=0` ("silent",
    # RunConfig's docs), a new sweep's or a resumed one's; its earlier engine, which Ray keeps behind this variable,
    # prints nothing there. The command's own lines (progress, the best config) say what a user needs.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Ray Tune takes a sweep's first Ctrl-C for "stop starting trials", then returns the trials so far as if the
    # sweep were done, and the command would export a part of the grid as its best; with its handler off (Ray Tune's
    # documented switch), Ctrl-C interrupts the command, which says `--resume` finishes the sweep from Ray Tune's
    # last saved state, as after a crash.
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    remote = bool(os.environ.get("RAY_ADDRESS"))
    # Ray's start-up notes (the cluster started or joined, its token) are not the user's business: errors only, so
    # that a command refused for its resources prints its one line.
    logging_level = logging.INFO if verbose else logging.ERROR
    runtime_env = {"env_vars": {**WORKER_ENV, **backend_settings(portable=remote),
                                "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", DEFAULT_BACKEND)}}
    if remote:
        check_head(os.environ["RAY_ADDRESS"])
        # A remote cluster's workers get kerasflow's code from the driver, not from a shared folder; Ray uploads
        # it as `ray.init` connects.
        with tempfile.TemporaryDirectory(prefix="kerasflow-code-") as folder:
            runtime_env["py_modules"] = [str(code_package(Path(folder)))]
            ray.init(runtime_env=runtime_env, log_to_driver=verbose, logging_level=logging_level)
        # Trainers started by earlier commands send their output to those commands' drivers: `verbose` trains in
        # the trials' own processes, whose output comes here.
        _kept_running = None if verbose else (ray.get_runtime_context().gcs_address, runtime_env["env_vars"])
    else:
        with warnings.catch_warnings():
            # Ray starts its servers with subprocess, whose fork is followed by exec at once; JAX's at-fork hook
            # warns of a deadlock only a child that goes on running Python could meet.
            warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
            # "local": a new cluster, never one `ray start` left recorded on this machine (Ray's default would
            # join it, or wait on it forever if it died without `ray stop`): RAY_ADDRESS names a cluster to join.
            ray.init(address="local", runtime_env=runtime_env, include_dashboard=False, dashboard_host="127.0.0.1",
                     log_to_driver=verbose, num_gpus=num_gpus, logging_level=logging_level)


def kept_running_env() -> dict[str, str] | None:
    """The settings every worker gets, when :func:`connect` joined a cluster that outlives the command
    (`RAY_ADDRESS`) without `verbose`: a sweep's CPU trials then train in its warm trainers
    (flows/warm_trainers.py). None when it started Ray here, whose trainers would die with it, or was not called,
    and once this process is no longer connected to that cluster (shut down, or connected elsewhere since)."""
    if _kept_running is None or not ray.is_initialized():
        return None
    address, env = _kept_running
    return env if ray.get_runtime_context().gcs_address == address else None


GCS_PROBE = "/ray.rpc.NodeInfoGcsService/GetClusterId"
"""The first call Ray's own client makes to a head's GCS (an empty request), made here with a deadline."""


def check_head(address: str, timeout: float = 3.0) -> None:
    """Refuse in seconds, in one line, what `ray.init(address)` would retry for ~20 s and then raise as a
    `ConnectionError` traceback: no head at `address`, or a head whose token authentication this driver fails
    (no token sent, the wrong one, or a token sent to a cluster that runs without: Ray's tasks then fail).

    Ray offers no public way to shorten its retries, so the head's GCS is asked once here, over gRPC, the way Ray's
    client asks it (the token as Ray sends it, from where Ray reads it: :func:`auth_token`). Any other answer is
    left to `ray.init`; `ray://` (Ray Client) and ``auto`` addresses are Ray's to check.
    """
    if "://" in address or address in ("auto", "local"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise SweepError(f"RAY_ADDRESS={address!r}: expected the head's <address>:<port>, as `ray start --head` "
                         f"prints it (e.g. 10.0.0.5:6379)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise SweepError(f"RAY_ADDRESS={address}: no Ray head answers there ({exc.strerror or exc}); start one "
                         f"with `ray start --head`, or fix the address") from None
    token_mode = os.environ.get("RAY_AUTH_MODE", "").lower() == "token"
    token, source = auth_token() if token_mode else (None, "")
    if token_mode and token is None:
        raise SweepError(f"RAY_ADDRESS={address}: RAY_AUTH_MODE=token but no token found: set RAY_AUTH_TOKEN, or "
                         f"RAY_AUTH_TOKEN_PATH, or put it in {DEFAULT_TOKEN_FILE} (`ray get-auth-token` on the head "
                         f"prints it)")
    status = _gcs_status(address, token, timeout)
    if status == grpc.StatusCode.UNAUTHENTICATED and not token_mode:
        raise SweepError(f"RAY_ADDRESS={address}: the cluster uses Ray's token authentication and this driver sends "
                         f"no token: set RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN (or "
                         f"RAY_AUTH_TOKEN_PATH, or {DEFAULT_TOKEN_FILE}); `ray get-auth-token` on the head prints it")
    if status == grpc.StatusCode.UNAUTHENTICATED:
        raise SweepError(f"RAY_ADDRESS={address}: the cluster refused the token from {source}: it is not the "
                         f"cluster's (`ray get-auth-token` on the head prints the right one)")
    if token_mode and status == grpc.StatusCode.OK and _gcs_status(address, None, timeout) == grpc.StatusCode.OK:
        raise SweepError(f"RAY_ADDRESS={address}: RAY_AUTH_MODE=token but the cluster runs without token "
                         f"authentication, and Ray's trials fail when the two differ: unset RAY_AUTH_MODE")


DEFAULT_TOKEN_FILE = "~/.ray/auth_token"


def auth_token() -> tuple[str | None, str]:
    """The token Ray's driver sends in token mode, and where it came from: ``RAY_AUTH_TOKEN``, else the file
    ``RAY_AUTH_TOKEN_PATH`` names, else ``~/.ray/auth_token`` (Ray's order); (None, "") if there is none."""
    if token := os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return token, "RAY_AUTH_TOKEN"
    for where in (os.environ.get("RAY_AUTH_TOKEN_PATH"), DEFAULT_TOKEN_FILE):
        if where:
            try:
                if token := Path(where).expanduser().read_text().strip():
                    return token, where
            except (OSError, RuntimeError):  # no such file; `~user/` of no such user
                continue
    return None, ""


def _gcs_status(address: str, token: str | None, timeout: float) -> grpc.StatusCode:
    metadata = [("authorization", f"Bearer {token}")] if token else None
    with grpc.insecure_channel(address) as channel:
        probe = channel.unary_unary(GCS_PROBE)
        try:
            probe(b"", timeout=timeout, metadata=metadata)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def code_files() -> list[tuple[str, Path]]:
    """kerasflow's code that Ray's workers run, its `tasks` and `flows` modules: each file's path within the
    `kerasflow` package (e.g. `tasks/sweep/trial.py`) and where it is here, in order."""
    import kerasflow.flows
    import kerasflow.tasks

    return [(str(path.relative_to(root.parent)), path)
            for package in (kerasflow.tasks, kerasflow.flows)
            for root in [Path(package.__path__[0])] for path in sorted(root.rglob("*.py"))]


def code_package(into: Path) -> Path:
    """kerasflow's code (:func:`code_files`) as a folder `into`/kerasflow: a package Ray can ship to a cluster's
    workers, importable there as `kerasflow.tasks` and `kerasflow.flows`."""
    root = into / "kerasflow"
    for name, path in code_files():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, root / name)
    return root


def alive_nodes() -> list[dict]:
    """The nodes of the cluster Ray is connected to that are up, as `ray.nodes()` describes them."""
    return [node for node in ray.nodes() if node["Alive"]]


def unfit_nodes(cpu: float, gpu: float) -> str | None:
    """None when some live node has `cpu` CPUs and `gpu` GPUs for one task; else every live node's resources, as
    one line for the error that refuses the request (a task no node can run would wait forever)."""
    nodes = alive_nodes()
    if any(n["Resources"].get("CPU", 0) >= cpu and n["Resources"].get("GPU", 0) >= gpu for n in nodes):
        return None
    return "; ".join(f"{n['NodeManagerAddress']}: {n['Resources'].get('CPU', 0):g} CPU, "
                     f"{n['Resources'].get('GPU', 0):g} GPU" for n in nodes)
