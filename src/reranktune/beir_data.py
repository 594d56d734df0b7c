"""Load a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv).

Read here rather than with beir's ``GenericDataLoader``, which stops on an empty or
header-only qrels file with a bare StopIteration/IndexError and names no file or line;
here every malformed line is an InputError naming its file and line.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from reranktune.io import InputError, iter_jsonl, read_text

QRELS_HEADER = "query-id\tcorpus-id\tscore"


@dataclass
class BeirData:
    corpus: dict[str, dict]  # id -> {"title", "text"}
    queries: dict[str, str]  # id -> text (only queries with judgements)
    qrels: dict[str, dict[str, int]]
    metadata: dict[str, dict]

    def passage_text(self, doc_id: str) -> str:
        return passage_text(self.corpus[doc_id])


def passage_text(doc: dict) -> str:
    """A document as a reranker reads it: ``title. text``, or the text alone without a title."""
    title = (doc.get("title") or "").strip()
    return f"{title}. {doc['text']}" if title else doc["text"]


def read_passages(path: str | Path) -> list[str]:
    """Every document of a BEIR ``corpus.jsonl`` as ``passage_text`` gives it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: corpus file not found (expected a BEIR corpus.jsonl)")
    passages = [passage_text(record) for _, record in _records(path)]
    if not passages:
        raise InputError(f"{path}: no documents")
    return passages


def load_beir(folder: str | Path, split: str = "test") -> BeirData:
    folder = Path(folder)
    for name in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        if not (folder / name).exists():
            raise InputError(f"{folder}: missing {name} (expected a BEIR folder)")
    corpus = {
        _id: {"title": record.get("title") or "", "text": record["text"]}
        for _id, record in _records(folder / "corpus.jsonl")
    }
    if not corpus:
        raise InputError(f"{folder / 'corpus.jsonl'}: no documents")
    queries = dict(_records(folder / "queries.jsonl"))
    qrels = _qrels(folder / "qrels" / f"{split}.tsv", queries)
    return BeirData(
        corpus=corpus,
        queries={q: queries[q]["text"] for q in qrels},
        qrels=qrels,
        metadata={q: queries[q].get("metadata") or {} for q in qrels},
    )


def _records(path: Path):
    """``(_id, record)`` per line; a line without a string ``_id`` and ``text`` names itself."""
    for lineno, record in iter_jsonl(path):
        if not isinstance(record, dict):
            raise InputError(
                f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}"
            )
        for key in ("_id", "text"):
            if not isinstance(record.get(key), str):
                raise InputError(f"{path}:{lineno}: {key!r} missing or not a string")
        yield record["_id"], record


def _judgement(row: list[str]) -> bool:
    return len(row) >= 3 and row[2].strip().lstrip("-").isdigit()


def _qrels(path: Path, queries: dict[str, dict]) -> dict[str, dict[str, int]]:
    rows = list(csv.reader(read_text(path).splitlines(), delimiter="\t"))
    expected = f"expected a header line {QRELS_HEADER!r}, then one judgement per line"
    if not rows:
        raise InputError(f"{path}: empty file ({expected})")
    qrels: dict[str, dict[str, int]] = {}
    for lineno, row in enumerate(rows, start=1):
        if (lineno == 1 and not _judgement(row)) or not any(cell.strip() for cell in row):
            continue  # the header, or a blank line
        if not _judgement(row):
            raise InputError(
                f"{path}:{lineno}: expected query-id<TAB>corpus-id<TAB>integer score, got {row!r}"
            )
        query_id, corpus_id, score = row[0], row[1], int(row[2])
        if query_id not in queries:
            raise InputError(f"{path}:{lineno}: query {query_id!r} is not in queries.jsonl")
        qrels.setdefault(query_id, {})[corpus_id] = score
    if not qrels:
        raise InputError(f"{path}: no judgements ({expected})")
    return qrels
