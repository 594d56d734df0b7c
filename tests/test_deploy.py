"""`reranktune deploy`: the local runtime for real (detached server, pid file, stop), and the NIM
launch with the Docker engine replaced by a fake at the SDK boundary (no Docker engine runs here;
the real container needs Docker with the NVIDIA Container Toolkit, a GPU and an NGC key)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import docker
import httpx
import pytest
import yaml
from docker.errors import DockerException, NotFound
from serve_helpers import ServerThread, export_folder, free_port, wait_ready

from reranktune.deploy.health import DeployError
from reranktune.deploy.local import running_pid
from reranktune.deploy.nim import LABEL, container_spec, launch_nim, stop_nim
from reranktune.io import InputError
from reranktune.params import DeployParams, NimParams
from reranktune.serve.app import ServeSettings, create_app

KEY = "nvapi-test-secret-0123456789"
ENV = {"NGC_API_KEY": KEY}


@pytest.fixture(scope="module")
def onnx_dir(tiny_bert_dir, tmp_path_factory):
    return export_folder(tiny_bert_dir, tmp_path_factory.mktemp("onnx"))


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        [sys.executable, "-m", "reranktune.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_local_deploy_starts_serves_and_stops(onnx_dir, tmp_path):
    port = free_port()
    params_file = tmp_path / "params.yaml"
    params_file.write_text(
        yaml.safe_dump(
            {
                "deploy": {
                    "runtime": "local",
                    "port": port,
                    "model_dir": str(onnx_dir),
                    "state_dir": str(tmp_path / "state"),
                }
            }
        )
    )
    started = _cli("deploy", "--params", str(params_file), cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    params = DeployParams(port=port, model_dir=str(onnx_dir), state_dir=str(tmp_path / "state"))
    pid = running_pid(params)
    try:
        assert pid is not None and f"pid {pid}" in started.stdout
        url = f"http://127.0.0.1:{port}"
        ranked = httpx.post(
            f"{url}/v1/ranking",
            timeout=30,
            json={
                "model": "reranktune",
                "query": {"text": "q"},
                "passages": [{"text": "a"}, {"text": "b"}],
            },
        )
        assert ranked.status_code == 200 and len(ranked.json()["rankings"]) == 2

        again = _cli("deploy", "--params", str(params_file), cwd=tmp_path)
        assert again.returncode == 1 and "already running" in again.stderr
    finally:
        stopped = _cli("deploy", "--params", str(params_file), "--stop", cwd=tmp_path)
    assert stopped.returncode == 0 and f"stopped pid {pid}" in stopped.stdout
    assert running_pid(params) is None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/v1/health/live", timeout=2)
    log = (tmp_path / "state" / "serve.log").read_text()
    assert "Application shutdown complete" in log  # graceful: lifespan shutdown ran


def test_serve_names_a_missing_model_folder(tmp_path):
    result = _cli(
        "serve", "--model-dir", str(tmp_path / "nope"), "--port", str(free_port()), cwd=tmp_path
    )
    assert result.returncode == 2
    assert "nope: model folder not found" in result.stderr and "reranktune export" in result.stderr


def test_local_deploy_reports_a_server_that_dies(tmp_path):
    broken = tmp_path / "onnx"
    broken.mkdir()
    (broken / "reranktune.json").write_text(
        '{"format_version": 2, "prompt_template": "{query} {passage}", '
        '"max_length": 8, "onnx": {"inputs": ["input_ids"], "file": "model.onnx"}}'
    )
    (broken / "model.onnx").write_bytes(b"not a graph")
    params_file = tmp_path / "params.yaml"
    params_file.write_text(
        yaml.safe_dump(
            {
                "deploy": {
                    "port": free_port(),
                    "model_dir": str(broken),
                    "state_dir": str(tmp_path / "state"),
                }
            }
        )
    )
    result = _cli("deploy", "--params", str(params_file), cwd=tmp_path)
    assert result.returncode == 1
    assert "exited with code" in result.stderr and "model failed to load" in result.stderr
    assert not (tmp_path / "state" / "serve.pid").exists()


# ---- NIM, with a fake Docker engine ---------------------------------------------------------


class FakeContainer:
    def __init__(
        self, name: str, labels: dict, status: str = "running", exits_after: int | None = None
    ):
        self.id = f"id-{name}"
        self.name = name
        self.labels = labels
        self.status = status
        self.exits_after = exits_after  # reloads before the container "crashes"
        self.removed = self.stopped = False
        self.reloads = 0

    def reload(self):
        self.reloads += 1
        if self.exits_after is not None and self.reloads > self.exits_after:
            self.status = "exited"

    def logs(self, tail: int):
        return f"starting NIM\nusing key {KEY}\nprofile not found\n".encode()

    def remove(self, force: bool = False):
        self.removed = True

    def stop(self, timeout: int):
        self.stopped = True


class FakeContainers:
    def __init__(self, existing: FakeContainer | None = None, exits_after: int | None = None):
        self.existing = existing
        self.exits_after = exits_after
        self.run_kwargs: dict | None = None
        self.started: FakeContainer | None = None

    def get(self, name):
        if self.existing is not None and self.existing.name == name and not self.existing.removed:
            return self.existing
        raise NotFound(f"No such container: {name}")

    def run(self, **kwargs):
        self.run_kwargs = kwargs
        self.started = FakeContainer(kwargs["name"], kwargs["labels"], exits_after=self.exits_after)
        return self.started


class FakeDocker:
    def __init__(self, **kwargs):
        self.containers = FakeContainers(**kwargs)


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float):
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def nim_params(model_dir, port=8000, **nim) -> DeployParams:
    return DeployParams(
        runtime="nim", model_dir=str(model_dir), port=port, nim=NimParams(cache_dir=None, **nim)
    )


def test_nim_container_arguments(onnx_dir, tmp_path):
    params = DeployParams(
        runtime="nim", model_dir=str(onnx_dir), nim=NimParams(cache_dir=str(tmp_path / "nim-cache"))
    )
    spec = container_spec(params, onnx_dir, KEY)
    assert spec["image"] == "nvcr.io/nim/nvidia/llama-nemotron-rerank-1b-v2:1.10.0"
    assert spec["detach"] is True and spec["name"] == "reranktune-nim"
    assert spec["environment"] == {"NGC_API_KEY": KEY, "NIM_CUSTOM_MODEL": "/opt/nim/custom_model"}
    assert spec["volumes"][str(onnx_dir.resolve())] == {
        "bind": "/opt/nim/custom_model",
        "mode": "ro",
    }
    assert spec["volumes"][str((tmp_path / "nim-cache").resolve())] == {
        "bind": "/opt/nim/.cache",
        "mode": "rw",
    }
    assert spec["ports"] == {"8000/tcp": ("127.0.0.1", 8000)}
    [gpus] = spec["device_requests"]
    assert gpus["Count"] == -1 and gpus["Capabilities"] == [["gpu"]]
    assert spec["labels"][LABEL] == "true"
    some = container_spec(nim_params(onnx_dir, gpus="0, 2"), onnx_dir, KEY)["device_requests"][0]
    assert some["DeviceIDs"] == ["0", "2"]


def test_nim_launch_waits_for_a_real_ready_endpoint(onnx_dir, caplog):
    """The fake container 'starts'; a real ranking server on the published port answers
    readiness."""
    app = create_app(ServeSettings(model_dir=str(onnx_dir)))
    with ServerThread(app) as srv:
        wait_ready(srv.url)
        client = FakeDocker()
        with caplog.at_level(logging.DEBUG):
            deployment = launch_nim(nim_params(onnx_dir, port=srv.port), client=client, environ=ENV)
    assert deployment.url == srv.url and deployment.name == "reranktune-nim"
    assert client.containers.run_kwargs["ports"] == {"8000/tcp": ("127.0.0.1", srv.port)}
    assert not client.containers.started.removed
    assert "NIM_CUSTOM_MODEL" in caplog.text and KEY not in caplog.text


def test_nim_timeout_removes_the_container_after_polling_every_5s(onnx_dir):
    client, clock = FakeDocker(), FakeClock()
    with pytest.raises(DeployError) as err:
        launch_nim(
            nim_params(onnx_dir),
            client=client,
            environ=ENV,
            probe=lambda url: False,
            sleep=clock.sleep,
            clock=clock,
        )
    assert "not ready after 120 s" in str(err.value) and "removed" in str(err.value)
    assert set(clock.sleeps) == {5.0} and len(clock.sleeps) == 24
    assert client.containers.started.removed
    assert KEY not in str(err.value) and "profile not found" in str(err.value)


def test_nim_failed_container_is_kept_on_request(onnx_dir):
    client, clock = FakeDocker(exits_after=2), FakeClock()
    with pytest.raises(
        DeployError, match="stopped \\(exited\\) before it was ready.*docker logs reranktune-nim"
    ):
        launch_nim(
            nim_params(onnx_dir),
            client=client,
            keep_failed=True,
            environ=ENV,
            probe=lambda url: False,
            sleep=clock.sleep,
            clock=clock,
        )
    assert not client.containers.started.removed
    assert clock.now == 10.0  # noticed on the first poll after the exit, not at the timeout


def test_nim_existing_container_is_left_alone_without_replace(onnx_dir):
    old = FakeContainer("reranktune-nim", {LABEL: "true"}, status="running")
    client = FakeDocker(existing=old)
    with pytest.raises(DeployError, match="already exists.*--replace"):
        launch_nim(nim_params(onnx_dir), client=client, environ=ENV, probe=lambda url: True)
    assert not old.removed and client.containers.run_kwargs is None


def test_nim_replace_removes_only_our_container(onnx_dir):
    ours = FakeContainer("reranktune-nim", {LABEL: "true"}, status="exited")
    client = FakeDocker(existing=ours)
    launch_nim(
        nim_params(onnx_dir), client=client, replace=True, environ=ENV, probe=lambda url: True
    )
    assert ours.removed and client.containers.run_kwargs is not None

    stranger = FakeContainer("reranktune-nim", {"com.example": "x"})
    client = FakeDocker(existing=stranger)
    with pytest.raises(DeployError, match="not started by reranktune"):
        launch_nim(
            nim_params(onnx_dir), client=client, replace=True, environ=ENV, probe=lambda url: True
        )
    assert not stranger.removed and client.containers.run_kwargs is None


def test_nim_needs_a_key_before_touching_docker(onnx_dir):
    client = FakeDocker()
    with pytest.raises(InputError, match="NGC_API_KEY is not set"):
        launch_nim(nim_params(onnx_dir), client=client, environ={})
    assert client.containers.run_kwargs is None


def test_nim_without_a_docker_engine(onnx_dir, monkeypatch):
    def no_engine(**kwargs):
        raise DockerException("Error while fetching server API version: no such file")

    monkeypatch.setattr(docker, "from_env", no_engine)
    with pytest.raises(DeployError, match="no Docker engine reachable.*install and start Docker"):
        launch_nim(nim_params(onnx_dir), environ=ENV)


def test_nim_stop_removes_only_ours(onnx_dir):
    ours = FakeContainer("reranktune-nim", {LABEL: "true"})
    assert stop_nim(nim_params(onnx_dir), client=FakeDocker(existing=ours))
    assert ours.stopped and ours.removed
    assert not stop_nim(nim_params(onnx_dir), client=FakeDocker())
    stranger = FakeContainer("reranktune-nim", {})
    with pytest.raises(DeployError):
        stop_nim(nim_params(onnx_dir), client=FakeDocker(existing=stranger))
    assert not stranger.removed


@pytest.mark.parametrize(
    "flags, batching",
    [([], False), (["--batching"], True), (["--no-batching"], False)],
)
def test_serve_batching_is_off_by_default_and_both_flags_work(flags, batching, tmp_path):
    """bench/results/serve.json: batching was slower on small requests and equal on large."""
    from reranktune.cli import build_parser
    from reranktune.deploy.cli import _params

    params = tmp_path / "params.yaml"
    params.write_text("deploy:\n  port: 8000\n")
    args = build_parser().parse_args(["serve", "--params", str(params), *flags])
    assert _params(args).batching is batching
    params.write_text("deploy:\n  batching: true\n")
    args = build_parser().parse_args(["serve", "--params", str(params), *flags])
    assert _params(args).batching is (batching if flags else True)
