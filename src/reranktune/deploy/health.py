"""Readiness polling shared by the local and NIM runtimes."""

from __future__ import annotations

import time
from collections.abc import Callable


class DeployError(RuntimeError):
    """The service did not start or stop; the message says why and what was cleaned up."""


def client_host(host: str) -> str:
    """Where a client on this machine reaches a server bound to ``host``."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def probe_ready(url: str, timeout_s: float = 2.0) -> bool:
    """True when ``url`` (a ``/v1/health/ready`` endpoint) answers 200."""
    import httpx

    try:
        return httpx.get(url, timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


def wait_ready(
    url: str,
    timeout_s: float,
    interval_s: float,
    failed: Callable[[], str | None] = lambda: None,
    probe: Callable[[str], bool] = probe_ready,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Poll ``url`` every ``interval_s`` until it is ready; raise DeployError on ``failed()`` or
    timeout."""
    deadline = clock() + timeout_s
    while True:
        reason = failed()
        if reason:
            raise DeployError(reason)
        if probe(url):
            return
        if clock() >= deadline:
            raise DeployError(f"{url} not ready after {timeout_s:g} s")
        sleep(min(interval_s, max(0.0, deadline - clock())))
