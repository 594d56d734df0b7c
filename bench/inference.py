"""Reranker inference on the CPU: PyTorch fp32 / bf16 against the ONNX variants, in one run.

    python bench/inference.py  # after `dvc repro` (needs models/reranker, data/prep/eval_beir)

Throughput: one batch of 64 real test pairs at exactly 256 tokens, timed round-robin over the
engines (so load from other processes hits them alike), median of --rounds batches each.
Quality: NDCG@10 after reranking every test query's dense top-k with each engine, at the
model's own max length, exactly as the eval stage and the export gate do.
Writes bench/results/inference.json and prints a table with ratios against torch fp32.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from reranktune.beir_data import load_beir
from reranktune.export.gate import RankingSet, ranking_set
from reranktune.export.onnx_export import export_onnx
from reranktune.export.variants import VARIANTS, build_variants
from reranktune.io import write_json
from reranktune.logs import setup_logging
from reranktune.params import load_section
from reranktune.reranker.model import Reranker
from reranktune.reranker.onnx import onnx_session
from reranktune.reranker.scoring import LogitBackend, SessionBackend, TorchBackend, format_pair
from reranktune.retrieval.first_stage import FirstStageSettings

sys.path.insert(
    0, str(Path(__file__).resolve().parent)
)  # the bench's helpers, also when a test loads this file
from common import machine  # noqa: E402

TARGET_RATIO, TARGET_DROP = 1.8, 0.01


def bench_batch(
    reranker: Reranker, beir_dir: Path, batch: int, length: int
) -> dict[str, np.ndarray]:
    """``batch`` real test pairs, each long enough to fill ``length`` tokens with text, not
    padding."""
    data = load_beir(beir_dir)
    doc_ids = sorted(data.corpus)
    texts = []
    for i, qid in enumerate(sorted(data.queries)[:batch]):
        passage = " ".join(data.passage_text(d) for d in doc_ids[i * 5 : i * 5 + 12])
        texts.append(format_pair(reranker.prompt_template, data.queries[qid], passage))
    encoded = reranker.tokenizer(
        texts, padding="max_length", truncation=True, max_length=length, return_tensors="np"
    )
    assert encoded["attention_mask"].all(), "a bench pair is shorter than the bench length"
    return {n: encoded[n] for n in reranker.input_names}


def onnx_backend(path: Path) -> SessionBackend:
    # the same cores torch gets
    return SessionBackend(onnx_session(path, "cpu", threads=torch.get_num_threads()))


def throughput(
    engines: dict[str, LogitBackend], feed: dict[str, np.ndarray], rounds: int
) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in engines}
    for _name, backend in engines.items():  # warm-up
        backend.logits(feed)
    for _ in range(rounds):
        for name, backend in engines.items():
            start = time.perf_counter()
            backend.logits(feed)
            times[name].append(time.perf_counter() - start)
    batch = len(feed["input_ids"])
    return {name: batch / statistics.median(ts) for name, ts in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/reranker"))
    parser.add_argument("--beir", type=Path, default=Path("data/prep/eval_beir"))
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--top-k",
        type=int,
        default=10,
        help="first-stage candidates (eval.first_stage) reranked per test query",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "inference.json",
    )
    args = parser.parse_args()
    setup_logging()
    load_at_start = list(
        os.getloadavg()
    )  # other processes on the machine: the noise in these numbers
    for path in (args.model, args.beir):
        if not path.exists():
            print(
                f"error: {path} not found; run `dvc repro` first (or pass --model/--beir)",
                file=sys.stderr,
            )
            return 2

    reranker = Reranker.from_pretrained(str(args.model), device="cpu")
    feed = bench_batch(reranker, args.beir, args.batch, args.length)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        export_onnx(
            reranker.model,
            reranker.tokenizer,
            folder / "model.onnx",
            17,
            {n: torch.from_numpy(a[:2]) for n, a in feed.items()},
        )
        build_variants(folder, ["fp32", "optimized", "int8"], reranker.model.config)
        engines: dict[str, LogitBackend] = {
            "torch fp32": TorchBackend(reranker.model, "cpu", bf16=False),
            "torch bf16 (autocast)": TorchBackend(reranker.model, "cpu", bf16=True),
            **{
                f"onnx {name}": onnx_backend(folder / VARIANTS[name].file)
                for name in ("fp32", "optimized", "int8")
            },
        }
        speed = throughput(engines, feed, args.rounds)
        reference = engines["torch fp32"].logits(feed)
        diffs = {
            name: float(np.abs(b.logits(feed) - reference).max()) for name, b in engines.items()
        }
        first_stage = FirstStageSettings.from_params(load_section("retrieval", args.params))
        ranking: RankingSet = ranking_set(args.beir, first_stage, 0, args.top_k)
        ndcg = {
            name: ranking.ndcg(reranker.with_backend(b), args.batch)[0]
            for name, b in engines.items()
        }

    base_speed, base_ndcg = speed["torch fp32"], ndcg["torch fp32"]
    results = {
        name: {
            "pairs_per_s": round(speed[name], 2),
            "ratio_vs_torch_fp32": round(speed[name] / base_speed, 3),
            "NDCG@10": round(ndcg[name], 5),
            "ndcg_drop_vs_torch_fp32": round(base_ndcg - ndcg[name], 5),
            "max_abs_diff_vs_torch_fp32": diffs[name],
        }
        for name in engines
    }
    onnx_ok = {
        n: r
        for n, r in results.items()
        if n.startswith("onnx") and r["ndcg_drop_vs_torch_fp32"] <= TARGET_DROP
    }
    best = max(onnx_ok, key=lambda n: onnx_ok[n]["ratio_vs_torch_fp32"]) if onnx_ok else None
    report = {
        "machine": {**machine(), "load_average_at_start": load_at_start},
        "setup": {
            "model": str(args.model),
            "test_set": str(args.beir),
            "batch": args.batch,
            "length": args.length,
            "rounds": args.rounds,
            "queries": len(ranking.data.queries),
            "top_k": args.top_k,
            "ndcg_max_length": reranker.max_length,
        },
        "results": results,
        "target": {
            "best_cpu_variant": best,
            "ratio": best and results[best]["ratio_vs_torch_fp32"],
            "wanted_ratio": TARGET_RATIO,
            "max_ndcg_drop": TARGET_DROP,
            "met": bool(best and results[best]["ratio_vs_torch_fp32"] >= TARGET_RATIO),
        },
    }
    write_json(args.output, report)
    print(
        f"\nbatch {args.batch} x {args.length} tokens, {report['machine']['cpu']}, "
        f"{report['machine']['torch_threads']} threads; "
        f"NDCG@10 over {len(ranking.data.queries)} test queries"
    )
    print(
        f"{'engine':<24}{'pairs/s':>10}{'vs torch fp32':>15}{'NDCG@10':>10}{'drop':>9}"
        f"{'max|diff|':>11}"
    )
    for name, r in results.items():
        print(
            f"{name:<24}{r['pairs_per_s']:>10.1f}{r['ratio_vs_torch_fp32']:>14.2f}x{r['NDCG@10']:>10.4f}"
            f"{r['ndcg_drop_vs_torch_fp32']:>9.4f}{r['max_abs_diff_vs_torch_fp32']:>11.2e}"
        )
    print(
        f"best CPU variant within {TARGET_DROP} NDCG@10: {best} "
        f"({report['target']['ratio']}x; target {TARGET_RATIO}x "
        f"{'met' if report['target']['met'] else 'NOT met'})"
    )
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
