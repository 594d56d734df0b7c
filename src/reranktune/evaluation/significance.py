"""Paired randomisation test on per-query metrics: is system B really better than A?

Under the null hypothesis the two systems are exchangeable on every query, so each
per-query difference keeps or flips its sign with probability 1/2. The p-value is the
share of sign assignments whose mean difference is at least as extreme as observed
(two-sided), counting the observed one (Smucker et al., CIKM 2007).
"""
from __future__ import annotations

import numpy as np


def paired_randomisation_test(
    a: dict[str, float], b: dict[str, float], n_permutations: int = 10_000, seed: int = 0
) -> dict:
    """Two-sided sign-flip test on ``b - a`` over the queries both systems scored."""
    qids = sorted(set(a) & set(b))
    if not qids:
        raise ValueError("no query is scored by both systems")
    diff = np.array([b[q] - a[q] for q in qids], dtype=np.float64)
    observed = diff.mean()
    rng = np.random.default_rng(seed)
    signs = rng.choice((-1.0, 1.0), size=(n_permutations, diff.size))
    null = (signs * diff).mean(axis=1)
    extreme = int(np.sum(np.abs(null) >= abs(observed) - 1e-12))
    return {
        "queries": int(diff.size),
        "mean_difference": float(observed),
        "wins": int(np.sum(diff > 0)),
        "losses": int(np.sum(diff < 0)),
        "ties": int(np.sum(diff == 0)),
        "p_value": (extreme + 1) / (n_permutations + 1),
        "permutations": n_permutations,
    }
