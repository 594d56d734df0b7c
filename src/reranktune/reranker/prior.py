"""The first-stage prior: the evidence a first stage ranks by, computed per pair and saved with
the model.

A cross-encoder initialised from a small bi-encoder and trained on a few thousand synthetic
queries ranks worse than the first stage it reranks until it has seen far more data.
Trained on ``logit + prior`` it learns a correction to the first stage instead: a fresh
head reproduces the prior's order, and training moves away from it only where the
synthetic labels say so. The prior carries both kinds of first-stage evidence, so the
correction is to the strongest first stage rather than to one of its halves:

- dense: the cosine of the first stage's embedding model (saved in ``prior/``; export adds
  an ONNX graph of it, ``prior/model.onnx``, that ONNX variants use instead of PyTorch, and
  the bf16 variant runs it in PyTorch bf16);
- lexical: BM25 with the training corpus's statistics (``prior/lexical.json``), so that a
  request with no corpus (NIM's ``/v1/ranking``) still gets it.

How the two are weighed and added to the logit is ``scoring.ScoreRecipe``'s business.

Its whole life is here: ``save_prior`` (finetune saves it from the first stage's settings),
``Prior.training_evidence`` (the training file's scores, checked), ``fit_scale``,
``Prior.load`` and ``Prior.scores`` (eval, the gate, serve), ``export_prior_onnx`` (export).
"""

from __future__ import annotations

import logging
import random
import warnings
from pathlib import Path

import numpy as np

from reranktune.io import InputError
from reranktune.models import best_device, on_cpu
from reranktune.params import EmbeddingParams, PriorParams, RetrievalParams
from reranktune.reranker.config import DensePriorConfig, LexicalPriorConfig, PriorConfig
from reranktune.reranker.onnx import onnx_session
from reranktune.reranker.scoring import ScoreRecipe, positive_ranks
from reranktune.retrieval.bm25 import LexicalScorer
from reranktune.retrieval.embedder import (
    CachedEncoder,
    Embedder,
    load_sentence_transformer,
    model_prefixes,
)

log = logging.getLogger(__name__)

PRIOR_FOLDER = "prior"
PRIOR_ONNX = "model.onnx"
CHECK_PAIRS = 32  # training pairs whose file score is checked against the prior's cosine
CHECK_TOLERANCE = 0.02  # cosine units; bf16 vs fp32 and batch padding stay far below this
ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Texts per encoder pass on a CPU: a request's passages differ in length, and a small batch pads
# fewer of them to its longest (bench/prior_cost.py: on 2 cores, a third more passages/s than
# 64). A GPU keeps the embedding params' larger batch.
CPU_BATCH = 8


class OnnxEncoder:
    """The same embeddings from ``prior/model.onnx`` (see ``export_prior_onnx``), without
    PyTorch."""

    def __init__(self, session, tokenizer, max_length: int, batch_size: int = 64) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.input_names = [i.name for i in session.get_inputs()]

    def __call__(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        order = sorted(
            range(len(texts)), key=lambda i: len(texts[i])
        )  # similar lengths share a batch
        vectors: list[np.ndarray | None] = [None] * len(texts)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            batch = self.tokenizer(
                [texts[i] for i in rows],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="np",
            )
            out = self.session.run(
                ["embedding"], {n: batch[n].astype(np.int64) for n in self.input_names}
            )[0]
            for i, vector in zip(rows, out):
                vectors[i] = vector
        return np.stack(vectors).astype(np.float32)


class Prior:
    """The prior's evidence for any pair: the dense cosine and the normalised BM25, unweighted."""

    def __init__(
        self, config: PriorConfig, encoder=None, lexical: LexicalScorer | None = None
    ) -> None:
        self.config = config
        self.encoder = encoder
        self.embed = CachedEncoder(encoder) if encoder is not None else None
        self.lexical = lexical
        self.recipe = ScoreRecipe(
            config.dense.weight if config.dense else 0.0,
            config.lexical.weight if config.lexical else 0.0,
        )

    @classmethod
    def load(
        cls,
        reranker_dir: str | Path,
        config: PriorConfig | None,
        device: str | None = None,
        trust_remote_code: bool = False,
        onnx: bool = False,
        threads: int = 0,
    ) -> Prior | None:
        """The prior ``config`` describes; None when the reranker has none.

        ``onnx``: the dense encoder's ONNX graph where export wrote one (PyTorch otherwise).
        ``threads``: CPU threads for it (0 = the runtime's default).
        """
        if config is None:
            return None
        folder = Path(reranker_dir) / config.folder
        encoder = lexical = None
        if config.dense:
            if not (folder / "config.json").is_file():
                raise InputError(
                    f"{folder}: the reranker's prior embedding model is missing "
                    "(reranktune.json names it)"
                )
            encoder = _load_encoder(folder, config.dense, device, trust_remote_code, onnx, threads)
        if config.lexical:
            if not (folder / config.lexical.file).is_file():
                raise InputError(
                    f"{folder / config.lexical.file}: the reranker's BM25 statistics are missing "
                    "(reranktune.json names them)"
                )
            lexical = LexicalScorer.load(folder / config.lexical.file)
        return cls(config, encoder, lexical)

    def scaled(self, factor: float) -> Prior | None:
        """The same evidence with both weights times ``factor`` (their ratio, so the prior's order,
        stays); None at 0."""
        if not factor:
            return None
        config = self.config.model_copy(
            update={
                part: getattr(self.config, part).model_copy(
                    update={"weight": getattr(self.config, part).weight * factor}
                )
                for part in ("dense", "lexical")
                if getattr(self.config, part)
            }
        )
        return Prior(config, self.encoder, self.lexical)

    def cosines(self, queries: list[str], passages: list[str]) -> np.ndarray:
        """The dense cosine per pair (zeros without a dense part); each distinct text is embedded
        once."""
        if self.encoder is None:
            return np.zeros(len(queries))
        dense = self.config.dense
        unique_queries = list(dict.fromkeys(queries))
        unique_passages = list(dict.fromkeys(passages))
        q = self.embed([dense.query_prefix + t for t in unique_queries])
        p = self.embed([dense.passage_prefix + t for t in unique_passages])
        q_row = {t: i for i, t in enumerate(unique_queries)}
        p_row = {t: i for i, t in enumerate(unique_passages)}
        rows_q = np.array([q_row[t] for t in queries], dtype=np.int64)
        rows_p = np.array([p_row[t] for t in passages], dtype=np.int64)
        return np.einsum("ij,ij->i", q[rows_q], p[rows_p]).astype(np.float64)

    def pin_passages(self, passages: list[str]) -> int:
        """Embed ``passages`` before they are asked for (serve's ``--corpus``) and keep them;
        returns how many were new (0 without a dense part: the lexical part needs no embedding)."""
        if self.embed is None:
            return 0
        return self.embed.pin([self.config.dense.passage_prefix + p for p in passages])

    def lexical_scores(self, queries: list[str], passages: list[str]) -> np.ndarray:
        """The normalised BM25 per pair (zeros without a lexical part)."""
        return self.lexical.scores(queries, passages) if self.lexical else np.zeros(len(queries))

    def scores(self, queries: list[str], passages: list[str]) -> np.ndarray:
        """The weighted prior per pair, as the model was trained with it."""
        return self.recipe.prior(
            self.cosines(queries, passages), self.lexical_scores(queries, passages)
        )

    def training_evidence(
        self,
        queries: list[str],
        passages: list[str],
        file_scores: list[float] | None,
        clozed: list[int],
        source: Path,
        seed: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per training pair, (cosine, normalised BM25) unweighted.

        The cosines are the training file's ``score`` values (prep's embedder computed them; a
        sample is checked against this prior's own) except at the ``clozed`` rows, whose passage
        lost a sentence after scoring, where the embedder recomputes them.
        """
        cosine = np.zeros(len(queries))
        if self.encoder is not None:
            self.check_file_scores(queries, passages, file_scores, set(clozed), source, seed)
            cosine = np.array(file_scores, dtype=np.float64)
            if clozed:
                cosine[clozed] = self.cosines(
                    [queries[i] for i in clozed], [passages[i] for i in clozed]
                )
        return cosine, self.lexical_scores(queries, passages)

    def check_file_scores(
        self,
        queries: list[str],
        passages: list[str],
        file_scores: list[float],
        skip: set[int],
        source: Path,
        seed: int,
    ) -> None:
        """Stop when a training file's scores are not this prior's cosines (another model scored
        it)."""
        rows = [i for i in range(len(queries)) if i not in skip]
        rows = random.Random(seed).sample(rows, min(CHECK_PAIRS, len(rows)))
        own = self.cosines([queries[i] for i in rows], [passages[i] for i in rows])
        diff = (
            float(np.max(np.abs(own - np.array([file_scores[i] for i in rows])))) if rows else 0.0
        )
        if diff > CHECK_TOLERANCE:
            raise InputError(
                f"{source}: its documents' 'score' values are not "
                f"{self.config.dense.source_model}'s cosines "
                f"(max difference {diff:.3f} over {len(rows)} sampled pairs, "
                f"tolerance {CHECK_TOLERANCE}): "
                "the file was scored by another model or other prefixes than retrieval.embedding. "
                "Rescore it with `reranktune prep`, set retrieval.embedding to the model that "
                "scored it, or set finetune.prior.dense_weight to 0"
            )


def _batch_size(cpu: bool) -> int:
    return CPU_BATCH if cpu else EmbeddingParams().batch_size


def _load_encoder(
    folder: Path,
    dense: DensePriorConfig,
    device: str | None,
    trust_remote_code: bool,
    onnx: bool,
    threads: int,
):
    if onnx and dense.onnx_file and (folder / dense.onnx_file).is_file():
        from transformers import AutoTokenizer

        session = onnx_session(folder / dense.onnx_file, threads=threads)
        cpu = session.get_providers()[0] == "CPUExecutionProvider"
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        return OnnxEncoder(session, tokenizer, dense.max_length, _batch_size(cpu))
    import torch

    if threads:
        torch.set_num_threads(threads)
    device = device or best_device()
    # the prefixes are added per text by Prior.cosines; the embedder adds none
    params = EmbeddingParams(
        model=str(folder),
        query_prefix="",
        passage_prefix="",
        max_length=dense.max_length,
        trust_remote_code=trust_remote_code,
        batch_size=_batch_size(torch.device(device).type == "cpu"),
    )
    return Embedder(params, device, "prior embedding model", bf16=dense.bf16)


def save_prior(
    params: PriorParams, retrieval: RetrievalParams, corpus: list[str], reranker_dir: Path
) -> PriorConfig:
    """Save what the prior needs into ``reranker_dir/prior``; returns its ``reranktune.json`` entry.

    ``retrieval`` is the first stage (its embedder scored the training file); ``corpus`` the
    passages whose statistics the lexical part keeps.
    """
    embedding = retrieval.embedding
    folder = reranker_dir / PRIOR_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    dense = lexical = None
    if params.dense_weight:
        model = load_sentence_transformer(embedding.model, "cpu", embedding.trust_remote_code)
        model.save(str(folder))
        query_prefix, passage_prefix = model_prefixes(model, embedding)
        dense = DensePriorConfig(
            weight=params.dense_weight,
            source_model=embedding.model,
            query_prefix=query_prefix,
            passage_prefix=passage_prefix,
            max_length=embedding.max_length,
        )
    if params.lexical_weight:
        lexical = LexicalPriorConfig(weight=params.lexical_weight)
        LexicalScorer.fit(corpus, retrieval.bm25_language).save(folder / lexical.file)
    log.info(
        "saved the first-stage prior in %s (dense %s x %s, lexical BM25 x %s over %d passages)",
        folder,
        embedding.model,
        params.dense_weight,
        params.lexical_weight,
        len(corpus),
    )
    return PriorConfig(folder=PRIOR_FOLDER, dense=dense, lexical=lexical)


SCALE_GRID = (0.0, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def fit_scale(logits: np.ndarray, prior: np.ndarray) -> tuple[float, float]:
    """The factor from ``SCALE_GRID`` under which logit + factor x prior ranks held-out groups best.

    Each row of the ``groups x passages`` arrays is one validation query, its positive first.
    A cross-encoder trained without the prior has a scale of its own, so how much of the first
    stage's evidence to add to it is measured rather than assumed. Ties go to the lighter
    prior. Returns (factor, validation MRR).
    """
    best_mrr, best = -1.0, 0.0
    for scale in SCALE_GRID:
        mrr = float(np.mean(1.0 / positive_ranks(ScoreRecipe.total(logits, scale * prior))))
        if mrr > best_mrr + 1e-12:
            best_mrr, best = mrr, scale
    return best, best_mrr


def export_prior_onnx(prior: Prior, path: Path, opset: int) -> None:
    """Write the prior's PyTorch encoder as one ONNX graph: token ids in, normalised embedding
    out."""
    import torch

    model = on_cpu(
        prior.encoder.model
    )  # a sentence-transformers model: Transformer, Pooling[, Normalize]
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
    transformer.set_attn_implementation(
        "eager"
    )  # traces to ops onnxruntime fuses, as for the reranker
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarnings about shape-dependent branches
            torch.onnx.export(
                _Embedding().eval(),
                tuple(sample[n] for n in names),
                str(path),
                input_names=names,
                output_names=["embedding"],
                dynamic_axes={
                    **{n: {0: "batch", 1: "sequence"} for n in names},
                    "embedding": {0: "batch"},
                },
                opset_version=opset,
                dynamo=False,
            )
    finally:
        transformer.set_attn_implementation(previous)
