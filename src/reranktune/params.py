"""Typed, validated ``params.yaml`` sections, one model per stage.

Unknown keys and bad values stop the stage with a message naming the key
(``params.yaml: finetune.learning_rate: ...``) before any work starts.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from reranktune.io import InputError

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
DEFAULT_PROMPT_TEMPLATE = "question:{query} \n \n passage:{passage}"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EmbeddingParams(Section):
    """How text is embedded for mining (prep) and first-stage retrieval (eval)."""

    model: str = DEFAULT_EMBEDDING_MODEL
    query_prefix: str = "query: "
    passage_prefix: str = "passage: "
    batch_size: int = Field(64, ge=1)
    max_length: int = Field(256, ge=8)
    trust_remote_code: bool = False


class SdgParams(Section):
    input_dir: str = "data/sample_corpus"
    file_extensions: list[str] = [".txt", ".md", ".text", ""]
    min_text_length: int = Field(50, ge=0)
    sentences_per_chunk: int = Field(5, ge=1)
    generator: Literal["offline", "llm"] = "offline"
    seed: int = 42
    queries_per_chunk: int = Field(2, ge=1)
    multi_hop_per_document: int = Field(1, ge=0)
    min_query_words: int = Field(3, ge=1)
    max_query_words: int = Field(12, ge=2)


class PrepParams(Section):
    quality_threshold: float = Field(7.0, ge=0, le=10)
    max_pos_docs: int = Field(5, ge=1)
    seed: int = 42
    train_ratio: float = Field(0.8, gt=0, le=1)
    val_ratio: float = Field(0.0, ge=0, lt=1)
    hard_negatives_to_mine: int = Field(5, ge=1)
    hard_negatives_sample_from: int = Field(
        0, ge=0, description="0: the top guarded candidates; N: a random draw from the top N"
    )
    hard_neg_margin: float = Field(0.95, gt=0)
    hard_neg_margin_type: Literal["perc", "abs"] = "perc"
    mining_candidates: int = Field(100, ge=2)
    pad_missing_negatives: Literal["random", "drop"] = "random"
    embedding: EmbeddingParams = EmbeddingParams()

    @model_validator(mode="after")
    def _ratios(self) -> "PrepParams":
        if self.train_ratio + self.val_ratio >= 1.0:
            raise ValueError("train_ratio + val_ratio must leave room for a test split (< 1.0)")
        return self


class FinetuneParams(Section):
    base_model: str = DEFAULT_EMBEDDING_MODEL
    trust_remote_code: bool = False
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE
    rerank_max_length: int = Field(512, ge=8)
    train_n_passages: int = Field(5, ge=2)
    temperature: float = Field(1.0, gt=0)
    global_batch_size: int = Field(128, ge=1)
    per_device_batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(3e-6, gt=0)
    lr_warmup_steps: int = Field(100, ge=0)
    lr_scheduler: Literal["cosine", "linear"] = "cosine"
    weight_decay: float = Field(0.01, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    num_epochs: float = Field(3, gt=0)
    seed: int = 42
    mixed_precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    gradient_checkpointing: bool = False
    attn_implementation: str | None = None
    save_steps: int = Field(50, ge=1)
    logging_steps: int = Field(5, ge=1)
    nproc: int = Field(1, ge=1, description="processes for torch distributed (DDP); >1 launches torchrun")

    @model_validator(mode="after")
    def _template(self) -> "FinetuneParams":
        for field in ("{query}", "{passage}"):
            if field not in self.prompt_template:
                raise ValueError(f"prompt_template must contain {field}")
        return self


class EvalParams(Section):
    top_k: int = Field(100, ge=1)
    k_values: list[int] = [1, 5, 10, 100]
    batch_size: int = Field(64, ge=1)
    evaluate_base: Literal["auto", "always", "never"] = "auto"

    @model_validator(mode="after")
    def _ks(self) -> "EvalParams":
        if not self.k_values or any(k < 1 for k in self.k_values):
            raise ValueError("k_values must be a non-empty list of positive integers")
        return self


class ExportParams(Section):
    opset: int = Field(17, ge=14)
    parity_atol: float = Field(1e-3, gt=0)
    parity_pairs: int = Field(64, ge=1)


class DeployParams(Section):
    runtime: Literal["local", "nim"] = "local"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)


SECTIONS: dict[str, type[Section]] = {
    "sdg": SdgParams,
    "prep": PrepParams,
    "finetune": FinetuneParams,
    "eval": EvalParams,
    "export": ExportParams,
    "deploy": DeployParams,
}

S = TypeVar("S", bound=Section)


def _format_error(path: Path, section: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join([section, *(str(p) for p in err["loc"])])
        if err["type"] == "extra_forbidden":
            lines.append(f"{path}: {key}: unknown key")
        else:
            lines.append(f"{path}: {key}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


def load_section(section: str, path: str | Path = "params.yaml") -> Section:
    """Read and validate one section of ``params.yaml``; a missing section means defaults."""
    path = Path(path)
    if section not in SECTIONS:
        raise InputError(f"unknown params section {section!r}; expected one of {sorted(SECTIONS)}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: invalid YAML: {exc}") from exc
    raw = raw or {}
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise InputError(f"{path}: unknown section(s): {', '.join(unknown)}")
    values = raw.get(section) or {}
    if not isinstance(values, dict):
        raise InputError(f"{path}: {section}: expected a mapping of keys, got {type(values).__name__}")
    try:
        return SECTIONS[section].model_validate(values)
    except ValidationError as exc:
        raise InputError(_format_error(path, section, exc)) from None
