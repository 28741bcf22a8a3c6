"""Whether a process kerasflow recorded still runs: a writer of a temporary folder, a local server, a trial."""

from __future__ import annotations

import os

import psutil


def running(pid: int) -> bool:
    """Whether process `pid` runs: it exists and is no zombie (one that ended and that its parent has not reaped).
    Another user's process, which /proc may hide, counts as running.

    Examples
    --------
    >>> import os
    >>> running(os.getpid()), running(0)
    (True, False)
    """
    if pid <= 0:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.AccessDenied:
        return True
    except psutil.NoSuchProcess:  # or hidden: /proc mounted with hidepid shows no other user's processes
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # another user's
        return True
