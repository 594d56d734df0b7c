"""Read SDG JSONL (this project's or the reference's published shape) into queries and a corpus."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from reranktune.io import InputError, iter_jsonl

log = logging.getLogger(__name__)


def chunk_corpus_id(text: str) -> str:
    return "d_" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass
class Query:
    qid: str
    text: str
    positives: list[str]
    source_id: str
    metadata: dict = field(default_factory=dict)


@dataclass
class SdgData:
    corpus: dict[str, str]  # corpus id -> text, exact duplicates merged
    doc_chunks: dict[str, set[str]]  # source id -> its corpus ids
    queries: list[Query]
    counts: Counter = field(default_factory=Counter)
    bad_lines: list[str] = field(default_factory=list)


def sdg_files(path: str | Path) -> list[Path]:
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.jsonl") if p.is_file())
        if not files:
            raise InputError(f"{path}: no .jsonl files found")
        return files
    if not path.exists():
        raise InputError(f"{path}: file not found")
    return [path]


def _segment_ids(raw) -> list[int]:
    if isinstance(raw, (int, str)):
        raw = [raw]
    return [int(s) for s in raw]


def load_sdg(path: str | Path, quality_threshold: float, max_pos_docs: int) -> SdgData:
    """Build the corpus and the kept queries; count every pair dropped and why."""
    data = SdgData(corpus={}, doc_chunks={}, queries=[])
    counts = data.counts
    for file in sdg_files(path):
        for lineno, record in iter_jsonl(file, errors=data.bad_lines):
            where = f"{file}:{lineno}"
            if not isinstance(record, dict) or "chunks" not in record:
                data.bad_lines.append(f"{where}: not an SDG record (no 'chunks')")
                continue
            try:
                _add_document(data, record, quality_threshold, max_pos_docs, where)
            except (KeyError, TypeError, ValueError) as exc:
                data.bad_lines.append(f"{where}: malformed record: {exc!r}")
    for line in data.bad_lines:
        log.warning("%s", line)
    counts["bad_lines"] = len(data.bad_lines)
    if not data.queries:
        raise InputError(f"{path}: no usable Q&A pairs (counts: {dict(counts)})")
    return data


def _add_document(data: SdgData, record: dict, threshold: float, max_pos: int, where: str) -> None:
    counts = data.counts
    source_id = str(record.get("source_id") or record["file_name"][0])
    if source_id in data.doc_chunks:
        raise ValueError(f"duplicate source_id {source_id!r}")
    chunk_ids: dict[int, str] = {}
    for chunk in record["chunks"]:
        text = chunk["text"]
        cid = chunk_corpus_id(text)
        chunk_ids[int(chunk["chunk_id"])] = cid
        if cid in data.corpus:
            counts["duplicate_chunks"] += 1
        data.corpus[cid] = text
    data.doc_chunks[source_id] = set(chunk_ids.values())
    counts["documents"] += 1

    pairs = record.get("deduplicated_qa_pairs") or []
    evaluations = (record.get("qa_evaluations") or {}).get("evaluations") or []
    if len(evaluations) != len(pairs):
        raise ValueError(f"{len(pairs)} Q&A pairs but {len(evaluations)} evaluations")
    for n, (pair, evaluation) in enumerate(zip(pairs, evaluations)):
        counts["pairs_read"] += 1
        score = float(evaluation["overall"]["score"])
        if score < threshold:
            counts["dropped_low_quality"] += 1
            continue
        segments = _segment_ids(pair.get("segment_ids") or [])
        if not segments or any(s not in chunk_ids for s in segments):
            counts["dropped_unknown_chunk_id"] += 1
            continue
        positives = list(dict.fromkeys(chunk_ids[s] for s in segments))
        if len(positives) > max_pos:
            counts["dropped_too_many_positives"] += 1
            continue
        question = str(pair["question"]).strip()
        if not question:
            counts["dropped_empty_question"] += 1
            continue
        qid = "q_" + hashlib.sha256(f"{source_id}\0{n}\0{question}".encode()).hexdigest()[:12]
        data.queries.append(
            Query(
                qid=qid,
                text=question,
                positives=positives,
                source_id=source_id,
                metadata={
                    "query_type": pair.get("query_type"),
                    "reasoning_type": pair.get("reasoning_type"),
                    "hop_count": int(pair.get("hop_count") or len(segments)),
                    "quality_score": score,
                },
            )
        )
        counts["pairs_kept"] += 1
