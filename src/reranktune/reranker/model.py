"""A reranker folder loaded for scoring, on the backend the caller picks.

Like sentence-transformers' ``CrossEncoder``, one class owns the scoring recipe and picks
the backend: ``Reranker.from_pretrained(folder)`` scores with PyTorch,
``backend="onnx"`` with the folder's ONNX graph, ``backend="export"`` with whichever variant
export measured fastest (an ONNX graph, or the PyTorch weights in bf16), and the export
gate plugs in any backend with ``Reranker.with_backend``. Whatever the backend, pairs are
formatted and cut by the same ``PairEncoder`` and scores combined by the same
``ScoreRecipe`` (scoring.py), with the prompt, maximum length and prior that
``reranktune.json`` saved beside the weights.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

from reranktune.beir_data import BeirData
from reranktune.ir_metrics import Run
from reranktune.models import (
    best_device,
    bf16_enabled,
    check_tokenizer,
    loads,
    resolve_model,
    warn_remote_code,
)
from reranktune.reranker.config import OnnxConfig, RerankerConfig
from reranktune.reranker.onnx import onnx_session
from reranktune.reranker.prior import Prior
from reranktune.reranker.scoring import (
    Encoded,
    LogitBackend,
    PairEncoder,
    ScoreRecipe,
    SessionBackend,
    TorchBackend,
)

log = logging.getLogger(__name__)

Backend = Literal["torch", "onnx", "export"]
SCORE_CHUNK_BATCHES = 8  # Reranker.score tokenizes up to this many batches' pairs at a time


def model_input_names(model, tokenizer) -> list[str]:
    """The tokenizer outputs the model really takes (Llama ignores BERT's token_type_ids)."""
    import inspect

    names = ["input_ids", "attention_mask"]
    takes_types = "token_type_ids" in inspect.signature(model.forward).parameters
    if takes_types and "token_type_ids" in tokenizer.model_input_names:
        names.append("token_type_ids")
    return names


@loads("model", check_tokenizer)
def load_tokenizer(name: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        # decoder-only checkpoints (Llama) have no pad token; the EOS token stands in
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.truncation_side = "right"  # the passage comes last: cut from its end
    return tokenizer


@loads("model")
def load_classifier(
    name: str,
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
    pad_token_id: int | None = None,
    torch_dtype=None,
):
    """Load ``name`` as a one-logit sequence classifier; returns (model, head_was_new)."""
    import torch
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    warn_remote_code(name, trust_remote_code)
    # fp32 master weights: training autocasts to bf16, and an fp16 checkpoint still trains
    kwargs = {
        "num_labels": 1,
        "trust_remote_code": trust_remote_code,
        "dtype": torch_dtype or torch.float32,
    }
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "newly initialised head" load report is expected
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            name, output_loading_info=True, **kwargs
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    if pad_token_id is not None and getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = pad_token_id
    head_was_new = bool(info.get("missing_keys"))
    if head_was_new:
        log.info(
            "%s: new classification head (%s)", name, ", ".join(sorted(info["missing_keys"]))[:200]
        )
    return model, head_was_new


@dataclass(frozen=True)
class RankResult:
    """One passage in a ranking: where it was in the request, and its score (logit + prior)."""

    index: int
    score: float


def ranked(scores: list[float], top_n: int | None = None) -> list[RankResult]:
    """Best first; equal scores keep the request's order."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return [RankResult(i, float(scores[i])) for i in order[:top_n]]


class Reranker:
    """Scores (query, passage) pairs: ``ScoreRecipe.total(backend logit, prior)``."""

    def __init__(
        self,
        encoder: PairEncoder,
        backend: LogitBackend,
        config: RerankerConfig,
        prior: Prior | None = None,
        head_was_new: bool = False,
    ) -> None:
        self.encoder = encoder
        self.backend = backend
        self.config = config
        self.prior = prior
        self.head_was_new = head_was_new  # True: the head is random, its scores mean nothing

    @classmethod
    def from_pretrained(
        cls,
        name: str,
        backend: Backend = "torch",
        trust_remote_code: bool = False,
        prompt_template: str | None = None,
        max_length: int | None = None,
        device: str | None = None,
        threads: int = 0,
        onnx_file: str | None = None,
        bf16: bool | None = None,
    ) -> Reranker:
        """A hub id or folder; ``backend="onnx"`` loads ``onnx_file`` (default: the fastest
        accepted ONNX variant export measured), ``backend="export"`` the export folder's default
        variant, on the runtime that variant names (PyTorch bf16 on the CPU, or ONNX Runtime).

        ``bf16``: autocast PyTorch to bf16 (None: on CUDA devices that support it).
        """
        path = resolve_model(name)
        config = RerankerConfig.load(path)
        if backend == "export":
            backend = "torch" if _export_entry(Path(path), config).runtime == "torch" else "onnx"
            if backend == "torch" and not bf16_enabled("auto", "cpu"):
                config = _without_bf16(Path(path), config)
                backend = "onnx"
            if backend == "torch":  # the bf16 variant, measured on the CPU
                device, bf16 = "cpu", True
        if prompt_template or max_length:
            config = config.model_copy(
                update={
                    k: v
                    for k, v in (("prompt_template", prompt_template), ("max_length", max_length))
                    if v
                }
            )
        tokenizer = load_tokenizer(path, trust_remote_code)
        device = device or best_device()
        head_was_new = False
        if backend == "onnx":
            logits: LogitBackend = _onnx_backend(Path(path), config, onnx_file, threads)
            input_names = config.onnx.inputs
        else:
            import torch

            if threads:
                torch.set_num_threads(threads)
            model, head_was_new = load_classifier(
                path, trust_remote_code, pad_token_id=tokenizer.pad_token_id
            )
            logits = TorchBackend(model, device, bf16)
            input_names = model_input_names(model, tokenizer)
        prior = Prior.load(
            path, config.prior, device, trust_remote_code, onnx=backend == "onnx", threads=threads
        )
        return cls(
            PairEncoder(tokenizer, config.prompt_template, config.max_length, input_names),
            logits,
            config,
            prior,
            head_was_new,
        )

    def with_backend(self, backend: LogitBackend, prior: Prior | None = None) -> Reranker:
        """The same recipe on another backend (the export gate's ONNX sessions), optionally another
        prior copy."""
        return Reranker(self.encoder, backend, self.config, prior or self.prior, self.head_was_new)

    @property
    def model(self):
        """The PyTorch model behind a torch backend (export and the benches need it)."""
        return self.backend.model

    @property
    def tokenizer(self):
        return self.encoder.tokenizer

    @property
    def prompt_template(self) -> str:
        return self.encoder.prompt_template

    @property
    def max_length(self) -> int:
        return self.encoder.max_length

    @property
    def input_names(self) -> list[str]:
        return self.encoder.input_names

    def rank(
        self, query: str, passages: list[str], top_n: int | None = None, batch_size: int = 64
    ) -> list[RankResult]:
        """``passages`` best first for ``query`` (the ``top_n`` best when given)."""
        return ranked(self.score([query] * len(passages), passages, batch_size), top_n)

    def rerank(
        self, data: BeirData, candidates: Run, batch_size: int = 64, progress: bool = False
    ) -> Run:
        """A first-stage run rescored as the reranker ships: logit + prior for every (query,
        candidate)."""
        return self.rerank_parts(data, candidates, batch_size, progress)["finetuned"]

    def rerank_parts(
        self, data: BeirData, candidates: Run, batch_size: int = 64, progress: bool = False
    ) -> dict[str, Run]:
        """``rerank``'s run ("finetuned"), and with a prior its two parts alone ("prior",
        "crossencoder")."""
        pairs = [(qid, did) for qid, docs in candidates.items() for did in docs]
        logits, prior = self.score_parts(
            [data.queries[q] for q, _ in pairs],
            [data.passage_text(d) for _, d in pairs],
            batch_size,
            progress,
        )
        parts = {"finetuned": ScoreRecipe.total(logits, prior)}
        if self.prior is not None:
            parts.update(prior=prior, crossencoder=logits)
        runs: dict[str, Run] = {}
        for name, scores in parts.items():
            run: Run = {qid: {} for qid in candidates}
            for (qid, did), score in zip(pairs, scores.tolist()):
                run[qid][did] = score
            runs[name] = run
        return runs

    def encode(self, query: str, passages: list[str], truncate: bool = True) -> list[Encoded]:
        """One request's pairs, tokenized, each with its prior score (serve runs this per
        request)."""
        queries = [query] * len(passages)
        pairs = self.encoder.encode(queries, passages, truncate)
        for pair, value in zip(pairs, self._prior(queries, passages).tolist()):
            pair["prior"] = value
        return pairs

    def score_encoded(
        self, pairs: list[Encoded], batch_size: int = 64, progress: bool = False
    ) -> list[float]:
        """Logit + prior per encoded pair; similar lengths share a batch so padding stays small."""
        logits = self.logits_encoded(pairs, batch_size, progress)
        prior = np.array([p.get("prior", 0.0) for p in pairs], dtype=np.float64)
        return ScoreRecipe.total(logits.astype(np.float64), prior).tolist()

    def logits_encoded(
        self, pairs: list[Encoded], batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        """The cross-encoder's logit alone per encoded pair."""
        return self._logits(
            [(list(range(len(pairs))), lambda: pairs)], len(pairs), batch_size, progress
        )

    def score(
        self, queries: list[str], passages: list[str], batch_size: int = 64, progress: bool = False
    ) -> list[float]:
        """One score per pair, the logit plus the prior's score (see ``score_parts``)."""
        logits, prior = self.score_parts(queries, passages, batch_size, progress)
        return ScoreRecipe.total(logits, prior).tolist()

    def score_parts(
        self, queries: list[str], passages: list[str], batch_size: int = 64, progress: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per pair, the cross-encoder's logit and the weighted prior apart (float64 arrays).

        Eval reports each alone too: the prior is what a user gets without training, the
        logit what training taught.

        With the cross-encoder on a GPU, pairs are tokenized a chunk at a time on a worker thread
        (the tokenizer releases the GIL) while the GPU scores the chunks before: tokenizing
        everything first would leave it idle about as long as it then computes. Chunks follow the
        pairs' length in characters and grow from one batch (the GPU starts soon) to
        SCORE_CHUNK_BATCHES, sorted by tokens within a chunk so batches pad little; the prior is
        computed meanwhile on a second thread. On a CPU, where tokenizing costs a few percent of
        the model's time, every pair is tokenized and sorted first, which pads least, and the
        prior runs before the model rather than competing for its cores.
        """
        gpu = getattr(self.backend, "cuda", False)
        spans = [list(range(len(queries)))] if queries else []
        if gpu:
            order = sorted(range(len(queries)), key=lambda i: len(queries[i]) + len(passages[i]))
            spans, start, size = [], 0, batch_size
            while start < len(order):
                spans.append(order[start : start + size])
                start, size = start + size, min(2 * size, SCORE_CHUNK_BATCHES * batch_size)
        pool = ThreadPoolExecutor(2 if gpu else 1, thread_name_prefix="score")
        try:
            prior = pool.submit(self._prior, queries, passages) if gpu else None
            prior_scores = None if gpu else self._prior(queries, passages)
            chunks = [
                (
                    span,
                    pool.submit(
                        self.encoder.encode, [queries[i] for i in span], [passages[i] for i in span]
                    ).result,
                )
                for span in spans
            ]
            logits = self._logits(chunks, len(queries), batch_size, progress)
            prior_scores = prior.result() if prior else prior_scores
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return logits.astype(np.float64), np.asarray(prior_scores, dtype=np.float64)

    def _prior(self, queries: list[str], passages: list[str]) -> np.ndarray:
        return (
            self.prior.scores(queries, passages)
            if self.prior is not None
            else np.zeros(len(queries))
        )

    def _logits(
        self,
        chunks: list[tuple[list[int], Callable[[], list[Encoded]]]],
        total: int,
        batch_size: int,
        progress: bool,
    ) -> np.ndarray:
        """Logits of ``total`` pairs given as (their positions, a call returning them encoded)
        chunks.

        Within a chunk similar token lengths share a batch, so padding stays small; the
        backend gets every batch as one stream and waits for the device once.
        """
        rows: list[list[int]] = []

        def batches():
            for positions, encoded in chunks:
                pairs = encoded()
                by_length = sorted(range(len(pairs)), key=lambda j: len(pairs[j]["input_ids"]))
                for start in range(0, len(by_length), batch_size):
                    part = by_length[start : start + batch_size]
                    rows.append([positions[j] for j in part])
                    yield self.encoder.pad([pairs[j] for j in part])

        n_batches = sum(math.ceil(len(positions) / batch_size) for positions, _ in chunks)
        bar = tqdm(batches(), total=n_batches, disable=not progress, desc="rerank", unit="batch")
        out = np.zeros(total, dtype=np.float32)
        for positions, logits in zip(rows, self.backend.logits_batches(bar)):
            out[positions] = logits
        return out


def _export_entry(folder: Path, config: RerankerConfig) -> OnnxConfig:
    """What export wrote into the folder's reranktune.json; stops when it wrote nothing."""
    from reranktune.io import InputError

    if config.onnx is None:
        raise InputError(
            f"{folder}: no export here (reranktune.json has no 'onnx' entry; "
            "run `reranktune export`)"
        )
    return config.onnx


def _without_bf16(folder: Path, config: RerankerConfig) -> RerankerConfig:
    """The export's fastest ONNX graph instead of its bf16 default, for a CPU without AMX or
    AVX512-BF16 (export measured bf16 on one that has them; here it would be emulated, many
    times slower), and the prior's encoder out of bf16 too."""
    log.warning(
        "%s: export picked PyTorch bf16 on a CPU with bf16 units; this CPU has none, so its "
        "fastest accepted ONNX graph (%s) serves instead (run export here to measure this CPU)",
        folder,
        config.onnx.fastest_graph,
    )
    dense = config.prior.dense if config.prior else None
    if dense is None or not dense.bf16:
        return config
    prior = config.prior.model_copy(update={"dense": dense.model_copy(update={"bf16": False})})
    return config.model_copy(update={"prior": prior})


def _onnx_backend(
    folder: Path, config: RerankerConfig, onnx_file: str | None, threads: int
) -> SessionBackend:
    from reranktune.io import InputError

    path = folder / (onnx_file or _export_entry(folder, config).fastest_graph)
    if not path.is_file():
        raise InputError(f"{path}: ONNX graph not found (run `reranktune export` first)")
    return SessionBackend(onnx_session(path, threads=threads), config.onnx.output)
