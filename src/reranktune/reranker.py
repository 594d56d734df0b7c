"""A cross-encoder reranker: a one-logit sequence-classification model plus its prompt.

The prompt template and maximum length travel with the model in ``reranktune.json``
so that eval, export and serve format pairs exactly as training did; so does the
first-stage prior (``reranktune.prior``) when the model was trained with one.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from tqdm.auto import tqdm

from reranktune.models import best_device, check_tokenizer, loads, resolve_model, warn_remote_code
from reranktune.params import DEFAULT_PROMPT_TEMPLATE
from reranktune.prior import Prior

log = logging.getLogger(__name__)

RERANKER_CONFIG = "reranktune.json"


def format_pair(template: str, query: str, passage: str) -> str:
    return template.replace("{query}", query).replace("{passage}", passage)


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
    torch_dtype: torch.dtype | None = None,
):
    """Load ``name`` as a one-logit sequence classifier; returns (model, head_was_new)."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    warn_remote_code(name, trust_remote_code)
    # fp32 master weights: training autocasts to bf16, and an fp16 checkpoint still trains
    kwargs = {"num_labels": 1, "trust_remote_code": trust_remote_code, "dtype": torch_dtype or torch.float32}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()   # the "newly initialised head" load report is expected
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
        log.info("%s: new classification head (%s)", name, ", ".join(sorted(info["missing_keys"]))[:200])
    return model, head_was_new


class Reranker:
    """Scores (query, passage) pairs with a sequence-classification model, plus its prior if it has one."""

    def __init__(
        self, model, tokenizer, prompt_template: str, max_length: int, device: str, head_was_new: bool = False,
        prior: Prior | None = None,
    ) -> None:
        self.model = model.to(device).eval()
        self.input_names = model_input_names(model, tokenizer)
        self.head_was_new = head_was_new  # True: the head is random, its scores mean nothing
        self.tokenizer = tokenizer
        self.prompt_template = prompt_template
        self.max_length = max_length
        self.device = device
        self.prior = prior
        # bf16 autocast: on by default where the GPU supports it; CPUs with AMX may opt in
        self.bf16 = device == "cuda" and torch.cuda.is_bf16_supported()

    @classmethod
    def from_pretrained(
        cls,
        name: str,
        trust_remote_code: bool = False,
        prompt_template: str | None = None,
        max_length: int | None = None,
        device: str | None = None,
    ) -> "Reranker":
        path = resolve_model(name)
        saved = read_reranker_config(path)
        tokenizer = load_tokenizer(path, trust_remote_code)
        model, head_was_new = load_classifier(path, trust_remote_code, pad_token_id=tokenizer.pad_token_id)
        return cls(
            model,
            tokenizer,
            prompt_template or saved.get("prompt_template", DEFAULT_PROMPT_TEMPLATE),
            max_length or saved.get("max_length", 512),
            device or best_device(),
            head_was_new,
            Prior.load(path, saved.get("prior"), device or best_device(), trust_remote_code),
        )

    def tokenize(self, queries: list[str], passages: list[str]) -> dict:
        texts = [format_pair(self.prompt_template, q, p) for q, p in zip(queries, passages)]
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {name: batch[name] for name in self.input_names}

    @torch.inference_mode()
    def score(
        self, queries: list[str], passages: list[str], batch_size: int = 64, progress: bool = False
    ) -> list[float]:
        """One score per pair (the logit, plus the prior's score); batched by length so padding stays small."""
        order = sorted(range(len(passages)), key=lambda i: len(queries[i]) + len(passages[i]))
        scores = [0.0] * len(order)
        for start in tqdm(range(0, len(order), batch_size), disable=not progress, desc="rerank", unit="batch"):
            rows = order[start : start + batch_size]
            batch = self.tokenize([queries[i] for i in rows], [passages[i] for i in rows])
            batch = {name: tensor.to(self.device) for name, tensor in batch.items()}
            with torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.bf16):
                logits = self.model(**batch).logits[:, 0].float().cpu().tolist()
            for i, logit in zip(rows, logits):
                scores[i] = logit
        if self.prior is not None:
            scores = (self.prior.scores(queries, passages) + scores).tolist()
        return scores


def read_reranker_config(path: str | Path) -> dict:
    file = Path(path) / RERANKER_CONFIG
    return json.loads(file.read_text()) if file.exists() else {}


def write_reranker_config(path: str | Path, **values) -> None:
    from reranktune.io import write_json

    write_json(Path(path) / RERANKER_CONFIG, values)
