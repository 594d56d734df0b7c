"""Exact inner-product search over normalised embeddings (faiss; GPU index when available)."""
from __future__ import annotations

import faiss
import numpy as np


def _gpu_available() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class DenseIndex:
    def __init__(self, passages: np.ndarray) -> None:
        index = faiss.IndexFlatIP(passages.shape[1])
        if _gpu_available():
            index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
        index.add(np.ascontiguousarray(passages, dtype=np.float32))
        self.index = index
        self.size = passages.shape[0]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores, row ids) per query, best first; ids are -1 past the corpus size."""
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, self.size))
