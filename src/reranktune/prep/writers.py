"""Write prep's outputs: the reference trainer's training file, its parquet corpus, a BEIR folder."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from reranktune.io import atomic_path, write_json, write_jsonl, write_text
from reranktune.prep.records import Query


def unroll(query: Query, negatives: list[tuple[str, float]], pos_scores: dict[str, float]) -> list[dict]:
    """A query with k positives becomes k records ``<qid>_0..<qid>_{k-1}``, same negatives."""
    neg_doc = [{"id": cid, "score": round(score, 6)} for cid, score in negatives]
    return [
        {
            "question_id": f"{query.qid}_{i}",
            "question": query.text,
            "corpus_id": "train",
            "pos_doc": [{"id": pid, "score": round(pos_scores.get(pid, 1.0), 6)}],
            "neg_doc": neg_doc,
        }
        for i, pid in enumerate(query.positives)
    ]


def write_training_file(path: Path, records: list[dict]) -> None:
    write_json(path, {"corpus": {"path": "./corpus/"}, "data": records}, indent=None)


def write_corpus_parquet(path: Path, corpus: dict[str, str]) -> None:
    frame = pd.DataFrame({"id": list(corpus), "text": list(corpus.values())})
    with atomic_path(path, suffix=".parquet") as tmp:
        frame.to_parquet(tmp, index=False)


def write_beir(folder: Path, corpus: dict[str, str], queries: list[Query]) -> None:
    """``corpus.jsonl``, ``queries.jsonl`` and ``qrels/test.tsv`` as beir's loader reads them."""
    write_jsonl(folder / "corpus.jsonl", ({"_id": cid, "title": "", "text": text} for cid, text in corpus.items()))
    write_jsonl(
        folder / "queries.jsonl",
        ({"_id": q.qid, "text": q.text, "metadata": q.metadata} for q in queries),
    )
    lines = ["query-id\tcorpus-id\tscore"]
    lines += [f"{q.qid}\t{pid}\t1" for q in queries for pid in q.positives]
    write_text(folder / "qrels" / "test.tsv", "\n".join(lines) + "\n")
