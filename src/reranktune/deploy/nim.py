"""``deploy.runtime: nim``: NVIDIA's reranking container serving the exported model.

The container gets the export folder mounted read-only and named by
``NIM_CUSTOM_MODEL``, the NGC key from this process's environment (never from
params, never logged), GPUs, and its port 8000 published on 127.0.0.1 only.
Readiness is polled every ``nim.poll_interval_s`` up to ``ready_timeout_s``.
A container that fails is removed (``keep_failed`` keeps it for ``docker logs``);
an existing container of the same name is replaced only with ``replace`` and
only when our label says we created it.

Needs a Docker engine with the NVIDIA Container Toolkit, a GPU and an NGC key:
none of these exist on the CPU machines the tests run on, so the tests drive this
module with a fake Docker client at the SDK boundary.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reranktune.deploy.health import DeployError, client_host, probe_ready, wait_ready
from reranktune.io import InputError
from reranktune.params import DeployParams
from reranktune.reranker.config import RerankerConfig

log = logging.getLogger(__name__)

LABEL = "org.reranktune.managed"
NIM_PORT = "8000/tcp"
NIM_CACHE = "/opt/nim/.cache"
KEY_ENV = "NGC_API_KEY"


@dataclass
class NimDeployment:
    container_id: str
    name: str
    url: str


def ngc_key(environ: dict[str, str] | None = None) -> str:
    key = (environ if environ is not None else os.environ).get(KEY_ENV, "").strip()
    if not key:
        raise InputError(
            f"{KEY_ENV} is not set: export your NGC API key "
            "(https://org.ngc.nvidia.com/setup/api-keys) "
            "in the environment; it is never read from params.yaml"
        )
    return key


def docker_client():
    """The local Docker engine, or a DeployError that says what is missing."""
    try:
        import docker
    except ImportError as exc:
        raise DeployError("the Docker SDK is not installed: pip install docker") from exc
    try:
        client = docker.from_env()
        client.ping()
    except (
        Exception
    ) as exc:  # DockerException, FileNotFoundError, ConnectionError...: all mean "no engine"
        raise DeployError(
            f"no Docker engine reachable ({type(exc).__name__}: {exc}); install and start Docker "
            "(with the NVIDIA Container Toolkit for GPUs), or check DOCKER_HOST"
        ) from None
    return client


def _device_requests(gpus: str) -> list:
    from docker.types import DeviceRequest

    if gpus == "all":
        return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    return [
        DeviceRequest(
            device_ids=[g.strip() for g in gpus.split(",") if g.strip()], capabilities=[["gpu"]]
        )
    ]


def container_spec(params: DeployParams, model_dir: Path, api_key: str) -> dict[str, Any]:
    """Keyword arguments for ``client.containers.run`` (the equivalent of ``docker run -d ...``)."""
    nim = params.nim
    volumes = {str(model_dir.resolve()): {"bind": nim.model_mount, "mode": "ro"}}
    if nim.cache_dir:
        cache = Path(nim.cache_dir).expanduser()
        cache.mkdir(parents=True, exist_ok=True)
        volumes[str(cache.resolve())] = {"bind": NIM_CACHE, "mode": "rw"}
    return {
        "image": nim.image,
        "name": nim.container_name,
        "detach": True,
        "environment": {KEY_ENV: api_key, "NIM_CUSTOM_MODEL": nim.model_mount},
        "volumes": volumes,
        "ports": {NIM_PORT: (params.host, params.port)},
        "device_requests": _device_requests(nim.gpus),
        "shm_size": nim.shm_size,
        "user": f"{os.getuid()}:{os.getgid()}",  # cache files stay the user's
        "labels": {LABEL: "true", "org.reranktune.model_dir": str(model_dir.resolve())},
    }


def redacted(spec: dict[str, Any]) -> dict[str, Any]:
    env = {k: ("***" if k == KEY_ENV else v) for k, v in spec["environment"].items()}
    return {**spec, "environment": env}


def _existing(client, name: str):
    from docker.errors import NotFound

    try:
        return client.containers.get(name)
    except NotFound:
        return None


def _is_ours(container) -> bool:
    return (container.labels or {}).get(LABEL) == "true"


def _logs_tail(container, api_key: str, lines: int = 40) -> str:
    try:
        text = container.logs(tail=lines).decode(errors="replace")
    except Exception as exc:
        return f"(no logs: {exc})"
    return text.replace(api_key, "***")


def launch_nim(
    params: DeployParams,
    client=None,
    replace: bool = False,
    keep_failed: bool = False,
    environ: dict[str, str] | None = None,
    probe: Callable[[str], bool] = probe_ready,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] | None = None,
) -> NimDeployment:
    """Start the NIM container on ``params.model_dir`` and wait until it is ready."""
    model_dir = Path(params.model_dir)
    if not model_dir.is_dir():
        raise InputError(f"{model_dir}: model folder not found (run `reranktune export` first)")
    if RerankerConfig.load(model_dir).prior:
        log.warning(
            "%s was trained with a first-stage prior, which NIM does not add: the container serves "
            "the cross-encoder's logit alone; `deploy.runtime: local` serves logit + prior",
            model_dir,
        )
    api_key = ngc_key(environ)
    client = client if client is not None else docker_client()
    name = params.nim.container_name

    old = _existing(client, name)
    if old is not None:
        if not replace:
            raise DeployError(
                f"container {name!r} already exists ({old.status}); pass --replace to replace it, "
                "or set deploy.nim.container_name"
            )
        if not _is_ours(old):
            raise DeployError(
                f"container {name!r} was not started by reranktune (no {LABEL} label); "
                "refusing to remove it"
            )
        log.info("replacing container %s (%s)", name, old.status)
        old.remove(force=True)

    spec = container_spec(params, model_dir, api_key)
    log.info("starting %s", redacted(spec))
    container = client.containers.run(**spec)
    url = f"http://{client_host(params.host)}:{params.port}"

    def exited() -> str | None:
        container.reload()
        if container.status in ("exited", "dead"):
            return f"container {name} stopped ({container.status}) before it was ready"
        return None

    timing = {k: v for k, v in (("sleep", sleep), ("clock", clock)) if v is not None}
    try:
        wait_ready(
            f"{url}/v1/health/ready",
            params.ready_timeout_s,
            params.nim.poll_interval_s,
            failed=exited,
            probe=probe,
            **timing,
        )
    except DeployError as exc:
        logs = _logs_tail(container, api_key)
        if keep_failed:
            action = f"kept for inspection: docker logs {name}"
        else:
            container.remove(force=True)
            action = "removed (pass --keep-failed to keep it)"
        raise DeployError(f"{exc}; container {action}\n--- last log lines ---\n{logs}") from None
    log.info("NIM ready at %s (container %s)", url, name)
    return NimDeployment(container.id, name, url)


def stop_nim(params: DeployParams, client=None) -> bool:
    """Stop and remove our container; False when there is none. Refuses one that is not ours."""
    client = client if client is not None else docker_client()
    container = _existing(client, params.nim.container_name)
    if container is None:
        return False
    if not _is_ours(container):
        raise DeployError(
            f"container {params.nim.container_name!r} was not started by reranktune; "
            "not stopping it"
        )
    container.stop(timeout=30)
    container.remove(force=True)
    return True
