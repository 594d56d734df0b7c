"""Dense text embeddings: the first stage's, prep's mining and the reranker's prior all use this
class.

Two caches for two uses: a whole batch of texts (a corpus, a query set) is saved to disk by
content hash, so a rerun of prep or eval reuses it; ``CachedEncoder`` keeps single texts in
memory, for the prior in a server that sees the same passages again and again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from reranktune.io import atomic_path
from reranktune.models import best_device, check_tokenizer, loading, resolve_model, warn_remote_code
from reranktune.params import EmbeddingParams

log = logging.getLogger(__name__)


def model_prefixes(model, params: EmbeddingParams) -> tuple[str, str]:
    """(query, passage) prefixes: the params' where set, else the prompts the model was trained
    with."""
    prompts = getattr(model, "prompts", None) or {}
    query = params.query_prefix if params.query_prefix is not None else prompts.get("query", "")
    passage = (
        params.passage_prefix
        if params.passage_prefix is not None
        else prompts.get("passage", prompts.get("document", ""))
    )
    return query, passage


def cache_dir() -> Path:
    return Path(os.environ.get("RERANKTUNE_CACHE_DIR", ".cache/reranktune")) / "embeddings"


def load_sentence_transformer(
    name: str,
    device: str | None = None,
    trust_remote_code: bool = False,
    what: str = "embedding model",
):
    """A sentence-transformers model from a hub id or folder, with a clear error when it does not
    load."""
    from sentence_transformers import SentenceTransformer

    warn_remote_code(name, trust_remote_code)
    with loading(name, what):
        model = SentenceTransformer(
            resolve_model(name), device=device or best_device(), trust_remote_code=trust_remote_code
        )
    check_tokenizer(name, model.tokenizer)
    return model


class Embedder:
    """A sentence-transformers model with the query/passage prefixes of ``params``.

    ``bf16``: autocast to bf16 (the served prior, where export measured it fastest and the gate
    accepted it); fp32 otherwise, as prep, eval and training score.
    """

    def __init__(
        self,
        params: EmbeddingParams,
        device: str | None = None,
        what: str = "embedding model",
        bf16: bool = False,
    ) -> None:
        self.params = params
        self.model = load_sentence_transformer(params.model, device, params.trust_remote_code, what)
        self.max_length = params.max_length
        self.query_prefix, self.passage_prefix = model_prefixes(self.model, params)
        self.bf16 = bf16
        self.batch_size = params.batch_size

    @property
    def max_length(self) -> int:
        """Tokens read per text: the model's ``max_seq_length``, as the ONNX encoder's attribute."""
        return self.model.max_seq_length

    @max_length.setter
    def max_length(self, tokens: int) -> None:
        self.model.max_seq_length = tokens

    def __call__(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """L2-normalised float32 embeddings of ``texts`` as given (no prefix, no cache)."""
        import torch

        with torch.autocast(self.model.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=progress,
            ).astype(np.float32)

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
        vectors = self([prefix + t for t in texts], progress=True)
        with atomic_path(path, suffix=".npy") as tmp:
            np.save(tmp, vectors)
        return vectors

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self.encode(texts, self.query_prefix, "queries")

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        return self.encode(texts, self.passage_prefix, "passages")


class CachedEncoder:
    """An encoder (any ``texts -> embeddings`` callable) that remembers its last ``max_texts``
    texts.

    Serving a prior means embedding every passage of every request, which costs more than the
    cross-encoder (the embedder reads 256 tokens, the cross-encoder 128). A reranker sees the
    same passages again and again (its corpus is finite), so those are embedded once; a corpus
    known in advance can be embedded before the first request and kept for good (``pin``).
    """

    def __init__(
        self, encoder, max_texts: int = 10_000
    ) -> None:  # about 15 MB at MiniLM's 384 dimensions
        self.encoder = encoder
        self.max_texts = max_texts
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._pinned: dict[str, np.ndarray] = {}  # never evicted, outside max_texts
        self._lock = threading.Lock()  # serve scores from more than one thread

    def pin(self, texts: list[str], chunk: int = 1024) -> int:
        """Embed ``texts`` now and keep them for as long as this object lives; returns how many
        were new. Logs its progress: a large corpus takes minutes."""
        new = [t for t in dict.fromkeys(texts) if t not in self._pinned]
        for start in range(0, len(new), chunk):
            part = new[start : start + chunk]
            vectors = dict(zip(part, self.encoder(part)))
            with self._lock:
                self._pinned.update(vectors)
            log.info("embedded %d of %d passages ahead of requests", start + len(part), len(new))
        return len(new)

    def __call__(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            found = {t: self._pinned[t] for t in dict.fromkeys(texts) if t in self._pinned}
            for text in dict.fromkeys(texts):
                if text not in found and text in self._vectors:
                    found[text] = self._vectors[text]
                    self._vectors.move_to_end(text)
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            fresh = dict(zip(missing, self.encoder(missing)))
            found.update(fresh)
            with self._lock:
                self._vectors.update(fresh)
                while len(self._vectors) > self.max_texts:
                    self._vectors.popitem(last=False)
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        return np.stack([found[t] for t in texts])
