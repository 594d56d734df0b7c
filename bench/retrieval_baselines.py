"""First-stage baselines on BEIR folders, and what reranking their top 100 costs on this CPU.

    python bench/retrieval_baselines.py /path/to/nfcorpus /path/to/nq-utd [--queries 20]

For each folder: nDCG/MAP/Recall/P/MRR of dense retrieval (all-MiniLM-L6-v2 with the
prep.embedding prefixes), BM25 and their RRF hybrid over every judged query; then the wall
time of reranking the dense top ``--top-k`` with the MiniLM cross-encoder (an untrained
head: the scores are meaningless, the cost is real) on the first ``--queries`` queries,
extrapolated linearly to all queries and labelled as such. Ratios are against the dense
first stage measured in the same run. Writes bench/results/retrieval_baselines.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def machine(threads: int) -> dict:
    import torch

    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": threads, "python": platform.python_version(),
            "torch": torch.__version__, "platform": platform.platform()}


def bench_folder(folder: Path, args: argparse.Namespace) -> dict:
    from reranktune.evaluation.beir_data import load_beir
    from reranktune.evaluation.first_stage import bm25_retrieval, dense_retrieval, reciprocal_rank_fusion
    from reranktune.evaluation.metrics import ranking_metrics
    from reranktune.evaluation.run import rerank
    from reranktune.params import EmbeddingParams, load_section
    from reranktune.reranker import Reranker

    data = load_beir(folder, args.split)
    embedding: EmbeddingParams = load_section("prep", args.params).embedding
    timings = {}
    start = time.perf_counter()
    dense = dense_retrieval(data, embedding, args.top_k)      # embeds corpus + queries (cache is empty)
    timings["dense_s"] = time.perf_counter() - start
    start = time.perf_counter()
    bm25 = bm25_retrieval(data, args.top_k)
    timings["bm25_s"] = time.perf_counter() - start
    hybrid = reciprocal_rank_fusion([dense, bm25], args.top_k)
    ks = [1, 5, 10, 100]
    retrieval = {name: ranking_metrics(data.qrels, run, ks) for name, run in
                 (("dense", dense), ("bm25", bm25), ("hybrid", hybrid))}

    subset = dict(list(dense.items())[: args.queries])
    rerank_timings = {}
    for max_length in args.max_lengths:
        reranker = Reranker.from_pretrained("all-MiniLM-L6-v2", max_length=max_length, device="cpu")
        start = time.perf_counter()
        rerank(data, subset, reranker, args.batch_size)
        seconds = time.perf_counter() - start
        pairs = sum(len(d) for d in subset.values())
        per_query = seconds / len(subset)
        rerank_timings[f"max_length_{max_length}"] = {
            "queries_measured": len(subset),
            "pairs_measured": pairs,
            "seconds_measured": round(seconds, 2),
            "pairs_per_s": round(pairs / seconds, 1),
            "seconds_per_query": round(per_query, 3),
            "all_queries_seconds_extrapolated": round(per_query * len(data.queries), 1),
            "vs_dense_first_stage_all_queries": round(per_query * len(data.queries) / timings["dense_s"], 2),
        }
    return {
        "folder": folder.name,
        "queries": len(data.queries),
        "passages": len(data.corpus),
        "top_k": args.top_k,
        "embedding": embedding.model_dump(),
        "retrieval": retrieval,
        "ndcg10_vs_dense": {name: round(m["NDCG"]["NDCG@10"] / retrieval["dense"]["NDCG"]["NDCG@10"], 3)
                            for name, m in retrieval.items()},
        "first_stage_seconds": {k: round(v, 2) for k, v in timings.items()},
        "rerank_top_k": rerank_timings,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="BEIR folders (corpus.jsonl, queries.jsonl, qrels/)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument("--queries", type=int, default=5, help="queries whose top-k are reranked for timing")
    parser.add_argument("--max-lengths", type=int, nargs="+", default=[512, 128])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--params", default=str(REPO / "params.yaml"), help="prep.embedding comes from here")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "retrieval_baselines.json")
    args = parser.parse_args()

    import torch

    from reranktune.io import write_json

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["RERANKTUNE_CACHE_DIR"] = cache       # time real embedding, not the cache
        results = {"machine": machine(args.threads), "datasets": {}}
        for folder in args.folders:
            result = bench_folder(folder, args)
            results["datasets"][folder.name] = result
            print(f"\n== {folder.name}: {result['queries']} queries, {result['passages']} passages")
            for name, m in result["retrieval"].items():
                print(f"{name:>7}: nDCG@10 {m['NDCG']['NDCG@10']:.4f} ({result['ndcg10_vs_dense'][name]:.2f}x dense)  "
                      f"Recall@100 {m['Recall']['Recall@100']:.4f}  MRR@10 {m['MRR']['MRR@10']:.4f}")
            print(f"first stage: {result['first_stage_seconds']}")
            for name, t in result["rerank_top_k"].items():
                print(f"rerank top {args.top_k} ({name}): {t['pairs_per_s']} pairs/s, {t['seconds_per_query']} s/query "
                      f"on {t['queries_measured']} queries -> {t['all_queries_seconds_extrapolated']} s for all "
                      f"{result['queries']} (extrapolated; {t['vs_dense_first_stage_all_queries']}x the dense first stage)")
    write_json(args.out, results)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
