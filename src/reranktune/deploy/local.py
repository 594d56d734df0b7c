"""``deploy.runtime: local``: ``reranktune serve`` as a detached process with pid and log files.

The pid file names the process so ``reranktune deploy --stop`` can end it with
SIGTERM (uvicorn finishes in-flight requests first); before signalling, the
pid's command line is checked, so a pid reused by another program is left alone.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from reranktune.deploy.health import DeployError, client_host, wait_ready
from reranktune.io import write_text
from reranktune.params import DeployParams

log = logging.getLogger(__name__)

MARKER = "reranktune.cli"  # in the server's command line; see _ours


@dataclass
class LocalDeployment:
    pid: int
    url: str
    log_file: Path
    pid_file: Path


def _files(params: DeployParams) -> tuple[Path, Path]:
    state = Path(params.state_dir)
    return state / "serve.pid", state / "serve.log"


def _ours(pid: int) -> bool:
    """The process exists and is a reranktune server (not a stranger that got the pid)."""
    try:
        cmdline = (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True  # no /proc (macOS): trust the pid file
    return MARKER in cmdline and " serve" in cmdline


def running_pid(params: DeployParams) -> int | None:
    pid_file, _ = _files(params)
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _ours(pid) else None


def serve_command(params: DeployParams, params_file: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        MARKER,
        "serve",
        "--params",
        str(params_file),
        "--host",
        params.host,
        "--port",
        str(params.port),
        "--model-dir",
        params.model_dir,
        "--engine",
        params.engine,
    ]


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_local(params: DeployParams, params_file: str = "params.yaml") -> LocalDeployment:
    """Start the server detached and return once ``/v1/health/ready`` answers 200."""
    pid_file, log_file = _files(params)
    existing = running_pid(params)
    if existing is not None:
        raise DeployError(
            f"a server is already running (pid {existing}, {pid_file}); "
            "stop it with `reranktune deploy --stop`"
        )
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            serve_command(params, params_file),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    write_text(pid_file, f"{proc.pid}\n")
    url = f"http://{client_host(params.host)}:{params.port}"

    def exited() -> str | None:
        code = proc.poll()
        if code is None:
            return None
        return (
            f"server exited with code {code} before it was ready; "
            f"last lines of {log_file}:\n{_tail(log_file)}"
        )

    try:
        wait_ready(f"{url}/v1/health/ready", params.ready_timeout_s, 0.5, failed=exited)
    except DeployError:
        if proc.poll() is None:
            _terminate(proc.pid)
        pid_file.unlink(missing_ok=True)
        raise
    log.info("serving %s at %s (pid %d, log %s)", params.model_dir, url, proc.pid, log_file)
    return LocalDeployment(proc.pid, url, log_file, pid_file)


def _terminate(pid: int, grace_s: float = 30.0) -> None:
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.1)
    log.warning("pid %d ignored SIGTERM for %g s; killing it", pid, grace_s)
    os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat")
    return not (state.exists() and state.read_text().split(") ")[-1].startswith("Z"))


def stop_local(params: DeployParams) -> int | None:
    """SIGTERM the running server (SIGKILL after 30 s); returns its pid, or None when none ran."""
    pid_file, _ = _files(params)
    pid = running_pid(params)
    if pid is not None:
        _terminate(pid)
        log.info("stopped server pid %d", pid)
    pid_file.unlink(missing_ok=True)
    return pid
