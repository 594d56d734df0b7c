"""Scoring engines behind the ranking API: ONNX Runtime (default) or PyTorch.

Both format pairs with the prompt template and maximum length saved in
``reranktune.json``, so the server scores exactly as eval and export did.
Tokenization (``encode``) runs per request; the forward pass (``score``) runs
on pairs that the batcher may have gathered from several requests. A model trained
with a first-stage prior (``reranktune.prior``) gets it added per request in ``encode``.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np

from reranktune.io import InputError
from reranktune.prior import Prior
from reranktune.reranker import RERANKER_CONFIG, format_pair, load_tokenizer, read_reranker_config

log = logging.getLogger(__name__)

EngineKind = Literal["onnx", "torch"]
Encoded = dict[str, Any]   # the model's inputs (token id lists) and "prior", the pair's prior score


class PairTooLong(ValueError):
    """A (query, passage) pair is over the model's maximum length and truncation is off."""

    def __init__(self, index: int, tokens: int, max_length: int) -> None:
        super().__init__(
            f"passages[{index}]: query + passage is {tokens} tokens, over the model's maximum of "
            f"{max_length}; shorten it or send \"truncate\": \"END\" to cut the passage's end"
        )
        self.index, self.tokens, self.max_length = index, tokens, max_length


class Engine:
    """Tokenizes pairs like training did and scores them in length-sorted batches."""

    kind: EngineKind

    def __init__(self, tokenizer, prompt_template: str, max_length: int, input_names: list[str],
                 batch_size: int, prior: Prior | None = None) -> None:
        self.tokenizer = tokenizer
        self.prior = prior
        self.prompt_template = prompt_template
        self.max_length = max_length
        self.input_names = input_names
        self.batch_size = batch_size

    def encode(self, query: str, passages: list[str], truncate: bool) -> list[Encoded]:
        """Token ids per pair; with ``truncate`` off an over-long pair raises PairTooLong."""
        texts = [format_pair(self.prompt_template, query, p) for p in passages]
        enc = self.tokenizer(texts, truncation=truncate, max_length=self.max_length if truncate else None,
                             verbose=False)
        if not truncate:
            for i, ids in enumerate(enc["input_ids"]):
                if len(ids) > self.max_length:
                    raise PairTooLong(i, len(ids), self.max_length)
        priors = self.prior.scores([query] * len(passages), passages) if self.prior else np.zeros(len(passages))
        return [{**{name: enc[name][i] for name in self.input_names}, "prior": float(priors[i])}
                for i in range(len(texts))]

    def score(self, pairs: list[Encoded]) -> list[float]:
        """Logit + prior per encoded pair; similar lengths share a batch so padding stays small."""
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i]["input_ids"]))
        scores = [0.0] * len(pairs)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            logits = self._forward(self._pad([pairs[i] for i in rows]))
            for i, logit in zip(rows, logits.tolist()):
                scores[i] = float(logit) + pairs[i].get("prior", 0.0)
        return scores

    def _pad(self, rows: list[Encoded]) -> dict[str, np.ndarray]:
        width = max(len(r["input_ids"]) for r in rows)
        left = self.tokenizer.padding_side == "left"
        fill = {"input_ids": self.tokenizer.pad_token_id}
        arrays = {}
        for name in self.input_names:
            out = np.full((len(rows), width), fill.get(name, 0), dtype=np.int64)
            for j, row in enumerate(rows):
                values = row[name]
                if left:
                    out[j, width - len(values):] = values
                else:
                    out[j, : len(values)] = values
            arrays[name] = out
        return arrays

    def _forward(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError


class OnnxEngine(Engine):
    kind: EngineKind = "onnx"

    def __init__(self, folder: Path, batch_size: int, threads: int = 0) -> None:
        import onnxruntime as ort

        config = read_reranker_config(folder)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # CUDA first where installed; Azure's provider calls remote endpoints and has no place here
        providers = [p for p in ort.get_available_providers() if p != "AzureExecutionProvider"]
        self.session = ort.InferenceSession(str(folder / config.get("onnx_file", "model.onnx")), options,
                                            providers=providers)
        names = [i.name for i in self.session.get_inputs()]
        prior = Prior.load(folder, config.get("prior"), onnx=True, threads=threads)   # its ONNX graph if export wrote one
        super().__init__(load_tokenizer(str(folder)), config["prompt_template"], int(config["max_length"]),
                         names, batch_size, prior)

    def _forward(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(["logits"], arrays)[0][:, 0]


class TorchEngine(Engine):
    kind: EngineKind = "torch"

    def __init__(self, folder: Path, batch_size: int, device: str | None = None,
                 trust_remote_code: bool = False, threads: int = 0) -> None:
        import torch

        from reranktune.reranker import Reranker

        if threads:
            torch.set_num_threads(threads)
        self.reranker = Reranker.from_pretrained(str(folder), trust_remote_code=trust_remote_code,
                                                 device=device)
        if self.reranker.head_was_new:
            log.warning("%s has no trained ranking head: its scores are random", folder)
        super().__init__(self.reranker.tokenizer, self.reranker.prompt_template, self.reranker.max_length,
                         self.reranker.input_names, batch_size, self.reranker.prior)

    def _forward(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        device = self.reranker.device
        batch = {name: torch.from_numpy(a).to(device) for name, a in arrays.items()}
        use_bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
        with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=use_bf16):
            return self.reranker.model(**batch).logits[:, 0].float().cpu().numpy()


def check_model_folder(folder: str | Path, kind: EngineKind) -> Path:
    """Fail fast, before the server starts, when the folder cannot be what ``kind`` loads."""
    folder = Path(folder)
    if not folder.is_dir():
        stage = "export" if kind == "onnx" else "finetune"
        raise InputError(f"{folder}: model folder not found (run `reranktune {stage}` first, or pass the folder)")
    if kind == "onnx":
        config = read_reranker_config(folder)
        missing = [k for k in ("prompt_template", "max_length") if k not in config]
        if missing:
            raise InputError(f"{folder / RERANKER_CONFIG}: missing {', '.join(missing)} "
                             "(written by `reranktune export`)")
        graph = folder / config.get("onnx_file", "model.onnx")
        if not graph.is_file():
            raise InputError(f"{graph}: ONNX graph not found (run `reranktune export` first)")
    elif not (folder / "config.json").is_file():
        raise InputError(f"{folder}: not a Hugging Face model folder (no config.json)")
    return folder


def load_engine(kind: EngineKind, folder: str | Path, batch_size: int = 32, threads: int = 0,
                device: str | None = None, trust_remote_code: bool = False) -> Engine:
    folder = check_model_folder(folder, kind)
    if kind == "onnx":
        return OnnxEngine(folder, batch_size, threads)
    return TorchEngine(folder, batch_size, device, trust_remote_code, threads)
