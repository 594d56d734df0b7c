"""Prompts for the LLM steps and the parser for their JSON replies.

Structured output follows data-designer's convention (the engine the reference uses):
the JSON schema goes into the prompt inside ``<response_schema>`` and the reply is read
from a Markdown ```json fence (or bare JSON), then validated with pydantic. Prompt length
is estimated as ``len(text) / chars_per_token``; builders never exceed their budget.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from reranktune.sdg.schemas import ARTIFACT_TYPES, Artifacts, Judgement, QAGeneration

M = TypeVar("M", bound=BaseModel)

PROMPT_VERSION = "1"  # part of the resume key: change it when prompts change
_FENCE = re.compile(r"```(?:json)?\s*\n?(.*?)```", re.DOTALL)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
_PER_MESSAGE_OVERHEAD = 8


class MalformedReply(ValueError):
    """The reply has no parsable JSON or does not fit the step's schema."""


def estimate_tokens(text: str, chars_per_token: float) -> int:
    return math.ceil(len(text) / chars_per_token)


def messages_tokens(messages: list[dict], chars_per_token: float) -> int:
    return sum(
        estimate_tokens(m["content"], chars_per_token) + _PER_MESSAGE_OVERHEAD for m in messages
    )


def _schema_block(model: type[BaseModel]) -> str:
    schema = json.dumps(model.model_json_schema(), separators=(",", ":"))
    return (
        "\n\nReturn only one JSON object, within a Markdown ```json code fence, "
        "that fits this schema:\n"
        f"<response_schema>{schema}</response_schema>"
    )


def render_chunks(sections: Sequence[tuple[str, Sequence[tuple[int, str]]]]) -> str:
    """``[(document name, [(chunk id, text)])]`` -> tagged text the model cites ids from."""
    parts = []
    for name, chunks in sections:
        body = "\n".join(f"[chunk {cid}] {text}" for cid, text in chunks)
        parts.append(f'<document name="{name}">\n{body}\n</document>')
    return "\n".join(parts)


# -- step 1: artifacts --------------------------------------------------------------------
ARTIFACT_SYSTEM = (
    "You are the artifact extraction step of a synthetic data pipeline for training a search "
    "reranker. You read technical documents and list what a user might search for."
)


def artifact_messages(chunks_text: str, per_type: int) -> list[dict]:
    kinds = ", ".join(k.replace("_", " ") for k in ARTIFACT_TYPES)
    user = (
        f"Extract up to {per_type} items of each kind ({kinds}) from the text below. "
        "Use the text's own words; leave a kind empty when the text has none.\n\n"
        f"{chunks_text}{_schema_block(Artifacts)}"
    )
    return [{"role": "system", "content": ARTIFACT_SYSTEM}, {"role": "user", "content": user}]


def artifact_overhead(per_type: int, chars_per_token: float) -> int:
    return messages_tokens(artifact_messages("", per_type), chars_per_token)


# -- step 2: question generation -------------------------------------------------------
QA_SYSTEM = (
    "You are the question generation step of a synthetic data pipeline for training a search "
    "reranker. You write questions a real user would ask, each answerable from the given chunks."
)


def _qa_user(
    chunks_text: str,
    artifacts_json: str,
    query_types: dict[str, int],
    reasoning_types: Sequence[str],
) -> str:
    total = sum(query_types.values())
    mix = ", ".join(f"{n} {kind}" for kind, n in query_types.items() if n)
    return (
        f"Write {total} question/answer pairs about the text below: {mix}.\n"
        "- multi_hop: needs facts from 2-3 different chunks; structural: about how the text is "
        "organised (sections, steps, lists); contextual: about one chunk's content in context.\n"
        f"- reasoning_type is one of: {', '.join(reasoning_types)}.\n"
        "- Questions must be standalone (no 'this document', 'the text', 'the author').\n"
        "- segment_ids: the ids of the chunks ([chunk N]) the answer rests on; hop_count: how many "
        "reasoning hops (1-3); hop_contexts: one entry per hop with its chunk ids and a summary.\n"
        f"\nKey artifacts of the text: {artifacts_json}\n\n"
        f"{chunks_text}{_schema_block(QAGeneration)}"
    )


def qa_messages(
    chunks_text: str,
    artifacts: Artifacts | None,
    query_types: dict[str, int],
    reasoning_types: Sequence[str],
    budget: int,
    chars_per_token: float,
) -> list[dict]:
    """The QA prompt; artifacts are cut from the end until the prompt fits ``budget``."""
    items = [
        (kind, a.text)
        for kind in ARTIFACT_TYPES
        for a in (getattr(artifacts, kind) if artifacts else [])
    ]
    while True:
        grouped: dict[str, list[str]] = {}
        for kind, text in items:
            grouped.setdefault(kind, []).append(text)
        user = _qa_user(
            chunks_text, json.dumps(grouped, ensure_ascii=False), query_types, reasoning_types
        )
        messages = [{"role": "system", "content": QA_SYSTEM}, {"role": "user", "content": user}]
        if not items or messages_tokens(messages, chars_per_token) <= budget:
            return messages
        items.pop()


def qa_overhead(
    query_types: dict[str, int], reasoning_types: Sequence[str], chars_per_token: float
) -> int:
    return messages_tokens(
        qa_messages("", None, query_types, reasoning_types, 0, chars_per_token), chars_per_token
    )


# -- step 4: quality judge ------------------------------------------------------------------
JUDGE_SYSTEM = (
    "You are the quality judge step of a synthetic data pipeline for training a search reranker. "
    "You score question/answer pairs strictly against the given chunks."
)


def _judge_user(chunks_text: str, pairs_json: str) -> str:
    return (
        "Score every pair below from 1 to 10 on: relevance (a real user would ask it), accuracy "
        "(the answer is correct), context_support (the cited chunks support the answer), clarity "
        "(standalone and unambiguous); then give an overall score and a one-line assessment. "
        "Return one evaluation per pair, with the pair's index.\n\n"
        f"{chunks_text}\n\nPairs:\n{pairs_json}{_schema_block(Judgement)}"
    )


def judge_batches(
    chunks_text: str, pairs: list[dict], budget: int, chars_per_token: float
) -> list[tuple[list[int], list[dict]]]:
    """Pack pairs into judge prompts that each fit ``budget``; returns (pair indices, messages).

    A single pair too long for an empty prompt has its answer cut to fit.
    """

    def build(batch: list[tuple[int, dict]]) -> list[dict]:
        listed = [
            {
                "index": i,
                "question": p["question"],
                "answer": p["answer"],
                "segment_ids": p["segment_ids"],
            }
            for i, p in batch
        ]
        user = _judge_user(chunks_text, json.dumps(listed, ensure_ascii=False, indent=1))
        return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]

    batches: list[tuple[list[int], list[dict]]] = []
    current: list[tuple[int, dict]] = []
    for item in enumerate(pairs):
        if current and messages_tokens(build([*current, item]), chars_per_token) > budget:
            batches.append(([i for i, _ in current], build(current)))
            current = []
        index, pair = item
        while (
            messages_tokens(build([(index, pair)]), chars_per_token) > budget
            and len(pair["answer"]) > 1
        ):
            pair = {**pair, "answer": pair["answer"][: len(pair["answer"]) // 2]}
        current.append((index, pair))
    if current:
        batches.append(([i for i, _ in current], build(current)))
    return batches


def judge_overhead(chars_per_token: float) -> int:
    messages = [
        {"role": "system", "content": JUDGE_SYSTEM},
        {"role": "user", "content": _judge_user("", "[]")},
    ]
    return messages_tokens(messages, chars_per_token)


# -- replies ---------------------------------------------------------------------------------
def _json_candidates(reply: str) -> list[str]:
    text = _THINK.sub("", reply)
    fenced = [m.strip() for m in _FENCE.findall(text)]
    bare = [text[text.find("{") :]] if "{" in text else []
    return list(dict.fromkeys([*reversed(fenced), *bare]))


def parse_reply(reply: str, schema: type[M]) -> M:
    """The last ```json fence (or the first bare JSON object) validated against ``schema``."""
    errors = []
    decoder = json.JSONDecoder()
    for candidate in _json_candidates(reply):
        try:
            obj, _ = decoder.raw_decode(candidate)
        except json.JSONDecodeError as exc:
            errors.append(f"invalid JSON: {exc.msg} at char {exc.pos}")
            continue
        try:
            return schema.model_validate(obj)
        except ValidationError as exc:
            shown = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3]
            )
            errors.append(f"schema: {exc.error_count()} error(s): {shown}")
    raise MalformedReply(
        f"{schema.__name__}: " + ("; ".join(errors) or "no JSON object in the reply")
    )
