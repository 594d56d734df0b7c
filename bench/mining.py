"""Mining throughput on a BEIR corpus, and the embedding cache on a margin-only rerun.

The BEIR corpus becomes SDG records (one document per passage, the passage as its only
chunk); each labelled query is attached to its first relevant passage. ``run_prep`` then
runs twice: cold, and again with only ``hard_neg_margin`` changed, which must reuse the
cached embeddings (a cache-hit log line, and the time ratio printed).

    python bench/mining.py /path/to/beir/nfcorpus
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

from reranktune.beir_data import load_beir  # noqa: E402
from reranktune.logs import setup_logging  # noqa: E402
from reranktune.params import PrepParams, RetrievalParams  # noqa: E402
from reranktune.prep.run import run_prep  # noqa: E402
from reranktune.retrieval.embedder import Embedder  # noqa: E402


def beir_as_sdg(beir_dir: Path, path: Path) -> tuple[int, int]:
    data = load_beir(beir_dir)
    pairs: dict[str, list[str]] = {}
    for qid, rel in data.qrels.items():
        positives = [d for d, score in rel.items() if score > 0 and d in data.corpus]
        if positives and qid in data.queries:
            pairs.setdefault(sorted(positives)[0], []).append(data.queries[qid])
    with open(path, "w", encoding="utf-8") as fh:
        for doc_id in data.corpus:
            questions = pairs.get(doc_id, [])
            fh.write(
                json.dumps(
                    {
                        "source_id": doc_id,
                        "file_name": [doc_id],
                        "chunks": [{"chunk_id": 1, "text": data.passage_text(doc_id)}],
                        "deduplicated_qa_pairs": [
                            {"question": q, "answer": "", "segment_ids": [1]} for q in questions
                        ],
                        "qa_evaluations": {
                            "evaluations": [{"overall": {"score": 10}} for _ in questions]
                        },
                    }
                )
                + "\n"
            )
    return len(data.corpus), sum(len(v) for v in pairs.values())


class CacheHits(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "cache hit" in record.getMessage():
            self.lines.append(record.getMessage())


def main() -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("beir_dir", type=Path)
    args = parser.parse_args()
    setup_logging()
    hits = CacheHits()
    logging.getLogger("reranktune.retrieval.embedder").addHandler(hits)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        import os

        os.environ["RERANKTUNE_CACHE_DIR"] = str(tmp / "cache")
        n_docs, n_queries = beir_as_sdg(args.beir_dir, tmp / "qa.jsonl")
        params = PrepParams(quality_threshold=0, train_ratio=0.9)

        embedder = Embedder(RetrievalParams().embedding)  # encoding alone, timed apart from mining
        texts = [
            json.loads(line)["chunks"][0]["text"]
            for line in open(tmp / "qa.jsonl", encoding="utf-8")
        ]
        start = time.perf_counter()
        embedder([embedder.passage_prefix + t for t in texts], progress=True)
        encode_s = time.perf_counter() - start

        start = time.perf_counter()
        cold = run_prep(params, tmp / "qa.jsonl", tmp / "prep", tmp / "report.json")
        cold_s = time.perf_counter() - start
        hits.lines.clear()
        start = time.perf_counter()
        warm = run_prep(
            params.model_copy(update={"hard_neg_margin": 0.9}),
            tmp / "qa.jsonl",
            tmp / "prep2",
            tmp / "report2.json",
        )
        warm_s = time.perf_counter() - start
    train_queries = cold["queries_per_split"]["train"]
    result = {
        "dataset": args.beir_dir.name,
        "corpus_chunks": n_docs,
        "train_queries_mined": train_queries,
        "chunks_encoded_per_s": round(n_docs / encode_s, 1),
        "prep_cold_s": round(cold_s, 1),
        "queries_mined_per_s_cold_with_encoding": round(train_queries / cold_s, 2),
        "queries_mined_per_s_cached_embeddings": round(train_queries / warm_s, 1),
        "prep_margin_change_s": round(warm_s, 1),
        "speedup_margin_change_vs_cold": round(cold_s / warm_s, 2),
        "cache_hit_lines_on_rerun": hits.lines,
        "guard_drops": {
            "margin_0.95": cold["train_mining"].get("candidates_dropped_by_guard", 0),
            "margin_0.90": warm["train_mining"].get("candidates_dropped_by_guard", 0),
        },
    }
    print(json.dumps(result, indent=2))
    save(f"mining_{args.beir_dir.name}", result)
    return result


if __name__ == "__main__":
    main()
