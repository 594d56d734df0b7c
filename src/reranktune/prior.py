"""The first-stage prior: the embedding model's cosine, scaled, added to the cross-encoder's logit.

A cross-encoder initialised from a small bi-encoder and trained on a few thousand synthetic
queries ranks worse than the bi-encoder it reranks until it has seen far more data. Trained
on ``logit + weight x cosine`` it learns a correction to the first stage instead: a fresh
head reproduces the embedder's order, and training moves away from it only where the
synthetic labels say so. The embedding model is saved inside the reranker folder
(``prior/``), so eval, export and serve score exactly as training did; export adds an
ONNX graph of it (``prior/model.onnx``) that the ONNX engine uses instead of PyTorch.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from reranktune.io import InputError
from reranktune.models import best_device, resolve_model, warn_remote_code
from reranktune.params import EmbeddingParams

log = logging.getLogger(__name__)

PRIOR_FOLDER = "prior"
PRIOR_ONNX = "model.onnx"
ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class TorchEncoder:
    """L2-normalised sentence embeddings from a sentence-transformers model."""

    def __init__(self, model, batch_size: int = 64) -> None:
        self.model = model
        self.batch_size = batch_size

    def __call__(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False).astype(np.float32)


class OnnxEncoder:
    """The same embeddings from ``prior/model.onnx`` (see ``export_prior_onnx``), without PyTorch."""

    def __init__(self, session, tokenizer, max_length: int, batch_size: int = 64) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.input_names = [i.name for i in session.get_inputs()]

    def __call__(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))   # similar lengths share a batch
        vectors: list[np.ndarray | None] = [None] * len(texts)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            batch = self.tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="np")
            out = self.session.run(["embedding"], {n: batch[n].astype(np.int64) for n in self.input_names})[0]
            for i, vector in zip(rows, out):
                vectors[i] = vector
        return np.stack(vectors).astype(np.float32)


class Prior:
    """``weight x cosine(query, passage)`` under an embedding model with its query/passage prefixes."""

    def __init__(self, encoder, weight: float, query_prefix: str, passage_prefix: str) -> None:
        self.encoder = encoder
        self.weight = weight
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix

    @classmethod
    def load(cls, reranker_dir: str | Path, config: dict | None, device: str | None = None,
             trust_remote_code: bool = False, onnx: bool = False, threads: int = 0) -> "Prior | None":
        """The prior that ``reranktune.json``'s ``prior`` entry describes; None when it has none.

        ``onnx``: use ``prior/model.onnx`` where export wrote one (PyTorch otherwise).
        ``threads``: CPU threads for it (0 = the runtime's default).
        """
        if not config:
            return None
        folder = Path(reranker_dir) / config.get("folder", PRIOR_FOLDER)
        if not (folder / "config.json").is_file():
            raise InputError(f"{folder}: the reranker's prior embedding model is missing (reranktune.json names it)")
        if onnx and (folder / PRIOR_ONNX).is_file():
            import onnxruntime as ort
            from transformers import AutoTokenizer

            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
            providers = [p for p in ort.get_available_providers() if p != "AzureExecutionProvider"]
            session = ort.InferenceSession(str(folder / PRIOR_ONNX), options, providers=providers)
            encoder = OnnxEncoder(session, AutoTokenizer.from_pretrained(str(folder)), int(config["max_length"]))
        else:
            import torch
            from sentence_transformers import SentenceTransformer

            if threads:
                torch.set_num_threads(threads)
            model = SentenceTransformer(str(folder), device=device or best_device(),
                                        trust_remote_code=trust_remote_code)
            model.max_seq_length = int(config["max_length"])
            encoder = TorchEncoder(model)
        return cls(encoder, float(config["weight"]), config["query_prefix"], config["passage_prefix"])

    def scores(self, queries: list[str], passages: list[str]) -> np.ndarray:
        """One prior score per pair; each distinct text is embedded once."""
        unique_queries = list(dict.fromkeys(queries))
        unique_passages = list(dict.fromkeys(passages))
        q = self.encoder([self.query_prefix + t for t in unique_queries])
        p = self.encoder([self.passage_prefix + t for t in unique_passages])
        q_row = {t: i for i, t in enumerate(unique_queries)}
        p_row = {t: i for i, t in enumerate(unique_passages)}
        rows_q = np.array([q_row[t] for t in queries], dtype=np.int64)
        rows_p = np.array([p_row[t] for t in passages], dtype=np.int64)
        return self.weight * np.einsum("ij,ij->i", q[rows_q], p[rows_p]).astype(np.float64)


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


def export_prior_onnx(prior: Prior, path: Path, opset: int) -> None:
    """Write the prior's PyTorch encoder as one ONNX graph: token ids in, normalised embedding out."""
    import torch

    model = prior.encoder.model   # a sentence-transformers model: Transformer, Pooling[, Normalize]
    sample = model.tokenizer(["a b", "c d e"], padding=True, return_tensors="pt")
    names = [n for n in ENCODER_INPUTS if n in sample]

    class _Embedding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            embedding = self.model(dict(zip(names, tensors)))["sentence_embedding"]
            return torch.nn.functional.normalize(embedding, dim=-1)

    transformer = model[0].auto_model
    previous = transformer.config._attn_implementation
    transformer.set_attn_implementation("eager")   # traces to ops onnxruntime fuses, as for the reranker
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")   # TracerWarnings about shape-dependent branches
            torch.onnx.export(
                _Embedding().eval(), tuple(sample[n] for n in names), str(path), input_names=names,
                output_names=["embedding"], dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names},
                                                          "embedding": {0: "batch"}},
                opset_version=opset, dynamo=False,
            )
    finally:
        transformer.set_attn_implementation(previous)
