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


def document_record(doc: Document, pairs: list[QAPair], judge: str) -> dict:
    """One JSONL line: the document, its chunks, its Q&A pairs and their judgements."""
    return {
        "file_name": [doc.path],
        "source_id": doc.source_id,
        "chunks": [{"chunk_id": i, "text": text} for i, text in enumerate(doc.chunks, start=1)],
        "deduplicated_qa_pairs": [
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
        "qa_evaluations": {
            "evaluations": [
                {"overall": {"score": p.score, "assessment": judge}} for p in pairs
            ]
        },
    }
