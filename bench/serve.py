"""Loopback load on the ranking API: latency percentiles and throughput, batching on vs off.

    python bench/serve.py [--model-dir models/onnx] [--duration 15] [--concurrency 8]
        [--passages 100]

Starts `reranktune serve` twice on 127.0.0.1 (dynamic batching on, then off: the
baseline), drives each with `concurrency` clients sending `passages` real passages
from the bundled NQ-UTD corpus per request for `duration` seconds, then a second, smaller
load (4 passages per request) where cross-request batching matters most. Prints the
ratios and writes bench/results/serve.json. The model is a copy of models/onnx when
it exists, otherwise the packaged all-MiniLM-L6-v2 exported with an untrained head
(its scores mean nothing; its speed is the real model's). A model with a first-stage
prior is also served without it (batching on, large load): the prior's cost, measured
in the same run. Exits 1 on any 5xx.

    python bench/serve.py --big-queries [--small-duration 8]

measures instead what 5 MB queries (under the 8 MiB body limit; END and NONE in turn,
back to back from one client) cost: their own latency, and the small load's p99 with
them arriving beside its p99 without them (bench/results/serve_big_queries.json).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "bench")]

from common import machine  # noqa: E402

from reranktune.io import write_json  # noqa: E402

RESULTS = REPO / "bench" / "results" / "serve.json"
BIG_QUERY_RESULTS = REPO / "bench" / "results" / "serve_big_queries.json"
BIG_QUERY_CHARS = 5_000_000


def machine_and_load() -> dict:
    m = machine()
    return {
        **m,
        "load_average_1m_at_end": round(m["load_average_at_end"][0], 2),
    }  # other work skews ratios


def model_folder(model_dir: str | None, work: Path) -> tuple[Path, str]:
    """A private copy of the export to serve, or the packaged MiniLM exported with an untrained
    head."""
    source = Path(model_dir) if model_dir else REPO / "models" / "onnx"
    target = work / "onnx"
    if (source / "model.onnx").exists():
        shutil.copytree(source, target)
        return target, f"copy of {source}"
    from reranktune.export.onnx_export import export_onnx
    from reranktune.models import resolve_model
    from reranktune.reranker.config import OnnxConfig
    from reranktune.reranker.model import Reranker

    reranker = Reranker.from_pretrained(
        resolve_model("all-MiniLM-L6-v2"), device="cpu", max_length=128
    )
    target.mkdir()
    sample = reranker.tokenizer(["a b", "c d e"], padding=True, return_tensors="pt")
    names = export_onnx(reranker.model, reranker.tokenizer, target / "model.onnx", 17, sample)
    reranker.tokenizer.save_pretrained(target)
    reranker.config.model_copy(
        update={
            "onnx": OnnxConfig(
                inputs=names, file="model.onnx", source_model="all-MiniLM-L6-v2 (untrained head)"
            )
        }
    ).save(target)
    return target, "all-MiniLM-L6-v2 exported here, untrained head"


def without_prior(folder: Path, work: Path) -> Path | None:
    """A copy of ``folder`` whose reranktune.json has no prior (the cross-encoder alone); None if it
    has none."""
    from reranktune.reranker.config import RerankerConfig

    config = RerankerConfig.load(folder)
    if config.prior is None:
        return None
    target = work / "onnx-without-prior"
    shutil.copytree(folder, target, ignore=shutil.ignore_patterns(config.prior.folder))
    config.model_copy(update={"prior": None}).save(target)
    return target


def corpus_passages(seed: int = 0) -> list[str]:
    """The bundled NQ-UTD passages (about 100 words each), shuffled: real text of realistic
    length."""
    import json

    path = REPO / "data" / "questions" / "nq-utd" / "corpus.jsonl"
    chunks = [
        json.loads(line)["text"]
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    random.Random(seed).shuffle(chunks)
    return chunks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, folder: Path, batching: bool, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [
            sys.executable,
            "-m",
            "reranktune.cli",
            "serve",
            "--params",
            os.devnull,
            "--model-dir",
            str(folder),
            "--port",
            str(self.port),
            "--batching" if batching else "--no-batching",
        ]
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO / "src"),
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.proc.returncode}; see {self.log.name}"
                )
            try:
                if httpx.get(f"{self.url}/v1/health/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError("server not ready")

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(60)
        self.log.close()


async def load(
    url: str, passages: list[str], per_request: int, concurrency: int, duration: float, seed: int
) -> dict:
    rng = random.Random(seed)
    queries = [
        "how do I reclaim disk space",
        "what is a context manager",
        "how are indexes used",
        "what does async await do",
        "how to write an assert",
        "transaction isolation levels",
    ]
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def client(http: httpx.AsyncClient, until: float) -> None:
        while time.monotonic() < until:
            start = rng.randrange(len(passages) - per_request)
            body = {
                "model": "reranktune",
                "query": {"text": rng.choice(queries)},
                "truncate": "END",
                "passages": [{"text": p} for p in passages[start : start + per_request]],
            }
            t0 = time.perf_counter()
            response = await http.post(f"{url}/v1/ranking", json=body)
            latencies.append(time.perf_counter() - t0)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        await http.post(
            f"{url}/v1/ranking",
            json={
                "model": "reranktune",
                "query": {"text": "warm up"},
                "passages": [{"text": p} for p in passages[:per_request]],
                "truncate": "END",
            },
        )
        t0 = time.monotonic()
        await asyncio.gather(*[client(http, t0 + duration) for _ in range(concurrency)])
        elapsed = time.monotonic() - t0
    ms = np.asarray(latencies) * 1000
    return {
        "requests": len(latencies),
        "seconds": round(elapsed, 2),
        "requests_per_s": round(len(latencies) / elapsed, 2),
        "pairs_per_s": round(len(latencies) * per_request / elapsed, 1),
        "latency_ms": {f"p{q}": round(float(np.percentile(ms, q)), 1) for q in (50, 95, 99)},
        "status": {str(k): v for k, v in sorted(statuses.items())},
        "server_errors": sum(v for k, v in statuses.items() if k >= 500),
    }


async def big_queries(url: str, duration: float) -> dict:
    """A 5 MB query with one passage, under END then NONE, back to back for ``duration`` s: latency
    and statuses."""
    import json

    words = "how do I reclaim disk space after deleting rows "
    query = (words * (BIG_QUERY_CHARS // len(words) + 1))[:BIG_QUERY_CHARS]
    bodies = {
        truncate: json.dumps(
            {
                "model": "reranktune",
                "query": {"text": query},
                "truncate": truncate,
                "passages": [{"text": "VACUUM reclaims storage."}],
            }
        ).encode()
        for truncate in ("END", "NONE")
    }
    seconds: dict[str, list[float]] = {truncate: [] for truncate in bodies}
    statuses: dict[str, dict[str, int]] = {truncate: {} for truncate in bodies}
    async with httpx.AsyncClient(timeout=120, headers={"content-type": "application/json"}) as http:
        until = time.monotonic() + duration
        while time.monotonic() < until:
            for truncate, content in bodies.items():
                t0 = time.perf_counter()
                response = await http.post(f"{url}/v1/ranking", content=content)
                seconds[truncate].append(time.perf_counter() - t0)
                counts = statuses[truncate]
                counts[str(response.status_code)] = counts.get(str(response.status_code), 0) + 1
    return {
        truncate: {
            "requests": len(seconds[truncate]),
            "status": statuses[truncate],
            "seconds": {
                "max": round(max(seconds[truncate]), 3),
                "p50": round(float(np.percentile(seconds[truncate], 50)), 3),
            },
        }
        for truncate in bodies
    }


def run_big_queries(
    model_dir: str | None = None,
    duration: float = 8.0,
    concurrency: int = 8,
    out: Path | None = BIG_QUERY_RESULTS,
) -> dict:
    """The small load alone, then with 5 MB queries arriving; returns (and writes) the report."""
    pool = corpus_passages()

    async def beside() -> tuple[dict, dict]:
        return await asyncio.gather(
            load(server.url, pool, 4, concurrency, duration, seed=1),
            big_queries(server.url, duration),
        )

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        folder, model_note = model_folder(model_dir, Path(tmp))
        with Server(folder, True, Path(tmp) / "serve.log") as server:
            alone = asyncio.run(load(server.url, pool, 4, concurrency, duration, seed=1))
            with_big, big = asyncio.run(beside())
    report = {
        "model": model_note,
        "engine": "onnx",
        "concurrency": concurrency,
        "duration_s": duration,
        "small_load": {
            "passages_per_request": 4,
            "alone": alone,
            "with_big_queries": with_big,
            "p99_ratio_with_vs_without": round(
                with_big["latency_ms"]["p99"] / alone["latency_ms"]["p99"], 2
            ),
        },
        "big_queries": {"characters": BIG_QUERY_CHARS, **big},
        "machine": machine_and_load(),
    }
    if out is not None:
        write_json(out, report)
    return report


def run(
    model_dir: str | None = None,
    duration: float = 15.0,
    small_duration: float = 8.0,
    concurrency: int = 8,
    passages: int = 100,
    out: Path | None = RESULTS,
) -> dict:
    """Both loads against batching on and off; returns (and writes) the report."""
    passages_pool = corpus_passages()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        folder, model_note = model_folder(model_dir, Path(tmp))
        loads = {"large": (passages, duration), "small": (4, small_duration)}
        results: dict[str, dict] = {name: {} for name in loads}
        for mode, batching in (("batching", True), ("no_batching", False)):
            with Server(folder, batching, Path(tmp) / f"{mode}.log") as server:
                for name, (per_request, seconds) in loads.items():
                    results[name][mode] = asyncio.run(
                        load(server.url, passages_pool, per_request, concurrency, seconds, seed=1)
                    )
        plain = without_prior(folder, Path(tmp))
        if plain is not None:
            with Server(plain, True, Path(tmp) / "without_prior.log") as server:
                results["large"]["batching_without_prior"] = asyncio.run(
                    load(server.url, passages_pool, passages, concurrency, duration, seed=1)
                )
    report = {
        "model": model_note,
        "engine": "onnx",
        "concurrency": concurrency,
        "loads": {
            name: {
                "passages_per_request": loads[name][0],
                "duration_s": loads[name][1],
                **results[name],
                "throughput_ratio_batching_vs_off": round(
                    results[name]["batching"]["requests_per_s"]
                    / results[name]["no_batching"]["requests_per_s"],
                    2,
                ),
                "p95_ratio_batching_vs_off": round(
                    results[name]["batching"]["latency_ms"]["p95"]
                    / results[name]["no_batching"]["latency_ms"]["p95"],
                    2,
                ),
            }
            for name in loads
        },
        "machine": machine_and_load(),
    }
    if "batching_without_prior" in results["large"]:
        large = report["loads"]["large"]
        large["throughput_ratio_with_vs_without_prior"] = round(
            large["batching"]["requests_per_s"] / large["batching_without_prior"]["requests_per_s"],
            2,
        )
    if out is not None:
        write_json(out, report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model-dir", help="export folder to copy (default: models/onnx, else packaged MiniLM)"
    )
    parser.add_argument(
        "--duration", type=float, default=15.0, help="seconds of the large load per mode"
    )
    parser.add_argument(
        "--small-duration", type=float, default=8.0, help="seconds of the small load per mode"
    )
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--passages", type=int, default=100)
    parser.add_argument(
        "--out",
        type=Path,
        help="report file (default: bench/results/serve.json, "
        "serve_big_queries.json with --big-queries)",
    )
    parser.add_argument(
        "--big-queries",
        action="store_true",
        help="only the small load, alone and beside 5 MB queries (--small-duration s each)",
    )
    args = parser.parse_args(argv)
    if args.big_queries:
        report = run_big_queries(
            args.model_dir, args.small_duration, args.concurrency, args.out or BIG_QUERY_RESULTS
        )
        small = report["small_load"]
        print(
            f"model: {report['model']}; load average {report['machine']['load_average_1m_at_end']}"
        )
        print(
            f"small load p99: {small['alone']['latency_ms']['p99']} ms alone, "
            f"{small['with_big_queries']['latency_ms']['p99']} ms beside 5 MB queries "
            f"({small['p99_ratio_with_vs_without']}x)"
        )
        for truncate in ("END", "NONE"):
            big = report["big_queries"][truncate]
            print(
                f"5 MB query, truncate {truncate}: {big['requests']} requests, {big['status']}, "
                f"max {big['seconds']['max']} s, p50 {big['seconds']['p50']} s"
            )
        errors = sum(r["server_errors"] for r in (small["alone"], small["with_big_queries"]))
        return 1 if errors else 0
    args.out = args.out or RESULTS
    report = run(
        args.model_dir,
        args.duration,
        args.small_duration,
        args.concurrency,
        args.passages,
        args.out,
    )
    m = report["machine"]
    print(
        f"model: {report['model']}; {m['cpu']}, {m['cores']} cores, "
        f"load average {m['load_average_1m_at_end']}"
    )
    for name, result in report["loads"].items():
        print(
            f"\n{name} load: {result['passages_per_request']} passages/request, "
            f"concurrency {args.concurrency}"
        )
        for mode in ("batching", "no_batching", "batching_without_prior"):
            if mode not in result:
                continue
            r = result[mode]
            lat = r["latency_ms"]
            print(
                f"  {mode:12s} {r['requests_per_s']:7.2f} req/s {r['pairs_per_s']:8.1f} pairs/s  "
                f"p50 {lat['p50']:7.1f} ms  p95 {lat['p95']:7.1f} ms  p99 {lat['p99']:7.1f} ms  "
                f"5xx {r['server_errors']}"
            )
        print(
            f"  throughput ratio (batching / off): {result['throughput_ratio_batching_vs_off']}x, "
            f"p95 ratio: {result['p95_ratio_batching_vs_off']}x"
        )
        if "throughput_ratio_with_vs_without_prior" in result:
            print(
                "  throughput ratio (with / without the prior): "
                f"{result['throughput_ratio_with_vs_without_prior']}x"
            )
    print(f"\nwrote {args.out}")
    errors = sum(
        r[m]["server_errors"]
        for r in report["loads"].values()
        for m in ("batching", "no_batching", "batching_without_prior")
        if m in r
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
