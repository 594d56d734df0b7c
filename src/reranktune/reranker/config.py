"""``reranktune.json``: what a reranker folder needs besides its weights, typed and versioned.

finetune writes it beside the Hugging Face weights, export rewrites it beside the ONNX
graphs; everything that loads a reranker reads it through ``RerankerConfig.load``. A
folder from an older reranktune is migrated on read (see ``_migrate``); one from a newer
one, or a hand-edited file that does not validate, stops with the file and key named.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reranktune.io import InputError
from reranktune.params import DEFAULT_PROMPT_TEMPLATE

CONFIG_FILE = "reranktune.json"
FORMAT_VERSION = 2


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class LexicalPriorConfig(_Strict):
    """BM25 over the training corpus's statistics, saved in ``file`` (``lexical.LexicalScorer``)."""

    weight: float = Field(ge=0)
    file: str = "lexical.json"


class DensePriorConfig(_Strict):
    """The first stage's embedding model, saved in the prior's folder, with its prefixes."""

    weight: float = Field(ge=0)
    source_model: str
    query_prefix: str = ""
    passage_prefix: str = ""
    max_length: int = Field(ge=8)
    onnx_file: str | None = (
        None  # the encoder as one ONNX graph, written by export when it matches PyTorch
    )
    bf16: bool = False  # PyTorch autocasts the encoder to bf16 (export: with the bf16 variant)


class PriorConfig(_Strict):
    """``score = logit + dense.weight x cosine + lexical.weight x BM25 / its query's maximum``."""

    folder: str = "prior"
    dense: DensePriorConfig | None = None
    lexical: LexicalPriorConfig | None = None


class VariantConfig(_Strict):
    file: str | None = None
    accepted: bool
    device: str
    runtime: Literal["onnx", "torch", "tensorrt"] = "onnx"
    precision: str
    ndcg_at_10: float | None = Field(None, alias="NDCG@10")
    ndcg_drop: float | None = None
    pairs_per_s: float | None = None  # served as export timed it (logit + prior), on its CPU


class OnnxConfig(_Strict):
    """What export built: the variant serve loads by default (``file``, run by its ``runtime``)
    and every variant's verdict."""

    inputs: list[str]
    output: str = "logits"
    file: str
    default_variant: str | None = None
    variants: dict[str, VariantConfig] = {}
    tensorrt_profile: dict[str, list[int]] | None = None
    source_model: str | None = None

    @property
    def runtime(self) -> str:
        """What runs ``file``: the default variant's runtime (ONNX Runtime for older folders)."""
        variant = self.variants.get(self.default_variant or "")
        return variant.runtime if variant else "onnx"

    @property
    def fastest_graph(self) -> str:
        """The ONNX graph to load: the default where it is one, else the fastest accepted ONNX
        CPU variant as export timed it."""
        if self.runtime == "onnx":
            return self.file
        graphs = [
            v
            for v in self.variants.values()
            if v.runtime == "onnx" and v.accepted and v.device == "cpu" and v.file
        ]
        return max(graphs, key=lambda v: v.pairs_per_s or 0.0).file if graphs else "model.onnx"


class RerankerConfig(_Strict):
    format_version: int = FORMAT_VERSION
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE
    max_length: int = Field(512, ge=8)
    base_model: str | None = None
    train_n_passages: int | None = None
    prior: PriorConfig | None = None
    onnx: OnnxConfig | None = None

    def save(self, folder: str | Path) -> None:
        from reranktune.io import write_json

        write_json(
            Path(folder) / CONFIG_FILE,
            self.model_dump(mode="json", by_alias=True, exclude_none=True),
        )

    @classmethod
    def load(cls, folder: str | Path) -> RerankerConfig:
        """The folder's config; defaults for a plain Hugging Face checkpoint that has none."""
        path = Path(folder) / CONFIG_FILE
        if not path.is_file():
            return cls()
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise InputError(f"{path}: expected a JSON object")
        version = raw.get("format_version", 1)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise InputError(
                f"{path}: format_version {version!r} is newer than this reranktune reads "
                f"({FORMAT_VERSION}); upgrade reranktune"
            )
        try:
            return cls.model_validate(
                _migrate(raw, Path(folder)) if version < FORMAT_VERSION else raw
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(p) for p in first["loc"])
            raise InputError(f"{path}: {key}: {first['msg']}") from None


def _migrate(old: dict, folder: Path) -> dict:
    """Version 1 (reranktune before the typed config): a flat dict, a dense-only prior."""
    new: dict = {
        k: old[k]
        for k in ("prompt_template", "max_length", "base_model", "train_n_passages")
        if k in old
    }
    if old.get("prior"):
        prior = old["prior"]
        new["prior"] = {
            "folder": prior.get("folder", "prior"),
            "dense": {
                "weight": prior["weight"],
                "source_model": prior.get("source_model", "unknown"),
                "query_prefix": prior.get("query_prefix", ""),
                "passage_prefix": prior.get("passage_prefix", ""),
                "max_length": prior.get("max_length", 256),
            },
        }
        if (
            folder / new["prior"]["folder"] / "model.onnx"
        ).is_file():  # version 1 found it by its name
            new["prior"]["dense"]["onnx_file"] = "model.onnx"
    if old.get("onnx_inputs"):
        new["onnx"] = {
            "inputs": old["onnx_inputs"],
            "output": old.get("onnx_output", "logits"),
            "file": old.get("onnx_file", "model.onnx"),
            "default_variant": old.get("default_variant"),
            "variants": old.get("variants") or {},
            "tensorrt_profile": old.get("tensorrt_profile"),
            "source_model": old.get("source_model"),
        }
    return new
