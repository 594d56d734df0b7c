"""Hard-negative mining with a positive-aware false-negative guard (spec, stage 1 step 4).

Candidates come from an exact inner-product search over the chunks that may serve
as negatives (never a test document's chunk), or, with ``lexical_rows``, from the
reciprocal-rank fusion of that search and BM25's ranking: the hybrid first stage the
reranker is evaluated on, whose mistakes are the ones worth training against. Every
candidate is judged by its dense cosine all the same. A candidate scoring above the guard
(``margin`` x the lowest positive score for ``perc``, lowest positive - ``margin``
for ``abs``) is treated as a likely unlabelled positive and dropped. Queries left
short of negatives are padded with random chunks under the guard, or dropped.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from reranktune.retrieval.index import DenseIndex, reciprocal_rank_fusion


@dataclass
class MinedNegatives:
    negatives: list[list[tuple[str, float]]]  # per query: (corpus id, score), best first
    counts: Counter = field(default_factory=Counter)
    negative_scores: list[float] = field(default_factory=list)
    positive_scores: list[float] = field(default_factory=list)


def guard_threshold(min_positive: float, margin: float, margin_type: str) -> float:
    return min_positive * margin if margin_type == "perc" else min_positive - margin


def mine_hard_negatives(
    query_vectors: np.ndarray,
    positives: list[list[str]],
    pool_ids: list[str],
    pool_vectors: np.ndarray,
    positive_vectors: dict[str, np.ndarray],
    n_negatives: int,
    margin: float,
    margin_type: str,
    candidates: int,
    pad: str,
    seed: int,
    sample_from: int = 0,
    lexical_rows: list[list[int]] | None = None,
    rrf_k: int = 60,
) -> MinedNegatives:
    """Mine ``n_negatives`` per query from ``pool_ids``; a query's slot is ``[]`` if dropped.

    ``sample_from`` > ``n_negatives`` draws them at random from the best ``sample_from``
    guarded candidates instead of taking the very top ones (less likely to be unlabelled
    positives, more varied across epochs of similar queries). ``lexical_rows``: per query,
    pool rows in BM25 order, fused with the dense order (RRF, ``rrf_k``).
    """
    wanted = max(n_negatives, sample_from)
    rng = random.Random(seed)
    index = DenseIndex(pool_vectors)
    _, rows = index.search(
        query_vectors, max(candidates, sample_from) + max(len(p) for p in positives)
    )
    result = MinedNegatives(negatives=[])
    for q, pos_ids in enumerate(positives):
        pos_scores = [float(query_vectors[q] @ positive_vectors[p]) for p in pos_ids]
        result.positive_scores.extend(pos_scores)
        limit = guard_threshold(min(pos_scores), margin, margin_type)
        banned = set(pos_ids)
        chosen: list[tuple[str, float]] = []
        order = [int(r) for r in rows[q] if r >= 0]
        if lexical_rows is not None:
            order = list(reciprocal_rank_fusion([order, lexical_rows[q]], rrf_k))
        for row in order:
            if len(chosen) == wanted:
                break
            cid = pool_ids[row]
            score = float(query_vectors[q] @ pool_vectors[row])
            if cid in banned:
                continue
            if score > limit:
                result.counts["candidates_dropped_by_guard"] += 1
                continue
            chosen.append((cid, float(score)))
        if len(chosen) > n_negatives:
            chosen = sorted(rng.sample(chosen, n_negatives), key=lambda c: -c[1])
        if len(chosen) < n_negatives:
            result.counts["queries_short_of_negatives"] += 1
            if pad == "drop":
                result.negatives.append([])
                continue
            padding = _random_negatives(
                rng,
                query_vectors[q],
                pool_ids,
                pool_vectors,
                banned | {c for c, _ in chosen},
                limit,
                n_negatives - len(chosen),
            )
            result.counts["random_negatives_added"] += len(padding)
            chosen += padding
        result.negative_scores.extend(s for _, s in chosen)
        result.negatives.append(chosen)
    return result


def _random_negatives(
    rng: random.Random,
    query_vector: np.ndarray,
    pool_ids: list[str],
    pool_vectors: np.ndarray,
    exclude: set[str],
    limit: float,
    needed: int,
) -> list[tuple[str, float]]:
    order = list(range(len(pool_ids)))
    rng.shuffle(order)
    picked: list[tuple[str, float]] = []
    for row in order:
        if len(picked) == needed:
            break
        cid = pool_ids[row]
        score = float(query_vector @ pool_vectors[row])
        if cid not in exclude and score <= limit:
            picked.append((cid, score))
    return picked
