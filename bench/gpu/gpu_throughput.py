"""Training and inference pairs/s of the project's own code paths against a bare PyTorch loop,
on one device.

    python bench/gpu/gpu_throughput.py [--cpu] [--tokenizer DIR] [--models minilm nemotron-1b]
        [--out FILE]

Models, random weights built from configs (nothing is downloaded):
- ``minilm``: all-MiniLM-L6-v2's shape (BERT, 6 layers, hidden 384), the sample recipe's reranker;
- ``nemotron-1b``: nvidia/llama-nemotron-rerank-1b-v2's shape (Llama 3.2 1B: hidden 2048, 16 layers,
  32 heads, 8 KV heads, intermediate 8192, vocab 128256; 1.24B parameters) as a
  ``LlamaForSequenceClassification`` made bidirectional like the real model (``config.is_causal``
  and every attention's ``is_causal`` off: no causal mask). It pools the last token where the real
  model mean-pools, which costs the same to a rounding. Both read all-MiniLM-L6-v2's tokenizer, so
  the Llama shape tokenizes with WordPiece rather than its own BPE.

At max length 256 and 512, in bf16 autocast over fp32 weights (as finetune, eval and serve run), on
query groups whose 5 pairs each fill the max length, one row per path:
- train ``project``: finetune's ``make_trainer`` (ListwiseTrainer, ListwiseCollator) with the GPU
  presets' ``pretokenize`` and ``group_by_length``; ``setup_s``: its one-off pre-tokenization and
  set-up;
- train ``bare``: forward, listwise loss, backward, grad clip, fused AdamW, over the same token
  tensors already on the device;
- infer ``project``: ``Reranker.score`` on the pairs' text; ``serve``: the ranking API's engine
  (``Engine.encode`` per request on worker threads, ``DynamicBatcher`` -> ``Engine.score``) with
  requests of 100 passages; ``bare``: forward passes over the same tensors, already on the device.

Each row: pairs/s after warm-up steps, ``ratio`` to the bare loop, model FLOP/s and MFU, peak
memory. FLOPs per pair of L tokens, N = parameters outside the embeddings, n layers of width d:
training 6·N·L + 12·n·L²·d, inference 2·N·L + 4·n·L²·d (the second terms: attention's score and
value products, full bidirectional attention). MFU = FLOP/s / the device's dense bf16 peak
(``PEAK_TFLOPS`` by device name, or ``--peak-tflops``). A batch that runs out of memory is retried
at half the size.
``--cpu``: tiny models, short lengths, a few steps: it runs every code path (CI does); its figures
mean nothing (MFU against a nominal 1 TFLOP/s).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    LlamaConfig,
    LlamaForSequenceClassification,
    TrainerCallback,
)

from reranktune.documents import read_documents
from reranktune.finetune.data import ListwiseCollator, ListwiseDataset
from reranktune.finetune.run import make_trainer
from reranktune.finetune.trainer import listwise_loss
from reranktune.models import resolve_model
from reranktune.params import DEFAULT_PROMPT_TEMPLATE, FinetuneParams
from reranktune.reranker.config import RerankerConfig
from reranktune.reranker.model import Reranker, load_tokenizer, model_input_names
from reranktune.reranker.scoring import PairEncoder, TorchBackend
from reranktune.serve.batching import DynamicBatcher
from reranktune.serve.engines import Engine

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))  # the bench's helpers, also when a test loads this file
from common import machine  # noqa: E402

N_PASSAGES = 5
REQUEST_PASSAGES = 100  # a serve request: one query and its first stage's top 100
# dense bf16 tensor-core peaks (datasheets, no sparsity), by a name nvidia-smi reports;
# most specific first
PEAK_TFLOPS = {
    "H200": 989.0,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
}
CPU_NOMINAL_TFLOPS = 1.0


@dataclass(frozen=True)
class Shape:
    """A model shape and the batches that fill an H100/H200 with it at ``length``; longer inputs,
    smaller batches."""

    config: object
    length: int
    train_queries: int  # query groups per training step (x 5 pairs) at ``length``
    infer_pairs: int  # pairs per inference batch at ``length``
    train_steps: tuple[int, int]  # (warm-up, timed) optimiser steps
    infer_batches: int  # timed inference batches

    def batches(self, length: int) -> tuple[int, int]:
        """(train queries, infer pairs) at ``length``: the same tokens per batch."""
        scale = self.length / length
        return max(1, int(self.train_queries * scale)), max(1, int(self.infer_pairs * scale))


def shapes(cpu: bool) -> dict[str, Shape]:
    if cpu:
        tiny = dict(length=32, train_queries=2, infer_pairs=8, train_steps=(1, 2), infer_batches=2)
        return {
            "minilm": Shape(
                BertConfig(
                    hidden_size=32,
                    num_hidden_layers=2,
                    num_attention_heads=2,
                    intermediate_size=64,
                    num_labels=1,
                ),
                **tiny,
            ),
            "nemotron-1b": Shape(
                LlamaConfig(
                    vocab_size=30522,
                    hidden_size=64,
                    intermediate_size=128,
                    num_hidden_layers=2,
                    num_attention_heads=4,
                    num_key_value_heads=2,
                    num_labels=1,
                    pad_token_id=0,
                ),
                **tiny,
            ),
        }
    return {
        "minilm": Shape(
            BertConfig(
                vocab_size=30522,
                hidden_size=384,
                num_hidden_layers=6,
                num_attention_heads=12,
                intermediate_size=1536,
                max_position_embeddings=512,
                num_labels=1,
            ),
            length=256,
            train_queries=64,
            infer_pairs=1024,
            train_steps=(3, 20),
            infer_batches=16,
        ),
        "nemotron-1b": Shape(
            LlamaConfig(
                vocab_size=128256,
                hidden_size=2048,
                intermediate_size=8192,
                num_hidden_layers=16,
                num_attention_heads=32,
                num_key_value_heads=8,
                head_dim=64,
                max_position_embeddings=8192,
                num_labels=1,
                pad_token_id=0,
            ),
            length=256,
            train_queries=16,
            infer_pairs=256,
            train_steps=(2, 6),
            infer_batches=6,
        ),
    }


def build_model(config, device: str):
    """Random weights, built on the device (a 1.2B model initialises in seconds there, minutes on
    a CPU)."""
    torch.manual_seed(0)
    with torch.device(device):
        if isinstance(config, LlamaConfig):
            return bidirectional(LlamaForSequenceClassification(config))
        return BertForSequenceClassification(config)


def bidirectional(model):
    """No causal mask, as in llama-nemotron-rerank: transformers builds a bidirectional one
    instead."""
    model.config.is_causal = False
    for layer in model.model.layers:
        layer.self_attn.is_causal = False
    return model


def non_embedding_parameters(model) -> int:
    return sum(
        p.numel()
        for m in model.modules()
        if not isinstance(m, torch.nn.Embedding)
        for p in m.parameters(recurse=False)
    )


def flops_per_pair(model, length: int, train: bool) -> float:
    config = model.config
    dense = 2 * non_embedding_parameters(model) * length
    attention = 4 * config.num_hidden_layers * length**2 * config.hidden_size
    return 3 * (dense + attention) if train else dense + attention


def peak(device: str, override: float | None) -> tuple[float, str]:
    if override:
        return override, "--peak-tflops"
    if device == "cpu":
        return CPU_NOMINAL_TFLOPS, "nominal (CPU run: MFU is meaningless)"
    name = torch.cuda.get_device_name()
    key = next((k for k in PEAK_TFLOPS if k in name), None)
    return (
        (PEAK_TFLOPS[key], f"{key} dense bf16 datasheet") if key else (0.0, f"unknown for {name}")
    )


@functools.cache
def corpus_chunks() -> list[str]:
    docs, _ = read_documents(REPO / "data" / "questions" / "nq-utd" / "corpus.jsonl", [], 50, 5)
    return [c for d in docs for c in d.chunks]


def long_groups(n: int, length: int) -> list[tuple[str, list[str]]]:
    """``n`` (query, 5 passages) groups of the bundled corpus's text, each pair a little over
    ``length`` tokens.

    A passage is a run of chunks cut at 5.5 characters per token wanted: this corpus has about
    4.5 per WordPiece token, so every pair fills ``length`` (at 5 one in twenty falls short),
    and the tokenizer, which reads all of it before the cut, reads about 20% more than it keeps.
    """
    chunks = corpus_chunks()
    rng = np.random.default_rng(0)
    chars = int(5.5 * length)

    def passage(start: int) -> str:
        text = ""
        while len(text) <= chars:
            text += chunks[start % len(chunks)] + " "
            start += 1
        return text[: text.rfind(" ", 0, chars)]

    groups = []
    for _ in range(n):
        passages = [passage(int(s)) for s in rng.integers(len(chunks), size=N_PASSAGES)]
        groups.append((" ".join(passages[0].split()[:6]), passages))
    return groups


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def free(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def measured(device: str, run, *args) -> dict:
    """``run(*args)``'s figures and the device memory it peaked at."""
    free(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    figures = run(*args)
    figures["peak_memory_gib"] = (
        round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None
    )
    return figures


class StepTimer(TrainerCallback):
    """Times the optimiser steps after ``warmup``, with the device drained at both ends."""

    def __init__(self, warmup: int, device: str) -> None:
        self.warmup, self.device = warmup, device
        self.start = self.end = 0.0

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            sync(self.device)
            self.start = time.perf_counter()
        if state.global_step == state.max_steps:
            sync(self.device)
            self.end = time.perf_counter()


def write_training_file(groups, folder: Path) -> Path:
    corpus, data = {}, []
    for g, (query, passages) in enumerate(groups):
        ids = [f"g{g}_{k}" for k in range(len(passages))]
        corpus.update(zip(ids, passages))
        data.append(
            {
                "question_id": f"q{g}",
                "question": query,
                "corpus_id": "bench",
                "pos_doc": [{"id": ids[0]}],
                "neg_doc": [{"id": i} for i in ids[1:]],
            }
        )
    (folder / "corpus").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": list(corpus), "text": list(corpus.values())}).to_parquet(
        folder / "corpus" / "train.parquet"
    )
    (folder / "train.json").write_text(json.dumps({"corpus": {"path": "./corpus/"}, "data": data}))
    return folder / "train.json"


def train_project(
    model,
    tokenizer,
    train_file: Path,
    queries: int,
    length: int,
    steps: tuple[int, int],
    device: str,
    work: Path,
) -> dict:
    params = FinetuneParams(
        rerank_max_length=length,
        global_batch_size=queries,
        per_device_batch_size=queries,
        learning_rate=1e-5,
        lr_warmup_steps=0,
        num_epochs=1,
        save_steps=10**9,
        logging_steps=10**9,
        mixed_precision="bf16" if device == "cuda" else "fp32",
        pretokenize=True,
        group_by_length=True,
    )
    data = ListwiseDataset(train_file, N_PASSAGES)
    timer = StepTimer(steps[0], device)
    start = time.perf_counter()
    trainer = make_trainer(
        params, model, tokenizer, data, None, work / "checkpoints", queries, 1, [timer]
    )
    setup_s = time.perf_counter() - start  # pre-tokenization and the Trainer's set-up, once per run
    try:
        trainer.train()
    finally:
        trainer.accelerator.free_memory()
        model.zero_grad(set_to_none=True)
    return {
        "pairs_per_s": queries * N_PASSAGES * steps[1] / (timer.end - timer.start),
        "setup_s": round(setup_s, 2),
    }


def train_bare(model, batches: list[dict], steps: tuple[int, int], device: str) -> dict:
    model.to(device).train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=1e-5, fused=True
    )  # as the Trainer's adamw_torch_fused
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")
    for step in range(sum(steps)):
        if step == steps[0]:
            sync(device)
            start = time.perf_counter()
        with autocast:
            logits = model(**batches[step % len(batches)]).logits[:, 0]
        listwise_loss(logits, N_PASSAGES, 1.0).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync(device)
    seconds = time.perf_counter() - start
    del optimizer
    model.zero_grad(set_to_none=True)
    return {"pairs_per_s": len(batches[0]["input_ids"]) * steps[1] / seconds}


@torch.inference_mode()
def infer_bare(model, batches: list[dict], device: str) -> dict:
    model.eval()
    with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
        model(**batches[0])  # warm-up
        sync(device)
        start = time.perf_counter()
        logits = [model(**batch).logits[:, 0].float() for batch in batches]
        first = logits[0].cpu().numpy()
    seconds = time.perf_counter() - start
    return {
        "pairs_per_s": sum(len(b["input_ids"]) for b in batches) / seconds,
        "first_batch": first,
    }


def infer_project(
    reranker: Reranker, queries: list[str], passages: list[str], batch: int, device: str
) -> dict:
    reranker.score(queries[:batch], passages[:batch], batch_size=batch)  # warm-up
    sync(device)
    start = time.perf_counter()
    scores = reranker.score(queries, passages, batch_size=batch)
    return {"pairs_per_s": len(queries) / (time.perf_counter() - start), "scores": np.array(scores)}


async def _serve(engine: Engine, requests: list[tuple[str, list[str]]], max_batch: int) -> float:
    """Requests through serve's engine and batcher, as many in flight as fill two batches."""
    batcher = DynamicBatcher(engine.score, max_batch, 0.005, lambda pair: len(pair["input_ids"]))
    await batcher.start()
    in_flight = asyncio.Semaphore(2 * max_batch // REQUEST_PASSAGES + 1)

    async def one(query: str, passages: list[str]) -> list[float]:
        async with in_flight:
            return await batcher.submit(
                await asyncio.to_thread(engine.encode, query, passages, True)
            )

    try:
        await one(*requests[0])  # warm-up
        start = time.perf_counter()
        await asyncio.gather(*(one(q, p) for q, p in requests))
        return time.perf_counter() - start
    finally:
        await batcher.stop()


def infer_serve(reranker: Reranker, queries: list[str], passages: list[str], batch: int) -> dict:
    requests = [
        (queries[i], passages[i : i + REQUEST_PASSAGES])
        for i in range(0, len(queries), REQUEST_PASSAGES)
    ]
    seconds = asyncio.run(_serve(Engine(reranker, "torch", batch), requests, batch))
    return {"pairs_per_s": len(queries) / seconds}


def halving(run, size: int):
    """``(run(size), size)``, retried at half the size while the device runs out of memory."""
    while True:
        try:
            return run(size), size
        except torch.OutOfMemoryError:
            if size == 1:
                raise
        print(
            f"out of memory at batch {size}; retrying at {size // 2}", flush=True
        )  # the failed run is freed
        size //= 2


def model_rows(
    name: str,
    shape: Shape,
    lengths: list[int],
    tokenizer,
    device: str,
    peak_tflops: float,
    work: Path,
) -> list[dict]:
    model = build_model(shape.config, device)
    total = sum(p.numel() for p in model.parameters())
    rows: list[dict] = [
        {
            "model": name,
            "parameters_millions": round(total / 1e6, 1),
            "non_embedding_parameters_millions": round(non_embedding_parameters(model) / 1e6, 1),
        }
    ]

    def row(
        task: str, path: str, length: int, batch: int, figures: dict, bare: dict | None = None
    ) -> None:
        flops = flops_per_pair(model, length, task == "train") * figures["pairs_per_s"]
        entry = {
            "model": name,
            "max_length": length,
            "task": task,
            "path": path,
            "batch_queries" if task == "train" else "batch_pairs": batch,
            "pairs_per_s": round(figures["pairs_per_s"], 1),
            "ratio": round(figures["pairs_per_s"] / bare["pairs_per_s"], 3) if bare else 1.0,
            "tflops": round(flops / 1e12, 2),
            "mfu": round(flops / (peak_tflops * 1e12), 4) if peak_tflops else None,
            **{
                k: v
                for k, v in figures.items()
                if k in ("peak_memory_gib", "setup_s", "max_abs_diff_vs_bare")
            },
        }
        rows.append(entry)
        print(json.dumps(entry), flush=True)

    for length in lengths:
        encoder = PairEncoder(
            tokenizer, DEFAULT_PROMPT_TEMPLATE, length, model_input_names(model, tokenizer)
        )
        warmup, timed = shape.train_steps
        train_queries, infer_pairs = shape.batches(length)

        def train(
            queries: int, warmup=warmup, timed=timed, length=length, encoder=encoder
        ) -> tuple[dict, dict]:
            groups = long_groups(queries * (warmup + timed), length)
            folder = work / f"{name}-{length}-{queries}"
            project = measured(
                device,
                train_project,
                model,
                tokenizer,
                write_training_file(groups, folder),
                queries,
                length,
                shape.train_steps,
                device,
                folder,
            )
            collate = ListwiseCollator(encoder)
            features = [{"query": q, "passages": p} for q, p in groups[: queries * 2]]
            batches = [
                {k: v.to(device) for k, v in collate(features[i : i + queries]).items()}
                for i in range(0, len(features), queries)
            ]
            return project, measured(device, train_bare, model, batches, shape.train_steps, device)

        (project, bare), queries = halving(train, train_queries)
        row("train", "bare", length, queries, bare)
        row("train", "project", length, queries, project, bare)

        def infer(batch: int, length=length, encoder=encoder) -> tuple[dict, dict, dict]:
            n = batch * shape.infer_batches
            groups = long_groups(n // N_PASSAGES + 1, length)
            queries = [q for q, ps in groups for _ in ps][:n]
            passages = [p for _, ps in groups for p in ps][:n]
            batches = [
                {
                    k: torch.from_numpy(v).to(device)
                    for k, v in encoder.pad(
                        encoder.encode(queries[i : i + batch], passages[i : i + batch])
                    ).items()
                }
                for i in range(0, n, batch)
            ]
            bare = measured(device, infer_bare, model, batches, device)
            reranker = Reranker(
                encoder,
                TorchBackend(model, device, bf16=device == "cuda"),
                RerankerConfig(prompt_template=DEFAULT_PROMPT_TEMPLATE, max_length=length),
            )
            project = measured(device, infer_project, reranker, queries, passages, batch, device)
            diff = np.abs(project["scores"][:batch] - bare["first_batch"]).max()
            project["max_abs_diff_vs_bare"] = round(float(diff), 4)
            return bare, project, measured(device, infer_serve, reranker, queries, passages, batch)

        (bare, project, serve), batch = halving(infer, infer_pairs)
        row("infer", "bare", length, batch, bare)
        row("infer", "project", length, batch, project, bare)
        row("infer", "serve", length, batch, serve, bare)
    model = None  # its memory goes back before the next model loads
    free(device)
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        f"{'model':12} {'L':>4} {'task':5} {'path':7} {'batch':>5} {'pairs/s':>9} {'ratio':>6} "
        f"{'TFLOP/s':>8} {'MFU':>6} {'GiB':>6}"
    ]
    for r in rows:
        if "task" not in r:
            continue
        batch = r.get("batch_queries", r.get("batch_pairs"))
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "-"
        memory = r["peak_memory_gib"] if r["peak_memory_gib"] is not None else "-"
        lines.append(
            f"{r['model']:12} {r['max_length']:>4} {r['task']:5} {r['path']:7} {batch:>5} "
            f"{r['pairs_per_s']:>9.1f} {r['ratio']:>6.3f} {r['tflops']:>8.2f} {mfu:>6} {memory:>6}"
        )
    return "\n".join(lines)


def main() -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--cpu", action="store_true", help="tiny models and lengths on the CPU (CI)"
    )
    parser.add_argument(
        "--tokenizer", default=None, help="all-MiniLM-L6-v2 folder (default: the packaged copy)"
    )
    parser.add_argument(
        "--models", nargs="+", choices=["minilm", "nemotron-1b"], default=["minilm", "nemotron-1b"]
    )
    parser.add_argument(
        "--lengths", nargs="+", type=int, help="max lengths (default: 256 512; --cpu: 32 64)"
    )
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak of this device, for MFU")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    device = "cpu" if args.cpu else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device visible to torch; use --cpu")
    if args.cpu:
        torch.set_num_threads(
            1
        )  # tiny models: more threads only wait on each other, on a busy machine badly
    lengths = args.lengths or ([32, 64] if args.cpu else [256, 512])
    peak_tflops, peak_source = peak(device, args.peak_tflops)
    tokenizer = load_tokenizer(args.tokenizer or resolve_model("all-MiniLM-L6-v2"))
    here = machine()
    result = {
        "device": here["gpu"] if device == "cuda" else "cpu",
        "torch": here["torch"],
        "transformers": here["transformers"],
        "precision": "bf16 autocast, fp32 weights" if device == "cuda" else "fp32",
        "peak_tflops": peak_tflops,
        "peak_source": peak_source,
        "flops_per_pair": {
            "train": "6*N*L + 12*layers*L^2*hidden",
            "infer": "2*N*L + 4*layers*L^2*hidden",
            "N": "parameters outside the embeddings",
        },
        "rows": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            result["rows"] += model_rows(
                name, shapes(args.cpu)[name], lengths, tokenizer, device, peak_tflops, Path(tmp)
            )
    print(table(result["rows"]))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
