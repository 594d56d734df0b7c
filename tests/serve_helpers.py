"""Helpers for the serving tests: a real export folder and a real uvicorn server on a free port."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx


def export_folder(model_dir: Path, out: Path, max_length: int = 64) -> Path:
    """What `reranktune export` writes: model.onnx, the tokenizer, reranktune.json, and the prior
    if any."""
    import shutil

    from reranktune.export.onnx_export import export_onnx
    from reranktune.reranker.config import OnnxConfig
    from reranktune.reranker.model import Reranker

    reranker = Reranker.from_pretrained(str(model_dir), device="cpu", max_length=max_length)
    out.mkdir(parents=True, exist_ok=True)
    sample = reranker.tokenizer(["a b", "c d e"], padding=True, return_tensors="pt")
    names = export_onnx(reranker.model, reranker.tokenizer, out / "model.onnx", 17, sample)
    reranker.tokenizer.save_pretrained(out)
    (out / "config.json").write_text((Path(model_dir) / "config.json").read_text())
    if reranker.config.prior:
        shutil.copytree(
            Path(model_dir) / reranker.config.prior.folder, out / reranker.config.prior.folder
        )
    onnx = OnnxConfig(inputs=names, file="model.onnx", source_model=str(model_dir))
    reranker.config.model_copy(update={"onnx": onnx}).save(out)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1 in a background thread, stopped gracefully;
    ``options`` go to its Config."""

    def __init__(self, app, **options) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, **options)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        wait_for(lambda: self.server.started, 30, "server did not start")
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def wait_for(condition, timeout_s: float, message: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(message)
        time.sleep(0.05)


def wait_ready(url: str, timeout_s: float = 60) -> None:
    def ready() -> bool:
        try:
            return httpx.get(f"{url}/v1/health/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, timeout_s, f"{url} not ready")
