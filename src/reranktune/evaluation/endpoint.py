"""Endpoint check: rerank the test candidates through a running ranking API (NIM contract).

``POST {url}/v1/ranking`` with ``{"model", "query": {"text"}, "passages": [{"text"}],
"truncate": "END"}`` answers ``{"rankings": [{"index", "logit"}]}``. The metrics of that
run are compared with the checkpoint's on the same candidates: a deployment that
formats prompts, truncates or quantises differently shows up here.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import httpx
from tqdm.auto import tqdm

from reranktune.beir_data import BeirData
from reranktune.io import InputError
from reranktune.ir_metrics import Run

log = logging.getLogger(__name__)


class EndpointMismatch(InputError):
    """The endpoint's metrics differ from the checkpoint's beyond the tolerance."""


@dataclass
class RankingClient:
    url: str
    model: str = ""
    timeout_s: float = 120.0
    api_key_env: str = ""

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        headers = {}
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.client = httpx.Client(timeout=self.timeout_s, headers=headers)
        if not self.model:
            self.model = self._first_model()

    def _get_json(self, response: httpx.Response, what: str) -> dict:
        if response.status_code >= 400:
            raise InputError(f"{what}: HTTP {response.status_code}: {response.text[:300]}")
        try:
            return response.json()
        except ValueError as exc:
            raise InputError(f"{what}: response is not JSON: {response.text[:300]}") from exc

    def _first_model(self) -> str:
        what = f"GET {self.url}/v1/models"
        try:
            body = self._get_json(self.client.get(f"{self.url}/v1/models"), what)
            return str(body["data"][0]["id"])
        except httpx.HTTPError as exc:
            raise InputError(f"{what}: {exc}") from exc
        except (KeyError, IndexError, TypeError) as exc:
            raise InputError(f"{what}: no model id in {str(body)[:300]}") from exc

    def rank(self, query: str, passages: list[str]) -> list[float]:
        """One logit per passage, in the order given."""
        what = f"POST {self.url}/v1/ranking"
        payload = {
            "model": self.model,
            "query": {"text": query},
            "passages": [{"text": p} for p in passages],
            "truncate": "END",
        }
        try:
            body = self._get_json(self.client.post(f"{self.url}/v1/ranking", json=payload), what)
        except httpx.HTTPError as exc:
            raise InputError(f"{what}: {exc}") from exc
        logits: list[float | None] = [None] * len(passages)
        try:
            for entry in body["rankings"]:
                logits[int(entry["index"])] = float(entry["logit"])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise InputError(f"{what}: malformed rankings in {str(body)[:300]}") from exc
        if any(x is None for x in logits):
            raise InputError(
                f"{what}: {logits.count(None)} of {len(passages)} passages have no ranking"
            )
        return logits  # type: ignore[return-value]

    def close(self) -> None:
        self.client.close()


def rerank_with_endpoint(data: BeirData, candidates: Run, client: RankingClient) -> Run:
    """The candidates of each query, scored by one ranking request per query."""
    run: Run = {}
    for qid, docs in tqdm(candidates.items(), desc="endpoint", unit="query"):
        doc_ids = list(docs)
        logits = client.rank(data.queries[qid], [data.passage_text(d) for d in doc_ids])
        run[qid] = dict(zip(doc_ids, logits))
    return run


def _cutoff(name: str) -> int | None:
    return int(name.rsplit("@", 1)[1]) if "@" in name else None


def compare_metrics(
    checkpoint: dict[str, dict[str, float]],
    endpoint: dict[str, dict[str, float]],
    tolerance_at_1: float = 0.03,
    tolerance: float = 0.01,
) -> list[dict]:
    """One row per metric: both values, the absolute difference and whether it is within tolerance.

    Cut-offs below 5 get ``tolerance_at_1`` (a single swap moves @1 a lot), the rest ``tolerance``.
    """
    rows = []
    for family, values in checkpoint.items():
        for name, value in values.items():
            other = endpoint[family][name]
            k = _cutoff(name)
            allowed = tolerance_at_1 if k is not None and k < 5 else tolerance
            diff = abs(other - value)
            rows.append(
                {
                    "metric": name,
                    "checkpoint": value,
                    "endpoint": other,
                    "abs_diff": round(diff, 5),
                    "tolerance": allowed,
                    "ok": diff <= allowed + 1e-9,
                }
            )
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [
        "| metric | checkpoint | endpoint | abs diff | tolerance | ok |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['metric']} | {r['checkpoint']:.4f} | {r['endpoint']:.4f} | {r['abs_diff']:.4f} "
        f"| {r['tolerance']:.2f} | {'yes' if r['ok'] else 'NO'} |"
        for r in rows
    ]
    return "\n".join(lines)


def endpoint_summary(rows: list[dict], url: str, model: str) -> dict:
    """The metrics-file entry: pass/fail, worst difference, failing metrics."""
    return {
        "url": url,
        "model": model,
        "passed": all(r["ok"] for r in rows),
        "max_abs_diff": max((r["abs_diff"] for r in rows), default=0.0),
        "failed_metrics": [r["metric"] for r in rows if not r["ok"]],
    }
