"""The ranking API's engines: a ``Reranker`` on an export folder's default variant (the fastest
its gate accepted: an ONNX graph, or the PyTorch weights in bf16) or on a PyTorch model folder.

Tokenization and the prior (``encode``) run per request; the forward pass (``score``)
runs on pairs that the batcher may have gathered from several requests. Both are the
``Reranker``'s own, so the server scores exactly as eval and the export gate did.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from reranktune.io import InputError
from reranktune.reranker.config import CONFIG_FILE, RerankerConfig
from reranktune.reranker.model import Reranker
from reranktune.reranker.scoring import Encoded, PairTooLong

__all__ = ["Engine", "EngineKind", "PairTooLong", "check_model_folder", "load_engine"]

log = logging.getLogger(__name__)

EngineKind = Literal["export", "torch"]


class Engine:
    """A loaded reranker, split into the per-request and the batched half of its scoring."""

    def __init__(self, reranker: Reranker, kind: EngineKind, batch_size: int) -> None:
        self.reranker = reranker
        self.kind = kind
        self.batch_size = batch_size

    @property
    def prior(self):
        return self.reranker.prior

    @property
    def max_length(self) -> int:
        return self.reranker.max_length

    def tokens(self, query: str, passages: list[str]) -> int:
        """Tokens the model would read for a request, each pair cut as ``truncate: END`` cuts it."""
        return sum(
            len(pair["input_ids"])
            for pair in self.reranker.encoder.encode([query] * len(passages), passages)
        )

    def encode(self, query: str, passages: list[str], truncate: bool) -> list[Encoded]:
        """Token ids and prior score per pair; with ``truncate`` off an over-long pair raises
        PairTooLong."""
        return self.reranker.encode(query, passages, truncate)

    def score(self, pairs: list[Encoded]) -> list[float]:
        return self.reranker.score_encoded(pairs, self.batch_size)


def check_model_folder(folder: str | Path, kind: EngineKind) -> Path:
    """Fail fast, before the server starts, when the folder cannot be what ``kind`` loads."""
    folder = Path(folder)
    if not folder.is_dir():
        stage = "export" if kind == "export" else "finetune"
        raise InputError(
            f"{folder}: model folder not found (run `reranktune {stage}` first, or pass the folder)"
        )
    if kind == "export":
        config = RerankerConfig.load(folder)
        if config.onnx is None:
            raise InputError(
                f"{folder / CONFIG_FILE}: no export described here (written by `reranktune export`)"
            )
        served = folder / config.onnx.file
        if not served.is_file():
            raise InputError(
                f"{served}: the export's default variant is missing (run `reranktune export` again)"
            )
    elif not (folder / "config.json").is_file():
        raise InputError(f"{folder}: not a Hugging Face model folder (no config.json)")
    return folder


def load_engine(
    kind: EngineKind,
    folder: str | Path,
    batch_size: int = 32,
    threads: int = 0,
    device: str | None = None,
    trust_remote_code: bool = False,
) -> Engine:
    folder = check_model_folder(folder, kind)
    reranker = Reranker.from_pretrained(
        str(folder),
        backend=kind,
        trust_remote_code=trust_remote_code,
        device="cpu" if kind == "export" else device,
        threads=threads,
    )
    if reranker.head_was_new:
        log.warning("%s has no trained ranking head: its scores are random", folder)
    return Engine(reranker, kind, batch_size)
