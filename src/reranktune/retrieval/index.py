"""Exact inner-product search over normalised embeddings, and reciprocal-rank fusion.

faiss when it is installed (a GPU index when faiss sees a GPU), otherwise a torch
matrix product + top-k on the best device: same results, no extra dependency on
machines that lack faiss.
"""

from __future__ import annotations

import numpy as np

try:
    import faiss
except ImportError:  # pragma: no cover - exercised on machines without faiss
    faiss = None


class DenseIndex:
    def __init__(self, passages: np.ndarray) -> None:
        passages = np.ascontiguousarray(passages, dtype=np.float32)
        self.size = passages.shape[0]
        if faiss is not None:
            index = faiss.IndexFlatIP(passages.shape[1])
            if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
                index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
            index.add(passages)
            self._faiss = index
        else:
            import torch

            self._faiss = None
            device = "cuda" if torch.cuda.is_available() else "cpu"
            self._passages = torch.from_numpy(passages).to(device)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores, row ids) per query, best first."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(k, self.size)
        if self._faiss is not None:
            return self._faiss.search(queries, k)
        import torch

        scores = torch.from_numpy(queries).to(self._passages.device) @ self._passages.T
        top = torch.topk(scores, k, dim=1)
        return top.values.cpu().numpy(), top.indices.cpu().numpy()


def reciprocal_rank_fusion(rankings: list[list], k: int = 60) -> dict:
    """RRF (Cormack et al. 2009): item -> sum of 1 / (k + rank) over best-first rankings.

    Best first; ties go to the smaller item, so every caller breaks them alike.
    """
    fused: dict = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    return dict(sorted(fused.items(), key=lambda entry: (-entry[1], entry[0])))
