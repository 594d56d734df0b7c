"""The one place an onnxruntime session is built: the reranker's graphs, the prior's encoder,
the export gate."""

from __future__ import annotations

from pathlib import Path


def onnx_session(path: str | Path, device: str | None = None, threads: int = 0):
    """A session on ``device`` ("cpu", "cuda"; None: CUDA where onnxruntime has it, else the CPU).

    Only the CUDA and CPU providers: TensorRT's builds engines for minutes at load time (export
    builds its own plan), and Azure's calls remote endpoints. ``threads``: 0 = the runtime's
    default.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    providers = ["CPUExecutionProvider"]
    if device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(str(path), options, providers=providers)
