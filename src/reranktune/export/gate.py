"""The accuracy gate: a variant is offered to serve only if it ranks the test set like PyTorch.

Two checks per variant: its scores against PyTorch's on fixed real pairs (max |diff| for
lossless variants, Spearman for lossy ones), and NDCG@10 after reranking the test
queries' dense top-k candidates, which must not drop more than ``max_ndcg_drop``.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from reranktune.evaluation.beir_data import BeirData, load_beir
from reranktune.evaluation.metrics import ranking_metrics
from reranktune.evaluation.first_stage import dense_retrieval
from reranktune.evaluation.metrics import Run
from reranktune.evaluation.run import rerank
from reranktune.export.parity import Parity
from reranktune.params import EmbeddingParams, ExportParams
from reranktune.prior import Prior
from reranktune.reranker import Reranker

log = logging.getLogger(__name__)

NDCG_KEY = "NDCG@10"


class OnnxScorer:
    """Scores pairs through an onnxruntime session with the reranker's tokenizer, prompt and prior."""

    def __init__(self, session, reranker: Reranker, prior: Prior | None = None) -> None:
        self.session = session
        self.reranker = reranker
        self.prior = prior or reranker.prior   # the exported (ONNX) prior where there is one

    def score(self, queries: list[str], passages: list[str], batch_size: int = 64,
              progress: bool = False) -> list[float]:
        order = sorted(range(len(passages)), key=lambda i: len(queries[i]) + len(passages[i]))
        scores = [0.0] * len(order)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = self.reranker.tokenize([queries[i] for i in rows], [passages[i] for i in rows])
            logits = self.session.run(["logits"], {n: t.numpy() for n, t in batch.items()})[0][:, 0]
            for i, logit in zip(rows, logits.tolist()):
                scores[i] = logit
        if self.prior is not None:
            scores = (self.prior.scores(queries, passages) + scores).tolist()
        return scores


@dataclass
class RankingSet:
    """The test queries and their dense candidates, reranked identically by every engine."""

    data: BeirData
    candidates: Run

    @property
    def pairs(self) -> int:
        return sum(len(docs) for docs in self.candidates.values())

    def texts(self) -> tuple[list[str], list[str]]:
        """(queries, passages), one entry per candidate pair."""
        pairs = [(self.data.queries[q], self.data.passage_text(d)) for q, docs in self.candidates.items() for d in docs]
        return [q for q, _ in pairs], [p for _, p in pairs]

    def ndcg(self, scorer, batch_size: int) -> tuple[float, float]:
        """(NDCG@10 after reranking with ``scorer``, pairs scored per second)."""
        start = time.perf_counter()
        run = rerank(self.data, self.candidates, scorer, batch_size)
        seconds = time.perf_counter() - start
        value = ranking_metrics(self.data.qrels, run, [10])["NDCG"][NDCG_KEY]
        return float(value), self.pairs / seconds


def ranking_set(beir_dir: str | Path, embedding: EmbeddingParams, queries: int, top_k: int) -> RankingSet:
    """The first ``queries`` test queries (sorted ids; 0 = all) with their top-k dense candidates."""
    data = load_beir(beir_dir)
    if queries:
        keep = sorted(data.queries)[:queries]
        data.queries = {q: data.queries[q] for q in keep}
        data.qrels = {q: data.qrels[q] for q in keep}
    return RankingSet(data, dense_retrieval(data, embedding, top_k))


def judge(lossless: bool, parity: Parity, ndcg: float | None, torch_ndcg: float, params: ExportParams) -> dict:
    """The gate's figures and verdict for one variant; ``ndcg`` None: not measured (parity only)."""
    drop = None if ndcg is None else torch_ndcg - ndcg
    reasons = []
    if lossless and not parity.max_abs_diff <= params.parity_atol:
        reasons.append(f"max |score diff| {parity.max_abs_diff:.2e} > parity_atol {params.parity_atol:.0e}")
    if not lossless and not parity.spearman >= params.lossy_min_spearman:
        reasons.append(f"Spearman {parity.spearman:.3f} < lossy_min_spearman {params.lossy_min_spearman}")
    if drop is not None and not drop <= params.max_ndcg_drop:
        reasons.append(f"{NDCG_KEY} drop {drop:.4f} > max_ndcg_drop {params.max_ndcg_drop}")
    return {
        **parity.as_dict(),
        NDCG_KEY: None if ndcg is None else round(ndcg, 5),
        "ndcg_drop": None if drop is None else round(drop, 5),
        "accepted": not reasons,
        "rejected_because": "; ".join(reasons) or None,
    }
