"""Paired randomisation test: is system A's per-query score better than B's by chance?"""

from __future__ import annotations

import numpy as np
from scipy import stats


def paired_randomization_test(
    a: list[float] | np.ndarray,
    b: list[float] | np.ndarray,
    n_resamples: int = 10000,
    seed: int = 42,
) -> float:
    """Two-sided p-value for mean(a - b) == 0 by flipping the sign of each query's difference.

    This is the sign-flip (Fisher) randomisation test IR papers use: under the null
    hypothesis each query's two scores are exchangeable. scipy enumerates every
    flip exactly when there are fewer than ``n_resamples`` of them.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim != 1 or a.shape != b.shape or len(a) == 0:
        raise ValueError(
            f"paired test needs two equally long, non-empty score lists (got {a.shape}, {b.shape})"
        )
    diff = a - b
    result = stats.permutation_test(
        (diff,),
        np.mean,
        permutation_type="samples",
        alternative="two-sided",
        n_resamples=n_resamples,
        random_state=np.random.default_rng(seed),
    )
    return float(result.pvalue)


def compare_systems(
    per_query: dict[str, dict[str, dict[str, float]]],
    pairs: list[tuple[str, str]],
    measure: str,
    n_resamples: int = 10000,
    seed: int = 42,
) -> dict[str, dict[str, float]]:
    """``{"A_vs_B": {"mean_A", "mean_B", "delta", "p_value", "queries"}}`` over shared queries."""
    out = {}
    for a, b in pairs:
        qids = sorted(set(per_query[a]) & set(per_query[b]))
        sa = [per_query[a][q][measure] for q in qids]
        sb = [per_query[b][q][measure] for q in qids]
        out[f"{a}_vs_{b}"] = {
            f"mean_{a}": round(float(np.mean(sa)), 5) if qids else 0.0,
            f"mean_{b}": round(float(np.mean(sb)), 5) if qids else 0.0,
            "delta": round(float(np.mean(sa) - np.mean(sb)), 5) if qids else 0.0,
            "p_value": round(paired_randomization_test(sa, sb, n_resamples, seed), 5)
            if qids
            else 1.0,
            "queries": len(qids),
        }
    return out
