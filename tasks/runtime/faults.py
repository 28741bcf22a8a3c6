"""Fault injection for the reliability tests (``tests/faults/``): does nothing unless ``KERASFLOW_FAULT`` asks.

The tests prove that kerasflow survives real faults in real processes: a Prefect task that fails once and is
retried, a process killed with SIGKILL while it replaces a result. Some of those moments last milliseconds; the
hook makes them happen on cue instead of by luck. ``KERASFLOW_FAULT`` holds comma-separated ``<action>:<point>``
items:

- ``raise:<point>``: the first time this process reaches `point`, raise :class:`InjectedFault` (a stand-in for
  a lost connection or an evicted worker: what retries are for); later passes go through.
- ``stall:<point>``: stop at `point` until the process is killed (at most an hour), so that a test can send a
  real signal at exactly that moment.

Points: ``write:<name>`` in :func:`kerasflow.tasks.outputs.atomic.atomic_path`, once the temporary copy of `name`
(``metrics.json``, ``model``...) is complete and before it replaces the previous one; and whatever the flows name with
:func:`inject` (``cross-validate``: the start of that Prefect task). Every injection is logged as a warning.
"""

from __future__ import annotations

import logging
import os
import threading
import time

ENV = "KERASFLOW_FAULT"
STALL_SECONDS = 3600

log = logging.getLogger(__name__)
_fired: set[str] = set()
_lock = threading.Lock()


class InjectedFault(RuntimeError):
    """The failure ``KERASFLOW_FAULT=raise:<point>`` asked for: transient by construction."""


def inject(point: str) -> None:
    """Raise or stall at `point` if ``KERASFLOW_FAULT`` names it; otherwise return at once.

    Examples
    --------
    >>> inject("cross-validate")  # KERASFLOW_FAULT unset: nothing happens
    """
    requested = os.environ.get(ENV, "")
    if not requested:
        return
    for item in requested.split(","):
        action, _, at = item.strip().partition(":")
        if at != point:
            continue
        if action == "raise":
            with _lock:
                first = point not in _fired
                _fired.add(point)
            if first:
                log.warning("%s: raising an injected fault at %s (pid %d)", ENV, point, os.getpid())
                raise InjectedFault(f"{ENV}={requested}: injected failure at {point!r}; the next attempt succeeds")
        elif action == "stall":
            log.warning("%s: stalling at %s until killed (pid %d)", ENV, point, os.getpid())
            time.sleep(STALL_SECONDS)
        else:
            raise ValueError(f"`{ENV}` actions are 'raise' and 'stall'. Received: {item.strip()!r}")
