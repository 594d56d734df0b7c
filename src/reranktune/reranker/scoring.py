"""How a reranker scores a (query, passage) pair: the one place that says so.

``score = cross-encoder logit + prior``, where the prior is the first stage's evidence the
model was trained against (``ScoreRecipe``): a weighted dense cosine and a weighted
normalised BM25. Training (finetune/trainer.py), eval, the export gate, serve and the
benches all combine scores through ``ScoreRecipe``, and all format and cut pairs through
``PairEncoder``; what differs between them is only the backend that turns token ids into
logits (PyTorch, ONNX Runtime, TensorRT), which ``reranker.Reranker`` picks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

Encoded = dict[
    str, Any
]  # one pair: the model's inputs as token id lists, and "prior", its prior score


@dataclass(frozen=True)
class ScoreRecipe:
    """The weights of the prior's evidence; zero weights leave the cross-encoder alone."""

    dense_weight: float = 0.0
    lexical_weight: float = 0.0

    def prior(self, cosine, lexical):
        """``dense_weight x cosine + lexical_weight x lexical``: NumPy arrays or torch tensors."""
        return self.dense_weight * cosine + self.lexical_weight * lexical

    @staticmethod
    def total(logits, prior):
        """The reranker's score: the cross-encoder's logit plus the prior."""
        return logits + prior


def positive_ranks(scores: np.ndarray) -> np.ndarray:
    """Per row of a ``groups x passages`` array whose positive is first: its rank, 1 + the
    passages scored higher."""
    return 1 + (scores[:, 1:] > scores[:, :1]).sum(axis=1)


def format_pair(template: str, query: str, passage: str) -> str:
    return template.replace("{query}", query).replace("{passage}", passage)


class PairTooLong(ValueError):
    """A (query, passage) pair is over the model's maximum length and truncation is off."""

    def __init__(self, index: int, tokens: int, max_length: int) -> None:
        super().__init__(
            f"passages[{index}]: query + passage is {tokens} tokens, over the model's maximum of "
            f'{max_length}; shorten it or send "truncate": "END" to cut it'
        )
        self.index, self.tokens, self.max_length = index, tokens, max_length


class PairEncoder:
    """Formats pairs with the prompt template and tokenizes them as the model was trained.

    Truncation keeps the passage in view: a query longer than ``max_query_share`` of
    ``max_length`` is cut to that share first, then the pair is cut from the passage's end.
    Without the first step a long query would push the whole passage out and the pair
    would be ranked on the query alone.
    """

    def __init__(
        self,
        tokenizer,
        prompt_template: str,
        max_length: int,
        input_names: list[str],
        max_query_share: float = 0.5,
    ) -> None:
        self.tokenizer = tokenizer
        self.prompt_template = prompt_template
        self.max_length = max_length
        self.input_names = input_names
        self.max_query_tokens = max(1, int(max_length * max_query_share))

    def cut_query(self, query: str) -> str:
        """``query`` cut at a token boundary to at most ``max_query_tokens`` tokens (unchanged if
        shorter)."""
        if not self.tokenizer.is_fast:  # no offsets: cut through the tokens instead
            tokens = self.tokenizer.tokenize(query)
            return (
                self.tokenizer.convert_tokens_to_string(tokens[: self.max_query_tokens])
                if len(tokens) > self.max_query_tokens
                else query
            )
        offsets = self.tokenizer(
            query, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )["offset_mapping"]
        if len(offsets) <= self.max_query_tokens:
            return query
        return query[: offsets[self.max_query_tokens - 1][1]]

    def encode(
        self, queries: list[str], passages: list[str], truncate: bool = True
    ) -> list[Encoded]:
        """Token ids per pair; with ``truncate`` off an over-long pair raises PairTooLong."""
        if truncate:
            cut = {q: self.cut_query(q) for q in dict.fromkeys(queries)}
            queries = [cut[q] for q in queries]
        texts = [format_pair(self.prompt_template, q, p) for q, p in zip(queries, passages)]
        enc = self.tokenizer(
            texts,
            truncation=truncate,
            max_length=self.max_length if truncate else None,
            verbose=False,
        )
        if not truncate:
            for i, ids in enumerate(enc["input_ids"]):
                if len(ids) > self.max_length:
                    raise PairTooLong(i, len(ids), self.max_length)
        return [{name: enc[name][i] for name in self.input_names} for i in range(len(texts))]

    def pad(self, rows: list[Encoded]) -> dict[str, np.ndarray]:
        """int64 arrays padded to the longest row, on the tokenizer's padding side."""
        width = max(len(r["input_ids"]) for r in rows)
        left = self.tokenizer.padding_side == "left"
        fill = {"input_ids": self.tokenizer.pad_token_id}
        arrays = {}
        for name in self.input_names:
            out = np.full((len(rows), width), fill.get(name, 0), dtype=np.int64)
            for j, row in enumerate(rows):
                values = row[name]
                if left:
                    out[j, width - len(values) :] = values
                else:
                    out[j, : len(values)] = values
            arrays[name] = out
        return arrays


class LogitBackend(Protocol):
    """Token id arrays in, one logit per row out."""

    def logits(self, arrays: dict[str, np.ndarray]) -> np.ndarray: ...

    def logits_batches(self, batches: Iterable[dict[str, np.ndarray]]) -> list[np.ndarray]: ...


class TorchBackend:
    def __init__(self, model, device: str, bf16: bool | None = None) -> None:
        import torch

        self.model = model.to(device).eval()
        self.device = device
        self.cuda = torch.device(device).type == "cuda"
        # bf16 autocast: on by default where the GPU supports it; CPUs with AMX may opt in
        self.bf16 = (self.cuda and torch.cuda.is_bf16_supported()) if bf16 is None else bf16

    def logits(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        return self.logits_batches([arrays])[0]

    def logits_batches(self, batches: Iterable[dict[str, np.ndarray]]) -> list[np.ndarray]:
        """Each batch's logits, waiting for the device once at the end rather than after every
        batch.

        On a GPU the host pads and copies the next batch (from pinned memory, without blocking)
        while the device still runs the one before, so the device does not idle between batches.
        """
        import torch

        outputs = []
        with (
            torch.inference_mode(),
            torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16, enabled=self.bf16),
        ):
            for arrays in batches:
                batch = {name: self._to_device(torch.from_numpy(a)) for name, a in arrays.items()}
                outputs.append(self.model(**batch).logits[:, 0].float())
            if not outputs:
                return []
            flat = torch.cat(outputs).cpu().numpy()
        return np.split(flat, np.cumsum([len(o) for o in outputs])[:-1])

    def _to_device(self, tensor):
        if self.cuda:
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor


class SessionBackend:
    """An onnxruntime InferenceSession, or anything with its ``run`` (the TensorRT session)."""

    def __init__(self, session, output: str = "logits") -> None:
        self.session = session
        self.output = output

    def logits(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self.session.run([self.output], arrays)[0])[:, 0].astype(np.float32)

    def logits_batches(self, batches: Iterable[dict[str, np.ndarray]]) -> list[np.ndarray]:
        return [self.logits(arrays) for arrays in batches]
