"""Whether a server a user names (Prefect's API, an MLflow tracking server) answers at all, asked before any work so
that a wrong URL is one line rather than a traceback after the training."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.parse
import urllib.request

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""An opener that goes straight to the server, never through an `http_proxy` the environment may name."""


def unanswered(url: str, timeout: float, ok_only: bool = False) -> str | None:
    """Why nothing answers a GET of `url`, in words (the connection refused, a timeout, a URL that cannot be read),
    or None where a server answered: any HTTP status will do, as a server that asks for a key (Prefect Cloud's) has
    answered; with `ok_only`, only a success does (a health page that another service at the URL lacks). A server
    on this machine is asked directly, never through a proxy the environment names; another as the environment
    says.

    Examples
    --------
    >>> unanswered("http://[::1", timeout=1)
    'Invalid IPv6 URL'
    """
    try:
        local = urllib.parse.urlsplit(url).hostname in LOOPBACK_HOSTS
        with (DIRECT if local else urllib.request.build_opener()).open(url, timeout=timeout):
            return None
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code} {exc.reason}" if ok_only else None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return str(getattr(exc, "reason", exc))
