"""The accuracy gate: a variant is offered to serve only if it ranks the test set like PyTorch.

Two checks per variant: its scores against PyTorch's on fixed real pairs (max |diff| for
lossless variants, Spearman for lossy ones), and NDCG@10 after reranking the test
queries' top-k candidates from eval's first stage, which must not drop more than
``max_ndcg_drop``. Every variant scores through ``Reranker`` with its session as the
backend, so the gate measures exactly what serve will compute.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from reranktune.beir_data import BeirData, load_beir
from reranktune.export.parity import Parity
from reranktune.ir_metrics import Run, ranking_metrics
from reranktune.params import ExportParams
from reranktune.reranker.model import Reranker
from reranktune.reranker.prior import Prior
from reranktune.retrieval.first_stage import FirstStageSettings, first_stage_runs

log = logging.getLogger(__name__)

NDCG_KEY = "NDCG@10"


@dataclass
class RankingSet:
    """The test queries and their first-stage candidates, reranked identically by every engine."""

    data: BeirData
    candidates: Run
    first_stage: str

    @property
    def pairs(self) -> int:
        return sum(len(docs) for docs in self.candidates.values())

    def texts(self) -> tuple[list[str], list[str]]:
        """(queries, passages), one entry per candidate pair."""
        pairs = [
            (self.data.queries[q], self.data.passage_text(d))
            for q, docs in self.candidates.items()
            for d in docs
        ]
        return [q for q, _ in pairs], [p for _, p in pairs]

    def ndcg(self, reranker: Reranker, batch_size: int) -> tuple[float, float]:
        """(NDCG@10 after reranking with ``reranker``, pairs scored per second)."""
        start = time.perf_counter()
        run = reranker.rerank(self.data, self.candidates, batch_size)
        seconds = time.perf_counter() - start
        value = ranking_metrics(self.data.qrels, run, [10])["NDCG"][NDCG_KEY]
        return float(value), self.pairs / seconds

    def served_speed(self, reranker: Reranker, batch_size: int, pairs: int) -> float:
        """Pairs scored per second, logit and prior, on the first ``pairs`` of the gate's pairs.

        The prior's embedding cache is emptied first: serve's cache makes recurring passages
        cheap, and the variants are compared on the cost of new ones.
        """
        queries, passages = self.texts()
        queries, passages = queries[:pairs], passages[:pairs]
        prior = reranker.prior
        if prior is not None:  # the same encoder behind a new, empty cache
            reranker = reranker.with_backend(
                reranker.backend, Prior(prior.config, prior.encoder, prior.lexical)
            )
        start = time.perf_counter()
        reranker.score(queries, passages, batch_size)
        return len(queries) / (time.perf_counter() - start)


def ranking_set(
    beir_dir: str | Path, first_stage: FirstStageSettings, queries: int, top_k: int
) -> RankingSet:
    """The first ``queries`` test queries (sorted ids; 0 = all) with their top-k first-stage
    candidates."""
    data = load_beir(beir_dir)
    if queries:
        keep = sorted(data.queries)[:queries]
        data.queries = {q: data.queries[q] for q in keep}
        data.qrels = {q: data.qrels[q] for q in keep}
    name = first_stage.name
    return RankingSet(
        data, first_stage_runs(data, [name], first_stage.with_top_k(top_k))[name], name
    )


def judge(
    lossless: bool, parity: Parity, ndcg: float | None, torch_ndcg: float, params: ExportParams
) -> dict:
    """The gate's figures and verdict for one variant; ``ndcg`` None: not measured (parity only)."""
    drop = None if ndcg is None else torch_ndcg - ndcg
    reasons = []
    if lossless and not parity.max_abs_diff <= params.parity_atol:
        reasons.append(
            f"max |score diff| {parity.max_abs_diff:.2e} > parity_atol {params.parity_atol:.0e}"
        )
    if not lossless and not parity.spearman >= params.lossy_min_spearman:
        reasons.append(
            f"Spearman {parity.spearman:.3f} < lossy_min_spearman {params.lossy_min_spearman}"
        )
    if drop is not None and not drop <= params.max_ndcg_drop:
        reasons.append(f"{NDCG_KEY} drop {drop:.4f} > max_ndcg_drop {params.max_ndcg_drop}")
    return {
        **parity.as_dict(),
        NDCG_KEY: None if ndcg is None else round(ndcg, 5),
        "ndcg_drop": None if drop is None else round(drop, 5),
        "accepted": not reasons,
        "rejected_because": "; ".join(reasons) or None,
    }
