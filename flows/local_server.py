"""kerasflow's local Prefect server: a real `prefect server start` on 127.0.0.1 that outlives the command, with its
scheduler, and the process workers that run its deployments.

With no Prefect server configured, a flow run needs only an API for its lifetime, and `kerasflow run` serves it
from a temporary server (flows/prefect_server.py). A schedule needs more: a server whose scheduler creates the runs
while no command is running, and a worker that starts them. `kerasflow schedule` (or `kerasflow server start`)
starts both here, detached from the terminal, and every later `kerasflow` command with no server configured sends
its flows to this server instead of a temporary one, so runs and schedules share one database and one UI.
`kerasflow server stop` ends it and its workers.

The server is Prefect's own command, run as it is documented (`prefect server start --host 127.0.0.1`), in its own
session with its output in a log file, not `prefect server start --background`, which leaves the server writing to
pipes nobody reads. What is running is recorded in ``$PREFECT_HOME/kerasflow-server.json`` (Prefect's home: its
database lives there too), which is all a later command reads to find it: each process by its pid and when it
started (the boot and the clock ticks since it, as Linux counts them: a step of the wall clock does not move them),
so that a pid the system has given to another process since (after a reboot, say) is never signalled.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from kerasflow.flows.prefect_server import answers, free_port
from kerasflow.tasks.config.errors import ServiceError
from kerasflow.tasks.outputs.atomic import write_json
from kerasflow.tasks.runtime.processes import running

DEFAULT_PORT = 4200
"""Prefect's own default port, used when it is free; another free port otherwise."""
STARTUP_TIMEOUT = 120.0
"""Seconds a new server has to answer: a first start creates and migrates its database."""
ANSWER_WAIT = 15.0
"""Seconds a recorded server whose process runs has to answer before it is taken for hung: a busy machine (or a busy
server: a schedule's runs, its SQLite database) can hold its health check past the check's own 2 s."""


def prefect_home() -> Path:
    """Prefect's home folder, as Prefect resolves it from the environment (``PREFECT_HOME``, else ``~/.prefect``)."""
    return Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser()


def state_file() -> Path:
    return prefect_home() / "kerasflow-server.json"


@dataclass
class LocalServer:
    """The server's API URL, its process (a session leader: its group holds uvicorn and Prefect's services), one
    worker process per work pool, and when each of these processes started (:func:`process_start`, by pid)."""

    url: str
    pid: int
    workers: dict[str, int] = field(default_factory=dict)
    started: dict[str, str] = field(default_factory=dict)

    @classmethod
    def recorded(cls) -> LocalServer | None:
        """The server the state file records, running or not; None if there is none."""
        try:
            return cls(**json.loads(state_file().read_text()))
        except (OSError, ValueError, TypeError):
            return None

    @classmethod
    def running(cls) -> LocalServer | None:
        """The recorded server if it is alive and answers (within :data:`ANSWER_WAIT`); None otherwise (nothing
        recorded, it died, or it hangs)."""
        server = cls.recorded()
        if server is None:
            return None
        deadline = time.monotonic() + ANSWER_WAIT
        while server.ours(server.pid):
            if answers(server.url):
                return server
            if time.monotonic() > deadline:
                return None
            time.sleep(0.5)
        return None

    @classmethod
    def start(cls, port: int | None = None) -> LocalServer:
        """The running server, or a new one on 127.0.0.1 (`port`, else 4200 if free, else any free port), up and
        answering when this returns."""
        if (server := cls.running()) is not None:
            return server
        recorded = cls.recorded()
        if recorded is not None and recorded.ours(recorded.pid):  # a second server on its database is no cure
            raise ServiceError(f"kerasflow's local Prefect server (process {recorded.pid}) runs but has not answered "
                               f"at {recorded.url} for {ANSWER_WAIT:g} s; `kerasflow server stop` ends it and its "
                               f"workers")
        if recorded is not None:  # dead, but its workers may outlive it, polling an API no one serves
            recorded.stop()
        port = port or (DEFAULT_PORT if _free(DEFAULT_PORT) else free_port())
        home = prefect_home()
        home.mkdir(parents=True, exist_ok=True)
        log = home / "kerasflow-server.log"
        env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        env.pop("PREFECT_API_URL", None)
        process = _detached([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env, log)
        server = cls(url=f"http://127.0.0.1:{port}/api", pid=process.pid,
                     started={str(process.pid): process_start(process.pid)})
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not answers(server.url):
            if process.poll() is not None or time.monotonic() > deadline:
                _stop_group(process.pid)
                last = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise ServiceError(f"the local Prefect server did not start on 127.0.0.1:{port} ({last[0][:200]}); "
                                   f"its log: {log}")
            time.sleep(0.2)
        server._save()
        return server

    def use(self) -> None:
        """Point this process's Prefect at this server (Prefect must be importable: it is imported here)."""
        from prefect.context import refresh_global_settings_context

        os.environ["PREFECT_API_URL"] = self.url
        refresh_global_settings_context()

    def ensure_worker(self, pool: str) -> bool:
        """Start a process worker for `pool` against this server unless one is running; True if started."""
        if self.ours(self.workers.get(pool, 0)):
            return False
        log = prefect_home() / f"kerasflow-worker-{pool}.log"
        env = {**os.environ, "PREFECT_API_URL": self.url}
        process = _detached([sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process"],
                            env, log)
        self.workers[pool] = process.pid
        self.started[str(process.pid)] = process_start(process.pid)
        self._save()
        return True

    def ours(self, pid: int) -> bool:
        """True if `pid` is one of the processes recorded here and still running: a live session leader that
        started when it was recorded to (recorded by a kerasflow that kept no start times: one running Prefect)."""
        if not _alive(pid):
            return False
        recorded = self.started.get(str(pid))
        if recorded is None:
            return _runs_prefect(pid)
        return process_start(pid) == recorded

    def stop(self) -> None:
        """Stop the workers (and the runs they started), then the server; forget them."""
        for pid in [*self.workers.values(), self.pid]:
            if self.ours(pid):
                _stop_group(pid)
        state_file().unlink(missing_ok=True)

    def _save(self) -> None:
        write_json(state_file(), asdict(self))


def _detached(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start `command` in a session of its own (no terminal's hang-up reaches it), output appended to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _alive(pid: int) -> bool:
    """True if `pid` is a live session leader (as the processes started here are), not a zombie or a stranger."""
    try:
        return running(pid) and os.getsid(pid) == pid
    except OSError:
        return False


def process_start(pid: int) -> str | None:
    """When process `pid` started: `<boot id>:<clock ticks since that boot>` where Linux's /proc says, else the
    second psutil reads (computed from the wall clock, which a step of it moves); None if there is no such process."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}:{Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[19]}"  # field 22, starttime
    except FileNotFoundError:  # no such process, or no /proc
        pass
    except (OSError, IndexError):
        return None
    try:
        return f"{psutil.Process(pid).create_time():.0f}"
    except psutil.Error:
        return None


def _runs_prefect(pid: int) -> bool:
    """Whether process `pid` runs Prefect (`python -m prefect ...`, as the server and its workers are started)."""
    try:
        return "prefect" in psutil.Process(pid).cmdline()
    except psutil.Error:
        return False


def _stop_group(pid: int, grace: float = 10.0) -> None:
    """SIGTERM the process group led by `pid`, then SIGKILL what is left after `grace` seconds."""
    if not _alive(pid):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            _reap(pid)
            if not _alive(pid):
                return
            time.sleep(0.1)


def _reap(pid: int) -> None:
    """Collect `pid`'s exit status if it is this process's child (a server started by this command)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _free(port: int) -> bool:
    """True if a server could listen on 127.0.0.1:`port` now (as uvicorn does, reusing an address in TIME_WAIT)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
