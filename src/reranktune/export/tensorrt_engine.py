"""A TensorRT engine from the fp32 ONNX graph: fp16 with the norms kept in fp32.

Precision lives in the graph (a strongly typed network), the only way TensorRT 11
accepts and the recommended one since 10.12: the fp32 graph is converted to fp16
with every normalisation node blocked, then parsed as is. One optimisation profile
covers (batch, length) from min to max, tuned for opt.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from reranktune.export.variants import to_fp16

log = logging.getLogger(__name__)

ENGINE_FILE = "model.plan"


def tensorrt_missing() -> str | None:
    """Why TensorRT cannot be used here, or None when it can."""
    try:
        import tensorrt  # noqa: F401
    except (ImportError, OSError) as exc:  # OSError: bindings present, libnvinfer missing
        return f"`import tensorrt` failed ({exc})"
    import torch

    if not torch.cuda.is_available():
        return "tensorrt imports but no CUDA device is visible"
    return None


def build_engine(
    fp32_onnx: Path, dst: Path, input_names: list[str], batch: list[int], length: list[int]
) -> None:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(
        trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"
    ):  # implied (and ignored) in 11.x
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "model.fp16-norms-fp32.onnx"
        to_fp16(fp32_onnx, source, keep_norms_fp32=True)
        if not parser.parse_from_file(str(source)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT could not parse {fp32_onnx.name}: {errors}")
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    for name in input_names:
        profile.set_shape(name, *[(b, n) for b, n in zip(batch, length)])
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise RuntimeError("TensorRT failed to build the engine (its log above says why)")
    with open(dst, "wb") as fh:
        fh.write(engine)


class TensorRTSession:
    """Runs an engine with onnxruntime's ``session.run(outputs, feed)`` call shape, so the gate
    can judge it."""

    def __init__(self, path: Path) -> None:
        import tensorrt as trt

        self._trt = trt
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(Path(path).read_bytes())
        self.context = self.engine.create_execution_context()

    def run(self, outputs: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        import torch

        keep = []  # the device buffers must outlive the launch
        for name, array in feed.items():
            dtype = self._trt.nptype(self.engine.get_tensor_dtype(name))
            tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=dtype)).cuda()
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
            keep.append(tensor)
        results = []
        for name in outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            out = torch.empty(shape, dtype=torch.float32, device="cuda")
            self.context.set_tensor_address(name, out.data_ptr())
            results.append(out)
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        stream.synchronize()
        return [out.cpu().numpy() for out in results]
