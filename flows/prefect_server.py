"""Prefect's temporary server, started by the `kerasflow` command as it starts, so that it boots while Keras is
imported rather than after.

With no Prefect server configured, Prefect starts a temporary one (uvicorn in a subprocess) when a flow first needs
the API and waits for it, after kerasflow's imports. Started here first, the same server boots on the other core
meanwhile (BENCHMARKS.md): Prefect's own uvicorn command, serving the app Prefect's public
`prefect.server.api.server.create_app` makes for a temporary server (:func:`temporary_app`). kerasflow owns the
process rather than borrowing Prefect's start-up:

- it is used only if Prefect's settings (environment, profile, ``prefect.toml``) name no server and allow a
  temporary one, checked once Prefect is imported; otherwise it is stopped unused and Prefect goes on as
  configured. If it did not come up, Prefect starts its own, as it would have;
- its output goes to an unnamed temporary file, not the terminal, so a command that fails before its flows prints
  one message;
- it is stopped when the command ends, and it is tied to the command with Linux's parent-death signal, so a
  command killed outright (SIGTERM, SIGKILL) takes it along; it runs in a process group of its own, so that a
  terminal's Ctrl-C reaches the command, which stops it, and not the server first;
- it is watched: if it ends before the command stops it (killed, out of memory), the command ends at once with one
  line, as if it had been killed, rather than after Prefect's minutes of retries (every result is whole or absent);
- the flows it serves send no heartbeats. A heartbeat lets a server that outlives a run notice that the run's
  process died; this one dies with the process. Prefect's heartbeat thread sleeps in 1 s steps and each flow run
  waits for it to wake as it ends, for nothing (BENCHMARKS.md). Against a configured server heartbeats are sent as
  Prefect's settings say.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO

from kerasflow.tasks.config.errors import ServiceError
from kerasflow.tasks.runtime.services import unanswered

# Runs in the server's process before it becomes uvicorn: ties it to the command (PR_SET_PDEATHSIG = 1), then
# execs. Not `preexec_fn`, which is unsafe once the command has threads (NumPy's are started by then).
_TIE_TO_PARENT = """
import ctypes, os, signal, sys
if sys.platform == "linux":
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    if os.getppid() != int(sys.argv[1]):
        sys.exit(0)  # the command ended before the tie was made
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""

SERVER_ENV = {"PREFECT_UI_ENABLED": "0"}
"""What Prefect sets in its temporary server's environment besides the app's arguments: no UI."""


def temporary_app():
    """The server's app (a uvicorn factory, called in the server's process): Prefect's API as Prefect's temporary
    server serves it, with the ephemeral server's reduced set of services and no UI, and `final` (the only app
    that process creates)."""
    from prefect.server.api.server import create_app

    return create_app(ephemeral=True, final=True)


def answers(url: str) -> bool:
    """Whether the Prefect server at `url` (its API, `.../api`) says it is healthy, as Prefect's own client asks."""
    return unanswered(f"{url}/health", timeout=2, ok_only=True) is None


def check_configured_api() -> None:
    """Refuse, in one line, a Prefect API that Prefect's settings name (PREFECT_API_URL, from the environment, a
    profile or prefect.toml) where nothing answers: the first flow would end the command in Prefect's traceback.
    Any HTTP answer will do (Prefect Cloud's asks for a key); only none at all is refused. Prefect must be
    importable (it is imported here)."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if url and (reason := unanswered(f"{url.rstrip('/')}/health", timeout=10)) is not None:
        raise ServiceError(f"PREFECT_API_URL={url}: no Prefect server answers there ({reason}); start it "
                           "(`kerasflow server start` for kerasflow's local one), or unset PREFECT_API_URL so that "
                           "kerasflow starts a temporary one")


def lost_server(exc: BaseException) -> str | None:
    """What to tell the user where `exc` ended a command because the Prefect server it used stopped answering (a
    connection error from Prefect's client, once its retries gave up, anywhere in the exception's causes or
    groups); None for any other exception, and in a command that never imported Prefect."""
    if "prefect" not in sys.modules:
        return None
    import httpx
    from prefect.settings import get_current_settings

    def transport_error(error: BaseException) -> httpx.TransportError | None:
        seen: set[int] = set()
        pending = [error]
        while pending:
            error = pending.pop()
            if id(error) in seen:
                continue
            seen.add(id(error))
            if isinstance(error, httpx.TransportError):
                return error
            pending += [e for e in (error.__cause__, error.__context__) if e is not None]
            if isinstance(error, BaseExceptionGroup):
                pending += error.exceptions
        return None

    if (cause := transport_error(exc)) is None:
        return None
    url = get_current_settings().api.url
    where = f"PREFECT_API_URL={url}" if url else "Prefect's temporary server"
    return (f"{where}: the Prefect server stopped answering during the run ({type(cause).__name__}: {cause}): each "
            f"result is either whole or not written (an experiment whose folder has no metrics.json did not "
            f"finish); run the command again once the server answers (a sweep: with --resume)")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TemporaryServer:
    """A Prefect API server on 127.0.0.1 that lives as long as this process, or less.

    Call :meth:`launch` as early as possible, :meth:`use` just before the first flow (after Prefect is imported),
    and :meth:`stop` when the command ends, in the thread that called :meth:`use` (it leaves a settings context
    entered there).
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.log: IO[bytes] | None = None
        """The server's output: a file with no name, so that not even a killed command leaves it behind."""
        self.process: subprocess.Popen | None = None
        self._stopping = threading.Event()
        """Set once :meth:`stop` begins: the server's end from then on is the command's doing."""
        self._in_use: contextlib.ExitStack | None = None
        """Undoes what :meth:`use` changed in Prefect's settings; None while the server is not in use."""

    @classmethod
    def launch(cls) -> TemporaryServer:
        """Start the server's process; it boots while the caller goes on."""
        server = cls()
        command = ["-m", "uvicorn", "--factory", f"{__name__}:{temporary_app.__name__}",
                   "--host", "127.0.0.1", "--port", str(server.port), "--log-level", "error", "--lifespan", "on"]
        server.log = tempfile.TemporaryFile(prefix="kerasflow-prefect-server-")
        server.process = subprocess.Popen([sys.executable, "-c", _TIE_TO_PARENT, str(os.getpid()), *command],
                                          env={**os.environ, **SERVER_ENV}, stdin=subprocess.DEVNULL,
                                          stdout=server.log, stderr=subprocess.STDOUT, process_group=0)
        return server

    def use(self) -> None:
        """Point Prefect at this server once it answers, if Prefect's settings leave the choice to a temporary
        server; else stop it. Prefect must be importable (it is imported here)."""
        from prefect.context import refresh_global_settings_context
        from prefect.settings import get_current_settings, temporary_settings

        settings = get_current_settings()
        if settings.api.url or not settings.server.ephemeral.enabled:
            self.stop()  # a configured server (or none allowed): Prefect's choice, not ours
            return
        failure = self._wait_until_healthy(settings.server.ephemeral.startup_timeout_seconds)
        if failure:
            self.log.seek(0)
            last_line = self.log.read().decode(errors="replace").strip().splitlines()[-1:]
            print(f"kerasflow: the early Prefect server did not come up ({failure}{': ' if last_line else ''}"
                  f"{''.join(last_line)}); Prefect starts its own", file=sys.stderr)
            self.stop()
            return
        # No UI URL: the server serves no UI (as Prefect's temporary one), so Prefect must not print links to it.
        # In the environment for Prefect's worker threads, which read the global settings; in a settings context
        # for this thread, which may be inside another one (a test harness's), and for the heartbeats.
        updates = {"PREFECT_API_URL": self.url, "PREFECT_UI_URL": ""}
        with contextlib.ExitStack() as in_use:
            in_use.callback(_restore_environment, {name: os.environ.get(name) for name in updates})
            os.environ.update(updates)
            refresh_global_settings_context()
            in_use.enter_context(temporary_settings(
                updates={"api.url": self.url, "ui_url": "", "flows.heartbeat_frequency": None}))
            self._in_use = in_use.pop_all()  # undone by stop(), or here if anything above failed
        print(f"Starting temporary server on http://127.0.0.1:{self.port} (Prefect's, stopped when this command ends;"
              " set PREFECT_API_URL to use a running server)", file=sys.stderr)
        threading.Thread(target=self._end_with, args=(self.process,), name="kerasflow-server-watch",
                         daemon=True).start()

    def _end_with(self, process: subprocess.Popen) -> None:
        """Wait for the server's process; if it ends before the command stops it (killed, out of memory), end the
        command at once with one line. Prefect would retry every request it makes for minutes and then print its
        tracebacks; no flow can go on without the server, and every result the command writes is whole or absent
        (tasks/outputs/atomic.py), as if the command had been killed."""
        code = process.wait()
        if self._stopping.is_set():
            return
        how = f"killed by signal {-code} ({signal.strsignal(-code)})" if code < 0 else f"exit status {code}"
        with contextlib.suppress(OSError, ValueError):  # a closed or broken stdout (`kerasflow run | head`)
            sys.stdout.flush()
        with contextlib.suppress(OSError, ValueError):
            print(f"kerasflow: error: the temporary Prefect server this command started (process {process.pid}) "
                  f"ended during the run ({how}), and its flows cannot go on without it: each result is either whole "
                  f"or not written (an experiment whose folder has no metrics.json did not finish); run the command "
                  f"again (a sweep: with --resume)", file=sys.stderr, flush=True)
        os._exit(1)

    def _wait_until_healthy(self, timeout: float) -> str:
        """Poll the health endpoint as Prefect does; return why the server is not up, or "" once it is."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return f"exit status {self.process.returncode}"
            if answers(self.url):
                return ""
            time.sleep(0.1)
        return f"no answer in {timeout:g} s"

    def stop(self) -> None:
        """Stop the server (gracefully, then by force), and point Prefect back where it pointed before.

        Prefect's logs and events of the runs are sent in the background: they are drained first, as Prefect's own
        test harness does before it stops its server (a log sent to a stopped server is an error on the terminal,
        and the events worker retries it for a minute).
        """
        self._stopping.set()
        in_use, self._in_use = self._in_use, None
        try:
            if in_use is not None:
                from prefect.events.worker import EventsWorker
                from prefect.logging.handlers import APILogWorker

                with in_use:
                    APILogWorker.drain_all(timeout=5)
                    EventsWorker.drain_all(timeout=5)
        finally:
            if self.process is not None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
                self.process = None
            if self.log is not None:
                self.log.close()
                self.log = None


def _restore_environment(previous: dict[str, str | None]) -> None:
    """Set the variables back to `previous` (None: unset) and have Prefect's global settings read them again."""
    from prefect.context import refresh_global_settings_context

    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    refresh_global_settings_context()
