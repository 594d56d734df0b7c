"""Pydantic schemas for the three LLM steps' replies (the dedup step is local).

Types are strict where prep depends on them (query types, segment ids, scores); counts
are lenient (extra artifacts are cut by the generator, not rejected) so a chatty model still
yields data.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from reranktune.params import REASONING_TYPES

ARTIFACT_TYPES = (
    "key_concepts",
    "relationships",
    "themes",
    "entities",
    "processes",
    "insights",
    "technical_terms",
    "contextual_factors",
)


class _Reply(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Artifact(_Reply):
    text: str = Field(min_length=1, description="The concept, entity, term, ... itself")
    description: str = Field("", description="One sentence on its role in the text")


class Artifacts(_Reply):
    key_concepts: list[Artifact] = []
    relationships: list[Artifact] = []
    themes: list[Artifact] = []
    entities: list[Artifact] = []
    processes: list[Artifact] = []
    insights: list[Artifact] = []
    technical_terms: list[Artifact] = []
    contextual_factors: list[Artifact] = []

    def capped(self, per_type: int) -> Artifacts:
        """Keep the first ``per_type`` items of each kind (a chatty model is cut, not rejected)."""
        return self.model_copy(update={k: getattr(self, k)[:per_type] for k in ARTIFACT_TYPES})


class HopContext(_Reply):
    hop_number: int = Field(ge=1)
    segment_ids: list[int] = Field(min_length=1)
    summary: str = ""


class GeneratedPair(_Reply):
    question: str = Field(min_length=3, description="Standalone: understandable without the text")
    answer: str = Field(min_length=1)
    query_type: Literal["multi_hop", "structural", "contextual"]
    reasoning_type: Literal[REASONING_TYPES]  # type: ignore[valid-type]
    question_complexity: int = Field(ge=1, le=5, description="1 (lookup) to 5 (synthesis)")
    segment_ids: list[int] = Field(min_length=1, description="Chunk ids the answer rests on")
    hop_count: int = Field(ge=1, le=3)
    hop_contexts: list[HopContext] = []


class QAGeneration(_Reply):
    pairs: list[GeneratedPair] = Field(min_length=1)


class Criterion(_Reply):
    score: float = Field(ge=1, le=10)
    justification: str = ""


class Overall(_Reply):
    score: float = Field(ge=1, le=10)
    assessment: str = ""


class PairEvaluation(_Reply):
    index: int = Field(ge=0, description="The pair's index as given in the prompt")
    relevance: Criterion
    accuracy: Criterion
    context_support: Criterion
    clarity: Criterion
    overall: Overall


class Judgement(_Reply):
    evaluations: list[PairEvaluation]
