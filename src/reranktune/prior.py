"""The first-stage prior: the embedding model's cosine, scaled, added to the cross-encoder's logit.

A cross-encoder initialised from a small bi-encoder and trained on a few thousand synthetic
queries ranks worse than the bi-encoder it reranks until it has seen far more data. Trained
on ``logit + weight x cosine`` it learns a correction to the first stage instead: a fresh
head reproduces the embedder's order, and training moves away from it only where the
synthetic labels say so. The embedding model is saved inside the reranker folder
(``prior/``), so eval, export and serve score exactly as training did.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from reranktune.models import best_device, resolve_model, warn_remote_code
from reranktune.params import EmbeddingParams

log = logging.getLogger(__name__)

PRIOR_FOLDER = "prior"


class Prior:
    """``weight x cosine(query, passage)`` under a sentence-transformers embedder with prefixes."""

    def __init__(self, model, weight: float, query_prefix: str, passage_prefix: str, batch_size: int = 64) -> None:
        self.model = model
        self.weight = weight
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.batch_size = batch_size

    @classmethod
    def load(cls, reranker_dir: str | Path, config: dict | None, device: str | None = None,
             trust_remote_code: bool = False) -> "Prior | None":
        """The prior described by ``reranktune.json``'s ``prior`` entry; None when it has none."""
        if not config:
            return None
        from sentence_transformers import SentenceTransformer

        folder = Path(reranker_dir) / config.get("folder", PRIOR_FOLDER)
        if not (folder / "config.json").is_file():
            from reranktune.io import InputError

            raise InputError(f"{folder}: the reranker's prior embedding model is missing (reranktune.json names it)")
        model = SentenceTransformer(str(folder), device=device or best_device(), trust_remote_code=trust_remote_code)
        model.max_seq_length = int(config["max_length"])
        return cls(model, float(config["weight"]), config["query_prefix"], config["passage_prefix"])

    def scores(self, queries: list[str], passages: list[str]) -> np.ndarray:
        """One prior score per pair; each distinct text is embedded once."""
        unique_queries = list(dict.fromkeys(queries))
        unique_passages = list(dict.fromkeys(passages))
        q = self._encode([self.query_prefix + t for t in unique_queries])
        p = self._encode([self.passage_prefix + t for t in unique_passages])
        q_row = {t: i for i, t in enumerate(unique_queries)}
        p_row = {t: i for i, t in enumerate(unique_passages)}
        rows_q = np.array([q_row[t] for t in queries], dtype=np.int64)
        rows_p = np.array([p_row[t] for t in passages], dtype=np.int64)
        return self.weight * np.einsum("ij,ij->i", q[rows_q], p[rows_p]).astype(np.float64)

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False).astype(np.float32)


def save_prior(embedding: EmbeddingParams, weight: float, reranker_dir: Path) -> dict:
    """Save the embedding model into ``reranker_dir/prior``; returns the ``reranktune.json`` entry."""
    from sentence_transformers import SentenceTransformer

    warn_remote_code(embedding.model, embedding.trust_remote_code)
    model = SentenceTransformer(resolve_model(embedding.model), device="cpu",
                                trust_remote_code=embedding.trust_remote_code)
    model.save(str(reranker_dir / PRIOR_FOLDER))
    log.info("saved the first-stage prior (%s, weight %s) in %s", embedding.model, weight, reranker_dir / PRIOR_FOLDER)
    return {"folder": PRIOR_FOLDER, "weight": weight, "source_model": embedding.model,
            "query_prefix": embedding.query_prefix, "passage_prefix": embedding.passage_prefix,
            "max_length": embedding.max_length}
