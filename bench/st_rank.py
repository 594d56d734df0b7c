"""sentence-transformers' ``CrossEncoder.rank`` under load, in-process: bench/serve.py's baseline.

    python bench/st_rank.py HF_DIR --backend torch|onnx [--variant O3|int8] --requests FILE
        --cells '[[20, 1, 5.0], [100, 16, 5.0]]' [--max-length 128]

Runs in whichever interpreter bench/serve.py's ``--st-python`` names: the ONNX backend needs
``optimum`` (sentence-transformers' ``onnx`` extra), whose transformers pin conflicts with the
project's venv, so it lives in a venv of its own (see bench/serve.py). ``--backend onnx``
exports the model in a private copy of HF_DIR with sentence-transformers' own helpers:
``CrossEncoder(..., backend="onnx")`` (plain export), then ``export_optimized_onnx_model``
(``--variant O1``..``O3``) or ``export_dynamic_quantized_onnx_model`` (``--variant int8``, the
quantisation config matching this CPU: avx512_vnni, avx512, avx2 or arm64).

``--requests`` is the JSON request pool bench/serve.py sends the server: ``{"queries": [...],
"passages": [...], "pools": {"N": [[query index, first passage], ...]}}``. Each of the
``concurrency`` client threads calls ``model.rank(query, passages)`` (its defaults: batch 32)
on requests drawn from the pool for ``seconds``. No HTTP and no prior: the comparison leans the
baseline's way. Prints one JSON line per cell (pairs/s, latency percentiles), or
``{"skipped": reason}`` and exit 3 when this interpreter cannot run the backend.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import load_summary

SKIPPED = 3  # exit status: this interpreter lacks what the backend needs


def quantization_config() -> str:
    """sentence-transformers' dynamic int8 preset for this CPU."""
    if platform.machine().lower() in ("arm64", "aarch64"):
        return "arm64"
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    return "avx512" if "avx512f" in flags else "avx2"


def missing(backend: str) -> str | None:
    """Why this interpreter cannot run ``backend``, or None."""
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        return f"sentence-transformers is not installed in {sys.executable}"
    if backend == "onnx":
        try:
            import optimum.onnxruntime  # noqa: F401
        except ImportError as e:
            return (
                f"optimum.onnxruntime does not import in {sys.executable} ({e}); "
                "pass --st-python with a venv made as bench/serve.py's docstring says"
            )
    return None


def load_model(hf_dir: Path, backend: str, variant: str | None, max_length: int, work: Path):
    """The CrossEncoder to time, and a note of which graph it runs."""
    from sentence_transformers import CrossEncoder

    if backend == "torch":
        model = CrossEncoder(str(hf_dir), max_length=max_length, device="cpu")
        return model, "torch fp32"
    copy = work / "model"
    shutil.copytree(hf_dir, copy, ignore=shutil.ignore_patterns("*.onnx", "prior", "onnx"))
    # exports onnx/model.onnx with optimum
    model = CrossEncoder(str(copy), backend="onnx", max_length=max_length, device="cpu")
    if variant is None:
        return model, "onnx/model.onnx"
    from sentence_transformers import (
        export_dynamic_quantized_onnx_model,
        export_optimized_onnx_model,
    )

    if variant == "int8":
        preset = quantization_config()
        export_dynamic_quantized_onnx_model(model, preset, str(copy))
        # qint8, or quint8 where the preset quantizes to unsigned weights (avx2)
        [path] = (copy / "onnx").glob(f"model_q*int8_{preset}.onnx")
        file_name = f"onnx/{path.name}"
    else:
        export_optimized_onnx_model(model, variant, str(copy))
        file_name = f"onnx/model_{variant}.onnx"
    model = CrossEncoder(
        str(copy),
        backend="onnx",
        max_length=max_length,
        device="cpu",
        model_kwargs={"file_name": file_name},
    )
    return model, file_name


def run_load(
    model, requests: list[tuple[str, list[str]]], concurrency: int, duration: float, seed: int
) -> dict:
    rng = random.Random(seed)
    lock = threading.Lock()
    latencies: list[float] = []
    pairs = 0
    model.rank(*requests[0])  # warm up

    def client(until: float) -> None:
        nonlocal pairs
        while time.monotonic() < until:
            with lock:
                query, passages = rng.choice(requests)
            t0 = time.perf_counter()
            model.rank(query, passages)
            with lock:
                latencies.append(time.perf_counter() - t0)
                pairs += len(passages)

    t0 = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(client, t0 + duration) for _ in range(concurrency)]:
            future.result()
    elapsed = time.monotonic() - t0
    return load_summary(latencies, pairs, elapsed, {200: len(latencies)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("hf_dir", type=Path)
    parser.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    parser.add_argument("--variant", help="onnx only: O1, O2, O3 or int8")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--requests", type=Path, required=True, help="the JSON request pool")
    parser.add_argument(
        "--cells", required=True, help="JSON list of [passages per request, concurrency, seconds]"
    )
    args = parser.parse_args(argv)
    reason = missing(args.backend)
    if reason:
        print(json.dumps({"skipped": reason}), flush=True)
        return SKIPPED
    spec = json.loads(args.requests.read_text(encoding="utf-8"))
    queries, passages = spec["queries"], spec["passages"]
    import sentence_transformers

    with tempfile.TemporaryDirectory(prefix="bench-st-") as tmp:
        model, graph = load_model(
            args.hf_dir, args.backend, args.variant, args.max_length, Path(tmp)
        )
        for per_request, concurrency, seconds in json.loads(args.cells):
            requests = [
                (queries[q], passages[start : start + per_request])
                for q, start in spec["pools"][str(per_request)]
            ]
            result = run_load(model, requests, concurrency, seconds, seed=1)
            line = {
                "passages": per_request,
                "concurrency": concurrency,
                "graph": graph,
                "sentence_transformers": sentence_transformers.__version__,
                **result,
            }
            print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
