"""Load a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reranktune.io import InputError


@dataclass
class BeirData:
    corpus: dict[str, dict]            # id -> {"title", "text"}
    queries: dict[str, str]            # id -> text (only queries with judgements)
    qrels: dict[str, dict[str, int]]
    metadata: dict[str, dict]

    def passage_text(self, doc_id: str) -> str:
        doc = self.corpus[doc_id]
        title = (doc.get("title") or "").strip()
        return f"{title}. {doc['text']}" if title else doc["text"]


def load_beir(folder: str | Path, split: str = "test") -> BeirData:
    from beir.datasets.data_loader import GenericDataLoader

    folder = Path(folder)
    for name in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        if not (folder / name).exists():
            raise InputError(f"{folder}: missing {name} (expected a BEIR folder)")
    corpus, queries, qrels = GenericDataLoader(data_folder=str(folder)).load(split=split)
    metadata = _query_metadata(folder / "queries.jsonl", set(queries))
    return BeirData(corpus=corpus, queries=queries, qrels=qrels, metadata=metadata)


def _query_metadata(path: Path, wanted: set[str]) -> dict[str, dict]:
    import json

    metadata = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                record = json.loads(line)
                if record["_id"] in wanted:
                    metadata[record["_id"]] = record.get("metadata") or {}
    return metadata
