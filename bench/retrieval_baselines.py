"""First-stage baselines on BEIR folders, and what reranking their top 100 costs on this CPU.

    python bench/retrieval_baselines.py /path/to/nfcorpus /path/to/nq-utd [--queries 20]

For each folder: nDCG/MAP/Recall/P/MRR of dense retrieval (all-MiniLM-L6-v2 with the
retrieval.embedding prefixes), BM25 and their RRF hybrid over every judged query; then the wall
time of reranking the dense top ``--top-k`` with the MiniLM cross-encoder (an untrained
head: the scores are meaningless, the cost is real) on the first ``--queries`` queries,
extrapolated linearly to all queries and labelled as such. Ratios are against the dense
first stage measured in the same run. Writes bench/results/retrieval_baselines.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "bench")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from common import machine  # noqa: E402


class Timer:
    """Wall and process CPU time; on a shared machine CPU time is the steadier of the two."""

    def __enter__(self) -> Timer:
        self.load = os.getloadavg()[0]
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu

    def result(self) -> dict:
        return {
            "wall_s": round(self.wall, 2),
            "cpu_s": round(self.cpu, 2),
            "load_avg_1min_at_start": self.load,
        }


def bench_folder(folder: Path, args: argparse.Namespace) -> dict:
    from reranktune.beir_data import load_beir
    from reranktune.ir_metrics import ranking_metrics
    from reranktune.params import EmbeddingParams, load_section
    from reranktune.reranker.model import Reranker
    from reranktune.retrieval.first_stage import bm25_retrieval, dense_retrieval, fuse_runs

    data = load_beir(folder, args.split)
    embedding: EmbeddingParams = load_section("retrieval", args.params).embedding
    timings = {}
    with Timer() as t:
        dense = dense_retrieval(
            data, embedding, args.top_k
        )  # embeds corpus + queries unless cached
    timings["dense"] = t.result()
    with Timer() as t:
        bm25 = bm25_retrieval(data, args.top_k)
    timings["bm25"] = t.result()
    hybrid = fuse_runs([dense, bm25], args.top_k)
    ks = [1, 5, 10, 100]
    retrieval = {
        name: ranking_metrics(data.qrels, run, ks)
        for name, run in (("dense", dense), ("bm25", bm25), ("hybrid", hybrid))
    }

    subset = dict(list(dense.items())[: args.queries])
    rerank_timings = {}
    for max_length in args.max_lengths:
        reranker = Reranker.from_pretrained("all-MiniLM-L6-v2", max_length=max_length, device="cpu")
        with Timer() as t:
            reranker.rerank(data, subset, args.batch_size)
        pairs = sum(len(d) for d in subset.values())
        per_query_wall = t.wall / len(subset)
        # CPU seconds / threads: what the work takes on 2 cores that nobody else uses
        per_query_cpu = t.cpu / args.threads / len(subset)
        rerank_timings[f"max_length_{max_length}"] = {
            "queries_measured": len(subset),
            "pairs_measured": pairs,
            **t.result(),
            "pairs_per_wall_s": round(pairs / t.wall, 1),
            "pairs_per_cpu_s_over_threads": round(pairs / (t.cpu / args.threads), 1),
            "all_queries_wall_s_extrapolated": round(per_query_wall * len(data.queries), 1),
            "all_queries_cpu_s_over_threads_extrapolated": round(
                per_query_cpu * len(data.queries), 1
            ),
            # the baseline: the dense first stage (corpus + queries embedded) in this run, CPU time
            "vs_dense_first_stage_cpu": round(
                t.cpu / len(subset) * len(data.queries) / timings["dense"]["cpu_s"], 2
            )
            if timings["dense"]["cpu_s"] > 1
            else None,
        }
    return {
        "folder": folder.name,
        "queries": len(data.queries),
        "passages": len(data.corpus),
        "top_k": args.top_k,
        "embedding": embedding.model_dump(),
        "retrieval": retrieval,
        "ndcg10_vs_dense": {
            name: round(m["NDCG"]["NDCG@10"] / retrieval["dense"]["NDCG"]["NDCG@10"], 3)
            for name, m in retrieval.items()
        },
        "first_stage_seconds": timings,
        "rerank_top_k": rerank_timings,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "folders", nargs="+", type=Path, help="BEIR folders (corpus.jsonl, queries.jsonl, qrels/)"
    )
    parser.add_argument("--split", default="test")
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument(
        "--queries", type=int, default=5, help="queries whose top-k are reranked for timing"
    )
    parser.add_argument("--max-lengths", type=int, nargs="+", default=[512, 128])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--params", default=str(REPO / "params.yaml"), help="retrieval.embedding comes from here"
    )
    parser.add_argument(
        "--cache-dir", type=Path, help="keep embeddings here (default: a fresh temp dir)"
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results" / "retrieval_baselines.json"
    )
    args = parser.parse_args()

    import torch

    from reranktune.io import write_json

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        # a fresh cache times real embedding; --cache-dir reuses embeddings across runs
        os.environ["RERANKTUNE_CACHE_DIR"] = str(args.cache_dir or tmp)
        datasets = {}
        for folder in args.folders:
            result = bench_folder(folder, args)
            datasets[folder.name] = result
            print(f"\n== {folder.name}: {result['queries']} queries, {result['passages']} passages")
            for name, m in result["retrieval"].items():
                print(
                    f"{name:>7}: nDCG@10 {m['NDCG']['NDCG@10']:.4f} "
                    f"({result['ndcg10_vs_dense'][name]:.2f}x dense)  "
                    f"Recall@100 {m['Recall']['Recall@100']:.4f}  MRR@10 {m['MRR']['MRR@10']:.4f}"
                )
            print(f"first stage: {result['first_stage_seconds']}")
            for name, t in result["rerank_top_k"].items():
                print(
                    f"rerank top {args.top_k} ({name}), "
                    f"measured on {t['queries_measured']} queries: "
                    f"{t['pairs_per_wall_s']} pairs/s wall, "
                    f"{t['pairs_per_cpu_s_over_threads']} pairs/s from CPU time "
                    f"-> all {result['queries']} queries extrapolated: "
                    f"{t['all_queries_wall_s_extrapolated']} s wall, "
                    f"{t['all_queries_cpu_s_over_threads_extrapolated']} s "
                    f"on {args.threads} idle cores "
                    f"({t['vs_dense_first_stage_cpu']}x the dense first stage's CPU time)"
                )
    write_json(args.out, {"machine": machine(), "datasets": datasets})
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
