"""Prep's records for the training file (training_file.py writes it), and the BEIR test folder."""

from __future__ import annotations

from pathlib import Path

from reranktune.io import write_jsonl, write_text
from reranktune.prep.records import Query
from reranktune.training_file import record


def unroll(
    query: Query, negatives: list[tuple[str, float]], pos_scores: dict[str, float]
) -> list[dict]:
    """A query with k positives becomes k records ``<qid>_0..<qid>_{k-1}``, same negatives."""
    return [
        record(f"{query.qid}_{i}", query.text, (pid, pos_scores.get(pid, 1.0)), negatives)
        for i, pid in enumerate(query.positives)
    ]


def write_beir(folder: Path, corpus: dict[str, str], queries: list[Query]) -> None:
    """``corpus.jsonl``, ``queries.jsonl`` and ``qrels/test.tsv`` as beir's loader reads them."""
    write_jsonl(
        folder / "corpus.jsonl",
        ({"_id": cid, "title": "", "text": text} for cid, text in corpus.items()),
    )
    write_jsonl(
        folder / "queries.jsonl",
        ({"_id": q.qid, "text": q.text, "metadata": q.metadata} for q in queries),
    )
    lines = ["query-id\tcorpus-id\tscore"]
    lines += [f"{q.qid}\t{pid}\t1" for q in queries for pid in q.positives]
    write_text(folder / "qrels" / "test.tsv", "\n".join(lines) + "\n")
