"""Dense text embeddings for mining and first-stage retrieval, cached by content hash."""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from reranktune.io import atomic_path
from reranktune.models import best_device, check_tokenizer, loading, resolve_model, warn_remote_code
from reranktune.params import EmbeddingParams

log = logging.getLogger(__name__)


def model_prefixes(model, params: EmbeddingParams) -> tuple[str, str]:
    """(query, passage) prefixes: the params' where set, else the prompts the model was trained with."""
    prompts = getattr(model, "prompts", None) or {}
    query = params.query_prefix if params.query_prefix is not None else prompts.get("query", "")
    passage = params.passage_prefix if params.passage_prefix is not None else \
        prompts.get("passage", prompts.get("document", ""))
    return query, passage


def cache_dir() -> Path:
    return Path(os.environ.get("RERANKTUNE_CACHE_DIR", ".cache/reranktune")) / "embeddings"


class Embedder:
    """A sentence-transformers model with the query/passage prefixes of ``params``."""

    def __init__(self, params: EmbeddingParams, device: str | None = None) -> None:
        from sentence_transformers import SentenceTransformer

        self.params = params
        self.path = resolve_model(params.model)
        warn_remote_code(params.model, params.trust_remote_code)
        with loading(params.model, "embedding model"):
            self.model = SentenceTransformer(
                self.path, device=device or best_device(), trust_remote_code=params.trust_remote_code
            )
        check_tokenizer(params.model, self.model.tokenizer)
        self.model.max_seq_length = params.max_length
        self.query_prefix, self.passage_prefix = model_prefixes(self.model, params)

    def _key(self, prefix: str, texts: list[str]) -> str:
        digest = hashlib.sha256()
        for part in (self.params.model, str(self.params.max_length), prefix):
            digest.update(part.encode())
            digest.update(b"\0")
        for text in texts:
            digest.update(text.encode())
            digest.update(b"\0")
        return digest.hexdigest()[:32]

    def encode(self, texts: list[str], prefix: str, what: str = "texts") -> np.ndarray:
        """L2-normalised float32 embeddings; reused from the cache when texts are unchanged."""
        path = cache_dir() / f"{self._key(prefix, texts)}.npy"
        if path.exists():
            log.info("embedding cache hit: %d %s (%s)", len(texts), what, path.name)
            return np.load(path)
        vectors = self.model.encode(
            [prefix + t for t in texts],
            batch_size=self.params.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=True,
        ).astype(np.float32)
        with atomic_path(path, suffix=".npy") as tmp:
            np.save(tmp, vectors)
        return vectors

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self.encode(texts, self.query_prefix, "queries")

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        return self.encode(texts, self.passage_prefix, "passages")
