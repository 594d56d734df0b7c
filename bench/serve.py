"""reranktune serve under load, with and without its prior, against sentence-transformers'
CrossEncoder.rank on the same model and the same requests, in one run on one machine.

    python bench/serve.py [--model-dir models/onnx] [--hf-dir models/reranker] [--duration 5]
        [--passages 20 100] [--concurrency 1 16] [--pool-requests 16]
        [--st-python /work/venv-st/bin/python] [--batching-on] [--out bench/results/serve.json]

Every configuration gets the same loads: 20 and 100 passages per request, 1 and 16 concurrent
clients, ``duration`` seconds each, requests drawn from one pool of ``pool_requests`` requests
(one of six queries, a window of real passages from the bundled NQ-UTD corpus; a 20-passage
request is the top 20 of the 100-passage one):

- ``reranktune_*``: `reranktune serve` on a copy of the export folder, default settings (the
  served score is logit + prior);
- ``reranktune_without_prior_*``: the same server on a copy whose reranktune.json has no prior
  (the cross-encoder's logit alone); only for a model trained with a prior;
- ``earlier_default_cold``: the configuration serve ran by default before the variant was
  picked by measurement: the fused fp32 graph, the prior's fp32 graph, dynamic batching on
  (a copy of the export whose reranktune.json says so), run by today's code, so it shares
  every gain outside those three choices (the prior's small CPU batch, for one) and the ratio
  over it leans its way; cold only, as it had no embedding cache then, so its cold figure is
  what it served in either regime. Its request deadline is raised to 300 s: at 20 pairs/s,
  16 clients' 100 passages take 80 s, and with the 30 s default every such request would end
  in a 503 and its throughput go unmeasured;
- each of them in two regimes: ``cold``, every passage made unique (a numbered prefix), so the
  server has never seen it and must embed it; then ``warm``, after one untimed pass over the
  request pool, as a reranker serving a finite corpus sees the same passages again (the prior
  keeps the embeddings of its last 10,000 texts, retrieval/embedder.py:CachedEncoder);
- ``reranktune_corpus``: the default server started with ``--corpus`` on the NQ-UTD
  corpus.jsonl the passages come from (its prior embeds them before it is ready), measured
  from its first request, with no warm-up;
- ``st_torch``, ``st_onnx_O3``, ``st_onnx_int8``: sentence-transformers' ``CrossEncoder.rank``
  in-process (bench/st_rank.py: client threads, no HTTP, no prior) on the Hugging Face folder
  of the same model (``--hf-dir``; default the export's source_model, e.g. models/reranker):
  its default torch backend, and its ONNX backend exported, then optimised (O3) or quantised to
  int8 (the preset for this CPU) by its own export helpers. Those need ``optimum``, whose
  transformers pin conflicts with the project's venv, so ``--st-python`` names an interpreter
  that has it; without it (or without optimum there) the ONNX ones are skipped with a note and
  ``st_torch`` runs in this interpreter. The ST venv, made outside the repo:

      python3.11 -m venv /work/venv-st
      /work/venv-st/bin/pip install torch==2.13.0   # the CPU build, as the project's venv
      /work/venv-st/bin/pip install "sentence-transformers[onnx]==5.7.0" "transformers==4.57.6"

  (optimum-onnx 0.1.0 caps transformers below 4.58 and sentence-transformers 6.x needs 5.x, so
  the unpinned ``sentence-transformers[onnx]`` sends pip backtracking for over ten minutes;
  these pins resolve at once, with optimum 2.1.0 and onnxruntime 1.32.0.)

The baseline is ``st_torch`` (else the server without the prior): every configuration's pairs/s
and p50/p95/p99 are printed as ratios over it, per load, the prior's cost as pairs/s with /
without it, per regime, and reranktune's pairs/s over ST's fastest backend on each load.
ST's rank sees no HTTP and no prior (and ST has no cache, so its regime does not matter):
the comparison leans its way. Writes bench/results/serve.json. Exits 1 on any 5xx. The model
is a copy of models/onnx when it exists, otherwise the packaged
all-MiniLM-L6-v2 exported with an untrained head (its scores mean nothing, its speed is the real
model's; no ST baseline then). ``--batching-on`` also serves with dynamic batching on (off
by default).

    python bench/serve.py --big-queries [--small-duration 8]

measures instead what 5 MB queries (under the 8 MiB body limit; END and NONE in turn,
back to back from one client) cost: their own latency, and the small load's p99 with
them arriving beside its p99 without them (bench/results/serve_big_queries.json).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
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

from common import load_summary, machine  # noqa: E402

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


EARLIER_DEADLINE_S = 300  # the earlier default's request deadline (see the module docstring)


def earlier_default(folder: Path, work: Path) -> Path | None:
    """A copy of ``folder`` served as serve's default was before bf16 and INT8 passed the gate: the
    fused fp32 graph, the prior's fp32 graph; None when the export has no accepted fused graph."""
    from reranktune.reranker.config import RerankerConfig

    config = RerankerConfig.load(folder)
    fused = config.onnx.variants.get("optimized") if config.onnx else None
    if fused is None or not fused.accepted:
        return None
    target = work / "onnx-earlier-default"
    shutil.copytree(folder, target)
    prior = config.prior
    if prior is not None and prior.dense is not None:
        dense = prior.dense.model_copy(update={"onnx_file": "model.onnx", "bf16": False})
        prior = prior.model_copy(update={"dense": dense})
    onnx = config.onnx.model_copy(update={"file": fused.file, "default_variant": "optimized"})
    config.model_copy(update={"onnx": onnx, "prior": prior}).save(target)
    return target


CORPUS = REPO / "data" / "questions" / "nq-utd" / "corpus.jsonl"


def corpus_passages(seed: int = 0) -> list[str]:
    """The bundled NQ-UTD passages (about 100 words each), shuffled: real text of realistic
    length."""
    chunks = [
        json.loads(line)["text"]
        for line in CORPUS.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    random.Random(seed).shuffle(chunks)
    return chunks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, folder: Path, log: Path, args: tuple[str, ...] = ()) -> None:
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
            *args,
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


FRESH = itertools.count()  # numbers cold passages across every load of the run: none repeats
QUERIES = [
    "how do I reclaim disk space",
    "what is a context manager",
    "how are indexes used",
    "what does async await do",
    "how to write an assert",
    "transaction isolation levels",
]


def request_pool(n_passages: int, largest: int, size: int, seed: int = 0) -> list[list[int]]:
    """``size`` requests as ``[query index, first passage]``: a request for ``n`` passages sends
    ``passages[first : first + n]``, so a 20-passage request is the top 20 of the 100-passage one
    (a reranker's depths over the same candidates), and one warm-up pass over the largest
    covers every text the pool holds."""
    rng = random.Random(seed)
    return [
        [rng.randrange(len(QUERIES)), rng.randrange(max(1, n_passages - largest))]
        for _ in range(size)
    ]


def bodies(
    pool: list[list[int]], passages: list[str], per_request: int
) -> list[tuple[str, list[str]]]:
    return [(QUERIES[q], passages[start : start + per_request]) for q, start in pool]


def body(query: str, passages: list[str]) -> dict:
    return {
        "model": "reranktune",
        "query": {"text": query},
        "truncate": "END",
        "passages": [{"text": p} for p in passages],
    }


async def warm_up(url: str, requests: list[tuple[str, list[str]]], concurrency: int = 1) -> dict:
    """Every request of the pool once, untimed: what a server with a finite corpus has seen. One
    at a time: on 2 cores, 4 at once of 100 unseen passages ran past the 30 s request timeout."""
    statuses: dict[int, int] = {}
    queue = list(requests)
    t0 = time.monotonic()

    async def client(http: httpx.AsyncClient) -> None:
        while queue:
            response = await http.post(f"{url}/v1/ranking", json=body(*queue.pop()))
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    async with httpx.AsyncClient(timeout=600) as http:
        await asyncio.gather(*[client(http) for _ in range(concurrency)])
    return {
        "requests": len(requests),
        "pairs": sum(len(p) for _, p in requests),
        "seconds": round(time.monotonic() - t0, 2),
        "status": {str(k): v for k, v in sorted(statuses.items())},
        "server_errors": sum(v for k, v in statuses.items() if k >= 500),
    }


async def load(
    url: str,
    requests: list[tuple[str, list[str]]],
    concurrency: int,
    duration: float,
    seed: int,
    cold: bool = False,
) -> dict:
    """``concurrency`` clients sending requests drawn from ``requests`` for ``duration`` s.
    ``cold``: every passage sent is made unique (a numbered prefix), so the server has never
    seen it and its prior's embedding cache cannot help."""
    rng = random.Random(seed)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    pairs = 0

    def make(query: str, passages: list[str]) -> dict:
        if cold:
            passages = [f"[{next(FRESH)}] {p}" for p in passages]
        return body(query, passages)

    async def client(http: httpx.AsyncClient, until: float) -> None:
        nonlocal pairs
        while time.monotonic() < until:
            query, passages = rng.choice(requests)
            t0 = time.perf_counter()
            response = await http.post(f"{url}/v1/ranking", json=make(query, passages))
            latencies.append(time.perf_counter() - t0)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 200:  # a 503 past the deadline scored only some of them
                pairs += len(passages)

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=EARLIER_DEADLINE_S + 60, limits=limits) as http:
        await http.post(f"{url}/v1/ranking", json=make("warm up", requests[0][1]))
        t0 = time.monotonic()
        await asyncio.gather(*[client(http, t0 + duration) for _ in range(concurrency)])
        elapsed = time.monotonic() - t0
    return load_summary(latencies, pairs, elapsed, statuses)


async def big_queries(url: str, duration: float) -> dict:
    """A 5 MB query with one passage, under END then NONE, back to back for ``duration`` s: latency
    and statuses."""
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
    passages = corpus_passages()
    pool = bodies(request_pool(len(passages), 4, 256), passages, 4)

    async def beside() -> tuple[dict, dict]:
        return await asyncio.gather(
            load(server.url, pool, concurrency, duration, seed=1),
            big_queries(server.url, duration),
        )

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        folder, model_note = model_folder(model_dir, Path(tmp))
        with Server(folder, Path(tmp) / "serve.log") as server:
            alone = asyncio.run(load(server.url, pool, concurrency, duration, seed=1))
            with_big, big = asyncio.run(beside())
    report = {
        "model": model_note,
        "engine": "export",
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


LOADS = [(20, 1), (100, 1), (20, 16), (100, 16)]  # (passages per request, concurrent clients)
ST_CONFIGS = [
    ("st_torch", "torch", None),
    ("st_onnx_O3", "onnx", "O3"),
    ("st_onnx_int8", "onnx", "int8"),
]


def cell_name(per_request: int, concurrency: int) -> str:
    return f"{per_request}x{concurrency}"


def hf_folder(hf_dir: str | None, model_dir: str | None, folder: Path) -> Path | None:
    """The Hugging Face folder of the served model, for sentence-transformers: ``hf_dir``, else
    the export's ``source_model`` (absolute, or relative to the clone the export sits in), else a
    ``reranker`` folder beside the export; None when none holds weights."""
    from reranktune.reranker.config import RerankerConfig

    if hf_dir:
        return Path(hf_dir)
    export = Path(model_dir) if model_dir else REPO / "models" / "onnx"
    config = RerankerConfig.load(folder)
    source = config.onnx.source_model if config.onnx else None
    candidates = [Path(source), export.parent.parent / source, REPO / source] if source else []
    for candidate in [*candidates, export.parent / "reranker"]:
        weights = ("model.safetensors", "pytorch_model.bin")
        if (candidate / "config.json").exists() and any((candidate / w).exists() for w in weights):
            return candidate.resolve()
    return None


def serve_cells(
    server: Server,
    requests: dict[int, list[tuple[str, list[str]]]],
    loads: list[tuple[int, int]],
    duration: float,
    cold: bool,
) -> dict[str, dict]:
    return {
        cell_name(n, c): asyncio.run(load(server.url, requests[n], c, duration, seed=1, cold=cold))
        for n, c in loads
    }


def st_cells(
    python: str,
    hf_dir: Path,
    backend: str,
    variant: str | None,
    requests_file: Path,
    loads: list[tuple[int, int]],
    duration: float,
    max_length: int,
) -> dict:
    """bench/st_rank.py in ``python``: ``{"cells": {...}, "graph": ...}``, or ``{"skipped":
    why}``."""
    cmd = [
        python,
        str(REPO / "bench" / "st_rank.py"),
        str(hf_dir),
        "--backend",
        backend,
        "--requests",
        str(requests_file),
        "--max-length",
        str(max_length),
        "--cells",
        json.dumps([[n, c, duration] for n, c in loads]),
    ] + (["--variant", variant] if variant else [])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("PYTHONPATH", None)  # the ST venv must not import the project's venv packages
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if rows and "skipped" in rows[0]:
        return {"skipped": rows[0]["skipped"]}
    if done.returncode:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        return {"skipped": f"failed in {python}: {tail[0]}"}
    extra = {k: rows[0][k] for k in ("graph", "sentence_transformers")} if rows else {}
    cells = {}
    for row in rows:
        cell = cell_name(row.pop("passages"), row.pop("concurrency"))
        row.pop("graph", None)
        row.pop("sentence_transformers", None)
        cells[cell] = row
    return {**extra, "cells": cells}


def run(
    model_dir: str | None = None,
    hf_dir: str | None = None,
    duration: float = 5.0,
    loads: list[tuple[int, int]] = LOADS,
    pool_requests: int = 16,
    st_python: str | None = None,
    batching_on: bool = False,
    out: Path | None = RESULTS,
    st_configs: list[tuple[str, str, str | None]] = ST_CONFIGS,
    serve_args: tuple[str, ...] = (),
) -> dict:
    """Every configuration on every load; returns (and writes) the report."""
    from reranktune.reranker.config import RerankerConfig

    passages = corpus_passages()
    largest = max(n for n, _ in loads)
    pool = request_pool(len(passages), largest, pool_requests)
    requests = {n: bodies(pool, passages, n) for n, _ in loads}
    configurations: dict[str, dict] = {}
    warm_ups: dict[str, dict] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        work = Path(tmp)
        folder, model_note = model_folder(model_dir, work)
        config = RerankerConfig.load(folder)
        plain = without_prior(folder, work)
        servers: list[tuple[str, Path, tuple[str, ...], tuple[str, ...]]] = [
            ("reranktune", folder, serve_args, ("cold", "warm")),
            ("reranktune", folder, (*serve_args, f"--corpus={CORPUS}"), ("corpus",)),
        ]
        if plain is not None:
            servers.append(("reranktune_without_prior", plain, serve_args, ("cold", "warm")))
        else:
            notes.append("the model has no prior: only the cross-encoder is served")
        earlier = earlier_default(folder, work)
        if earlier is not None:
            slow = ("--batching", f"--request-timeout-s={EARLIER_DEADLINE_S}")
            servers.append(("earlier_default", earlier, (*serve_args, *slow), ("cold",)))
        else:
            notes.append("the export has no accepted fused fp32 graph: no earlier_default")
        if batching_on:
            servers.append(
                ("reranktune_batching_on", folder, (*serve_args, "--batching"), ("warm",))
            )
        for name, served, args, regimes in servers:
            with Server(served, work / f"{name}_{regimes[0]}.log", args) as server:
                # cold first: its unique passages would otherwise push the warm pool out of the
                # prior's embedding cache
                if "cold" in regimes:
                    configurations[f"{name}_cold"] = {
                        "regime": "cold",
                        "cells": serve_cells(server, requests, loads, duration, cold=True),
                    }
                if "corpus" in regimes:  # no warm-up: the corpus was embedded before ready
                    configurations[f"{name}_corpus"] = {
                        "regime": "corpus",
                        "cells": serve_cells(server, requests, loads, duration, cold=False),
                    }
                if "warm" in regimes:
                    warm_ups[name] = asyncio.run(warm_up(server.url, requests[largest]))
                    configurations[f"{name}_warm"] = {
                        "regime": "warm",
                        "cells": serve_cells(server, requests, loads, duration, cold=False),
                    }
        hf = hf_folder(hf_dir, model_dir, folder)
        requests_file = work / "requests.json"
        requests_file.write_text(
            json.dumps(
                {
                    "queries": QUERIES,
                    "passages": passages,
                    "pools": {str(n): pool for n, _ in loads},
                }
            ),
            encoding="utf-8",
        )
        for name, backend, variant in st_configs:
            if hf is None:
                entry = {"skipped": "no Hugging Face folder of the model (pass --hf-dir)"}
            elif backend == "onnx" and st_python is None:
                entry = {
                    "skipped": "--st-python not given: sentence-transformers' ONNX backend needs "
                    "optimum, which lives in a venv of its own (see bench/serve.py)"
                }
            else:
                entry = st_cells(
                    st_python or sys.executable,
                    hf,
                    backend,
                    variant,
                    requests_file,
                    loads,
                    duration,
                    config.max_length,
                )
            configurations[name] = entry
    ran = [n for n, c in configurations.items() if "cells" in c]
    baseline = next(
        n for n in ("st_torch", "reranktune_without_prior_warm", "reranktune_warm") if n in ran
    )
    st_onnx = [n for n in ran if n.startswith("st_onnx")]
    report = {
        "model": model_note,
        "hf_model": str(hf) if hf else None,
        "served_variant": config.onnx.default_variant if config.onnx else None,
        "prior": config.prior is not None,
        "max_length": config.max_length,
        "serve_args": list(serve_args),
        "duration_s": duration,
        "loads": [cell_name(n, c) for n, c in loads],
        "request_pool": {
            "requests": len(pool),
            "queries": len(QUERIES),
            "distinct_passages": len({s + i for _, s in pool for i in range(largest)}),
            "corpus_passages": len(passages),
        },
        "warm_up": warm_ups,
        "configurations": configurations,
        "baseline": baseline,
        "ratios_vs_baseline": ratios(configurations, baseline),
        "prior_cost": prior_cost(configurations),
        "over_earlier_default": over_earlier_default(configurations),
        "over_st_best": over_st_best(configurations),
        "st_onnx_best": best(configurations, st_onnx),
        "notes": notes,
        "machine": machine_and_load(),
    }
    if out is not None:
        write_json(out, report)
    return report


def ratios(configurations: dict, baseline: str) -> dict[str, dict[str, dict[str, float]]]:
    """Each configuration over ``baseline``, per load: pairs/s (higher is faster) and latency
    percentiles (lower is faster)."""
    base = configurations[baseline]["cells"]
    table: dict[str, dict[str, dict[str, float]]] = {}
    for name, entry in configurations.items():
        if "cells" not in entry:
            continue
        table[name] = {}
        for cell, r in entry["cells"].items():
            b = base.get(cell)
            if not b or not b["pairs_per_s"]:
                continue
            table[name][cell] = {
                "pairs_per_s": round(r["pairs_per_s"] / b["pairs_per_s"], 2),
                **{
                    q: round(r["latency_ms"][q] / b["latency_ms"][q], 2)
                    for q in ("p50", "p95", "p99")
                    if b["latency_ms"][q]
                },
            }
    return table


def prior_cost(configurations: dict) -> dict[str, dict[str, float]]:
    """pairs/s with the prior over pairs/s without it, per regime and load (1.0: free). Without
    the prior nothing is embedded, so ``corpus`` compares with its cold server."""
    cost: dict[str, dict[str, float]] = {}
    for regime in ("cold", "warm", "corpus"):
        with_prior = configurations.get(f"reranktune_{regime}", {}).get("cells", {})
        plain = "cold" if regime == "corpus" else regime
        without = configurations.get(f"reranktune_without_prior_{plain}", {}).get("cells", {})
        cost[regime] = {
            cell: round(with_prior[cell]["pairs_per_s"] / without[cell]["pairs_per_s"], 2)
            for cell in with_prior
            if cell in without and without[cell]["pairs_per_s"]
        }
    return {k: v for k, v in cost.items() if v}


def over(configurations: dict, reference: dict[str, dict]) -> dict[str, dict[str, float]]:
    """reranktune's pairs/s (with its prior, per regime) over ``reference``'s cells, per load."""
    table: dict[str, dict[str, float]] = {}
    for regime in ("cold", "warm", "corpus"):
        cells = configurations.get(f"reranktune_{regime}", {}).get("cells", {})
        table[regime] = {
            cell: round(r["pairs_per_s"] / reference[cell]["pairs_per_s"], 2)
            for cell, r in cells.items()
            if reference.get(cell, {}).get("pairs_per_s")
        }
    return {k: v for k, v in table.items() if v}


def over_earlier_default(configurations: dict) -> dict[str, dict[str, float]]:
    """reranktune over the earlier default, per regime and load."""
    return over(configurations, configurations.get("earlier_default_cold", {}).get("cells", {}))


def over_st_best(configurations: dict) -> dict[str, dict[str, float]]:
    """reranktune over sentence-transformers' fastest backend on each load (torch or ONNX)."""
    st = [n for n, c in configurations.items() if n.startswith("st_") and "cells" in c]
    fastest = best(configurations, st)
    return over(
        configurations,
        {cell: configurations[name]["cells"][cell] for cell, name in fastest.items()},
    )


def best(configurations: dict, names: list[str]) -> dict[str, str]:
    """Per load, the fastest (pairs/s) of ``names``."""
    cells = {c for n in names for c in configurations[n]["cells"]}
    return {
        cell: max(
            (n for n in names if cell in configurations[n]["cells"]),
            key=lambda n: configurations[n]["cells"][cell]["pairs_per_s"],
        )
        for cell in sorted(cells)
    }


def server_errors(report: dict) -> int:
    cells = [
        r for entry in report["configurations"].values() for r in entry.get("cells", {}).values()
    ]
    return sum(r["server_errors"] for r in [*cells, *report["warm_up"].values()])


def print_report(report: dict) -> None:
    m = report["machine"]
    print(
        f"model: {report['model']} (served variant {report['served_variant']}, prior "
        f"{'on' if report['prior'] else 'absent'}); sentence-transformers on "
        f"{report['hf_model']}\n{m['cpu']}, {m['cores']} cores, "
        f"load average {m['load_average_1m_at_end']}; {report['duration_s']} s per cell; "
        f"serve flags {report['serve_args'] or 'default'}; "
        f"pool of {report['request_pool']['requests']} requests, "
        f"{report['request_pool']['distinct_passages']} distinct passages"
    )
    for name, w in report["warm_up"].items():
        print(f"warm-up of {name}: {w['pairs']} pairs in {w['seconds']} s")
    base = report["baseline"]
    for cell in report["loads"]:
        n, c = cell.split("x")
        print(f"\n{n} passages/request, {c} client{'s' if c != '1' else ''}")
        print(
            f"  {'configuration':34s} {'pairs/s':>8s} {'p50':>8s} {'p95':>8s} {'p99':>8s} ms"
            f"  5xx  pairs/s vs {base}"
        )
        for name, entry in report["configurations"].items():
            r = entry.get("cells", {}).get(cell)
            if r is None:
                continue
            lat = r["latency_ms"]
            ratio = report["ratios_vs_baseline"].get(name, {}).get(cell, {}).get("pairs_per_s")
            print(
                f"  {name:34s} {r['pairs_per_s']:8.1f} {lat['p50']:8.1f} {lat['p95']:8.1f} "
                f"{lat['p99']:8.1f}    {r['server_errors']:3d}  {ratio}x"
            )
    for name, entry in report["configurations"].items():
        if "skipped" in entry:
            print(f"\n{name}: not run: {entry['skipped']}")
    for regime, cells in report["prior_cost"].items():
        shown = ", ".join(f"{cell} {v}x" for cell, v in cells.items())
        print(f"\nprior's cost, {regime} (pairs/s with / without): {shown}")
    for regime, cells in report["over_earlier_default"].items():
        shown = ", ".join(f"{cell} {v}x" for cell, v in cells.items())
        print(f"reranktune {regime} over the earlier default (pairs/s): {shown}")
    for regime, cells in report["over_st_best"].items():
        shown = ", ".join(f"{cell} {v}x" for cell, v in cells.items())
        print(f"reranktune {regime} over sentence-transformers' fastest (pairs/s): {shown}")
    for note in report["notes"]:
        print(f"note: {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model-dir", help="export folder to copy (default: models/onnx, else packaged MiniLM)"
    )
    parser.add_argument(
        "--hf-dir",
        help="Hugging Face folder of the same model for sentence-transformers (default: the "
        "export's source_model, else a reranker folder beside the export)",
    )
    parser.add_argument(
        "--duration", type=float, default=5.0, help="seconds of load per configuration and load"
    )
    parser.add_argument(
        "--passages", type=int, nargs="+", help="passages per request (default: 20 100)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        help="concurrent clients (default: 1 16; 8 with --big-queries)",
    )
    parser.add_argument(
        "--pool-requests",
        type=int,
        default=16,
        help="requests in the pool the clients draw from (and the warm-up sends once)",
    )
    parser.add_argument(
        "--st-python",
        help="interpreter with sentence-transformers and optimum for the CrossEncoder baselines "
        "(default: this one, torch backend only; the ONNX ones are skipped)",
    )
    parser.add_argument(
        "--batching-on",
        action="store_true",
        help="also serve with dynamic batching on (warm regime; off by default)",
    )
    parser.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        help="extra `reranktune serve` flag for every server, e.g. "
        "--serve-arg=--request-timeout-s=120 (default: none, the server's defaults)",
    )
    parser.add_argument(
        "--small-duration", type=float, default=8.0, help="--big-queries: seconds of each load"
    )
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
            args.model_dir,
            args.small_duration,
            args.concurrency[0] if args.concurrency else 8,
            args.out or BIG_QUERY_RESULTS,
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
    out = args.out or RESULTS
    passages = args.passages or sorted({n for n, _ in LOADS})
    concurrency = args.concurrency or sorted({c for _, c in LOADS})
    loads = [(n, c) for c in concurrency for n in passages]
    report = run(
        args.model_dir,
        args.hf_dir,
        args.duration,
        loads,
        args.pool_requests,
        args.st_python,
        args.batching_on,
        out,
        serve_args=tuple(args.serve_arg),
    )
    print_report(report)
    print(f"\nwrote {out}")
    errors = server_errors(report)
    if errors:
        print(f"{errors} server errors (5xx)", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
