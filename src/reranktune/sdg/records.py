"""The SDG JSONL record shape shared with the reference recipe (spec, stage 0)."""

from __future__ import annotations

from dataclasses import dataclass, field

from reranktune.documents import Document


@dataclass
class QAPair:
    question: str
    answer: str
    query_type: str
    reasoning_type: str
    segment_ids: list[int]
    score: float
    question_complexity: int = 1
    hop_contexts: list[dict] = field(default_factory=list)

    @property
    def hop_count(self) -> int:
        return len(self.segment_ids)


def bundle_record(
    paths: list[str], source_id: str, chunks: list[str], pairs: list[dict], evaluations: list[dict]
) -> dict:
    """One JSONL line: one document (or a multi-document bundle), its chunks, pairs and
    judgements."""
    return {
        "file_name": paths,
        "source_id": source_id,
        "chunks": [{"chunk_id": i, "text": text} for i, text in enumerate(chunks, start=1)],
        "deduplicated_qa_pairs": pairs,
        "qa_evaluations": {"evaluations": evaluations},
    }


def document_record(doc: Document, pairs: list[QAPair], judge: str) -> dict:
    """One JSONL line: the document, its chunks, its Q&A pairs and their judgements."""
    return bundle_record(
        [doc.path],
        doc.source_id,
        doc.chunks,
        [
            {
                "question": p.question,
                "answer": p.answer,
                "query_type": p.query_type,
                "reasoning_type": p.reasoning_type,
                "question_complexity": p.question_complexity,
                "segment_ids": p.segment_ids,
                "hop_count": p.hop_count,
                "hop_contexts": p.hop_contexts,
            }
            for p in pairs
        ],
        [{"overall": {"score": p.score, "assessment": judge}} for p in pairs],
    )
