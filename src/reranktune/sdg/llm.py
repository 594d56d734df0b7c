"""The reference's four-step LLM generator, per document or multi-document bundle.

1. artifact extraction, 2. QA generation, 3. embedding dedup (cosine > threshold),
4. quality judge. A unit whose text does not fit ``max_prompt_tokens`` is split into
sections of consecutive chunks; steps 1, 2 and 4 run per section, dedup per unit.
A malformed reply is asked again ``parse_retries`` times, then that step is dropped and
counted; transient HTTP failures propagate (the unit is retried on the next run).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass, field

import numpy as np

from reranktune.documents import Document
from reranktune.io import InputError
from reranktune.params import LlmParams
from reranktune.sdg import prompts
from reranktune.sdg.llm_client import LlmClient, RequestRejected
from reranktune.sdg.records import bundle_record
from reranktune.sdg.schemas import Artifacts, GeneratedPair, Judgement, QAGeneration

log = logging.getLogger(__name__)

# Params that change what a unit's record is; the rest (limits, retries) do not.
RESULT_FIELDS = {
    "base_url",
    "model",
    "step_models",
    "temperature",
    "top_p",
    "max_tokens",
    "extra_body",
    "query_types",
    "reasoning_types",
    "max_artifacts_per_type",
    "dedup_threshold",
    "dedup_embeddings",
    "embedding",
    "embedding_model",
    "embedding_extra_body",
    "max_prompt_tokens",
    "chars_per_token",
}


@dataclass
class Unit:
    """What one record is made from: a document, or a bundle of documents with shared chunk ids."""

    index: int
    documents: list[Document]
    key: str = ""

    @property
    def chunks(self) -> list[tuple[str, str]]:
        """``(document path, chunk text)`` in unit chunk-id order (1-based)."""
        return [(d.path, text) for d in self.documents for text in d.chunks]


def make_units(documents: list[Document], params: LlmParams) -> list[Unit]:
    size = params.bundle_size if params.multi_doc else 1
    groups = [documents[i : i + size] for i in range(0, len(documents), size)]
    settings = json.dumps(params.model_dump(include=RESULT_FIELDS), sort_keys=True)
    units = []
    for index, group in enumerate(groups):
        digest = hashlib.sha256(f"v{prompts.PROMPT_VERSION}\0{settings}".encode())
        for doc in group:
            digest.update(f"\0{doc.path}\0{len(doc.chunks)}".encode())
            for chunk in doc.chunks:
                digest.update(b"\0" + chunk.encode())
        units.append(Unit(index, group, digest.hexdigest()[:32]))
    return units


def split_sections(
    chunks: list[tuple[str, str]], budget: int, chars_per_token: float
) -> list[list[int]]:
    """Consecutive 1-based chunk ids grouped so each group's text fits ``budget`` tokens."""
    sections: list[list[int]] = []
    used = 0
    for cid, (_, text) in enumerate(chunks, start=1):
        cost = prompts.estimate_tokens(text, chars_per_token) + 8
        if sections and used + cost <= budget:
            sections[-1].append(cid)
            used += cost
        else:
            sections.append([cid])
            used = cost
    return sections


def dedup_keep(vectors: np.ndarray, threshold: float) -> list[int]:
    """Indices kept: a later row with cosine > ``threshold`` to any kept row is dropped."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms == 0, 1, norms)
    kept: list[int] = []
    for i in range(len(unit)):
        if not kept or float(np.max(unit[kept] @ unit[i])) <= threshold:
            kept.append(i)
    return kept


class StepFailed(Exception):
    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step


@dataclass
class UnitResult:
    record: dict
    stats: dict = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)  # "step: reason", redacted


class LlmGenerator:
    def __init__(self, params: LlmParams, client: LlmClient) -> None:
        self.params = params
        self.client = client
        cpt = params.chars_per_token
        overhead = max(
            prompts.artifact_overhead(params.max_artifacts_per_type, cpt),
            prompts.qa_overhead(params.query_types, params.reasoning_types, cpt),
            prompts.judge_overhead(cpt),
        )
        # Half of what is left after the instructions is for chunk text, the rest for
        # artifacts (QA prompt) or pairs (judge prompt).
        self.section_budget = (params.max_prompt_tokens - overhead) // 2
        if self.section_budget < 64:
            raise InputError(
                f"sdg.llm.max_prompt_tokens: {params.max_prompt_tokens} leaves no room for text "
                f"(the instructions alone take about {overhead} tokens)"
            )
        self._embedder = None
        self._embedder_lock = threading.Lock()

    # -- prompt pieces -----------------------------------------------------------
    def _section_text(self, unit: Unit, ids: list[int]) -> str:
        chunks = unit.chunks
        limit = int(self.section_budget * self.params.chars_per_token)
        grouped: list[tuple[str, list[tuple[int, str]]]] = []
        for cid in ids:
            path, text = chunks[cid - 1]
            if not grouped or grouped[-1][0] != path:
                grouped.append((path, []))
            grouped[-1][1].append((cid, text[:limit]))  # only a lone over-long chunk is cut
        return prompts.render_chunks(grouped)

    def _ask(self, step: str, messages: list[dict], schema, check=None):
        size = prompts.messages_tokens(messages, self.params.chars_per_token)
        if size > self.params.max_prompt_tokens:
            raise StepFailed(step, f"prompt of about {size} tokens is over max_prompt_tokens")
        reason = "no attempt"
        for _ in range(self.params.parse_retries + 1):
            try:
                reply = self.client.chat(step, messages)
            except RequestRejected as exc:
                raise StepFailed(step, str(exc)) from None
            try:
                result = prompts.parse_reply(reply, schema)
                if check:
                    check(result)
                return result
            except prompts.MalformedReply as exc:
                self.client.usage.add(malformed_replies=1)
                reason = str(exc)
                log.info("%s: malformed reply (%s), asking again", step, reason)
        raise StepFailed(step, reason)

    # -- the four steps --------------------------------------------------------------
    def _artifacts(self, text: str) -> Artifacts:
        messages = prompts.artifact_messages(text, self.params.max_artifacts_per_type)
        return self._ask("artifacts", messages, Artifacts).capped(
            self.params.max_artifacts_per_type
        )

    def _questions(
        self, text: str, artifacts: Artifacts | None, ids: list[int]
    ) -> tuple[list[GeneratedPair], int]:
        p = self.params
        messages = prompts.qa_messages(
            text,
            artifacts,
            p.query_types,
            p.reasoning_types,
            p.max_prompt_tokens,
            p.chars_per_token,
        )
        pairs = self._ask("qa", messages, QAGeneration).pairs
        allowed = set(ids)
        good = [q for q in pairs if set(q.segment_ids) <= allowed]
        return good, len(pairs) - len(good)

    def _embed(self, questions: list[str]) -> np.ndarray:
        if self.params.dedup_embeddings == "provider":
            try:
                return np.asarray(self.client.embed(questions), dtype=np.float32)
            except RequestRejected as exc:
                raise StepFailed("dedup", str(exc)) from None
        with self._embedder_lock:
            if self._embedder is None:
                from reranktune.retrieval.embedder import Embedder

                self._embedder = Embedder(self.params.embedding)
            return self._embedder.encode_queries(questions)

    def _judge(self, text: str, pairs: list[dict]) -> list[dict]:
        evaluations: list[dict] = [{} for _ in pairs]
        for indices, messages in prompts.judge_batches(
            text, pairs, self.params.max_prompt_tokens, self.params.chars_per_token
        ):

            def check(j: Judgement, wanted=frozenset(indices)) -> None:
                got = [e.index for e in j.evaluations]
                if sorted(got) != sorted(wanted):
                    raise prompts.MalformedReply(
                        f"Judgement: evaluations for pairs {sorted(got)}, expected {sorted(wanted)}"
                    )

            for e in self._ask("judge", messages, Judgement, check).evaluations:
                evaluations[e.index] = e.model_dump(exclude={"index"})
        return evaluations

    def generate(self, unit: Unit) -> UnitResult:
        stats = {
            "sections": 0,
            "pairs_generated": 0,
            "pairs_bad_segment_ids": 0,
            "pairs_duplicate": 0,
            "pairs_unjudged": 0,
            "pairs_kept": 0,
        }
        failures: list[str] = []
        sections = split_sections(unit.chunks, self.section_budget, self.params.chars_per_token)
        stats["sections"] = len(sections)
        texts = [self._section_text(unit, ids) for ids in sections]
        generated: list[tuple[int, GeneratedPair]] = []  # (section, pair)
        for s, (ids, text) in enumerate(zip(sections, texts)):
            try:
                artifacts = self._artifacts(text)
            except StepFailed as exc:
                failures.append(str(exc))
                artifacts = None
            try:
                pairs, bad = self._questions(text, artifacts, ids)
            except StepFailed as exc:
                failures.append(str(exc))
                continue
            stats["pairs_bad_segment_ids"] += bad
            stats["pairs_generated"] += len(pairs) + bad
            generated.extend((s, q) for q in pairs)

        if len(generated) > 1:
            try:
                vectors = self._embed([q.question for _, q in generated])
                keep = dedup_keep(vectors, self.params.dedup_threshold)
                stats["pairs_duplicate"] = len(generated) - len(keep)
                generated = [generated[i] for i in keep]
            except StepFailed as exc:
                failures.append(str(exc))

        kept_pairs: list[dict] = []
        kept_evals: list[dict] = []
        for s, text in enumerate(texts):
            pairs = [q.model_dump() for sec, q in generated if sec == s]
            if not pairs:
                continue
            try:
                evaluations = self._judge(text, pairs)
            except StepFailed as exc:
                failures.append(str(exc))
                stats["pairs_unjudged"] += len(pairs)
                continue
            kept_pairs.extend(pairs)
            kept_evals.extend(evaluations)
        stats["pairs_kept"] = len(kept_pairs)
        paths = [d.path for d in unit.documents]
        source_id = paths[0] if len(paths) == 1 else " + ".join(paths)
        record = bundle_record(
            paths, source_id, [text for _, text in unit.chunks], kept_pairs, kept_evals
        )
        return UnitResult(record, stats, failures)
