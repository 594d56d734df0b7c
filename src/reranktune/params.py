"""Typed, validated ``params.yaml`` sections, one model per stage.

Unknown keys and bad values stop the stage with a message naming the key
(``params.yaml: finetune.learning_rate: ...``) before any work starts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from reranktune.io import InputError, read_yaml

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
DEFAULT_PROMPT_TEMPLATE = "question:{query} \n \n passage:{passage}"


class Section(BaseModel):
    # allow_inf_nan=False: .nan and .inf are one error line for every float key, not a crash
    # downstream
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class EmbeddingParams(Section):
    """How text is embedded: the first stage's dense half, or sdg's duplicate check."""

    model: str = DEFAULT_EMBEDDING_MODEL
    # None: the prompts the model declares (sentence-transformers' "query" and
    # "passage"/"document"), none for a model trained without them (all-MiniLM-L6-v2); a string
    # overrides that
    query_prefix: str | None = None
    passage_prefix: str | None = None
    batch_size: int = Field(64, ge=1)
    max_length: int = Field(256, ge=8)
    trust_remote_code: bool = False


REASONING_TYPES = (
    "factual",
    "relational",
    "inferential",
    "temporal",
    "procedural",
    "causal",
    "visual",
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class LlmParams(Section):
    """The LLM generator (``sdg.generator: llm``): endpoint, steps, limits. Never holds a key."""

    base_url: str = "https://integrate.api.nvidia.com/v1"
    model: str = "nvidia/nemotron-3-nano-30b-a3b"
    step_models: dict[Literal["artifacts", "qa", "judge"], str] = {}
    api_key_env: str | None = "NVIDIA_API_KEY"
    temperature: float = Field(0.6, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(4096, ge=16)
    extra_body: dict[str, Any] = {}
    query_types: dict[Literal["multi_hop", "structural", "contextual"], int] = {
        "multi_hop": 3,
        "structural": 2,
        "contextual": 2,
    }
    reasoning_types: list[Literal[REASONING_TYPES]] = list(REASONING_TYPES)  # type: ignore[valid-type]
    max_artifacts_per_type: int = Field(2, ge=1)
    dedup_threshold: float = Field(0.9, gt=0, le=1)
    dedup_embeddings: Literal["local", "provider"] = "local"
    embedding: EmbeddingParams = EmbeddingParams(query_prefix="query: ", passage_prefix="passage: ")
    embedding_model: str = "nvidia/llama-3.2-nv-embedqa-1b-v2"
    embedding_extra_body: dict[str, Any] = {"input_type": "query"}
    multi_doc: bool = False
    bundle_size: int = Field(2, ge=1)
    max_prompt_tokens: int = Field(8000, ge=1024)
    chars_per_token: float = Field(3.0, gt=0)
    concurrency: int = Field(4, ge=1)
    requests_per_minute: float | None = Field(40, gt=0)
    max_retries: int = Field(5, ge=0)
    backoff_initial_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(60.0, ge=0)
    timeout_s: float = Field(120.0, gt=0)
    parse_retries: int = Field(2, ge=0)
    trust_env: bool = False

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value and (not _ENV_NAME.match(value) or len(value) > 64):
            raise ValueError(
                "must be the NAME of an environment variable holding the key, "
                "not the key itself (keys never go in params)"
            )
        return value or None

    @model_validator(mode="after")
    def _pairs(self) -> LlmParams:
        if sum(self.query_types.values()) < 1 or any(n < 0 for n in self.query_types.values()):
            raise ValueError("query_types: counts must be >= 0 and sum to at least 1")
        if not self.reasoning_types:
            raise ValueError("reasoning_types: name at least one")
        return self

    def model_for(self, step: str) -> str:
        return self.step_models.get(step, self.model)


class SdgParams(Section):
    input_path: str = (
        "data/questions/nq-utd/corpus.jsonl"  # a folder of text files, or a BEIR corpus.jsonl
    )
    file_extensions: list[str] = [".txt", ".md", ".text", ""]
    min_text_length: int = Field(50, ge=0)
    sentences_per_chunk: int = Field(5, ge=1)
    generator: Literal["offline", "llm"] = "offline"
    seed: int = 42
    queries_per_chunk: int = Field(2, ge=1)
    multi_hop_per_document: int = Field(1, ge=0)
    min_query_words: int = Field(3, ge=1)
    max_query_words: int = Field(12, ge=2)
    # share of offline pseudo-queries asked with one word swapped for a corpus word the
    # embedding model (retrieval.embedding) places within this cosine, one their positive lacks
    paraphrase_rate: float = Field(0.0, ge=0, le=1)
    paraphrase_min_similarity: float = Field(0.7, gt=0, le=1)
    llm: LlmParams = LlmParams()


class PrepParams(Section):
    input_path: str = (
        "data/sdg/qa.jsonl"  # SDG JSONL, a folder of them, or a ready training file (.json)
    )
    quality_threshold: float = Field(9.0, ge=0, le=10)
    max_pos_docs: int = Field(5, ge=1)
    seed: int = 42
    train_ratio: float = Field(0.9, gt=0, le=1)
    val_ratio: float = Field(0.0, ge=0, lt=1)
    hard_negatives_to_mine: int = Field(5, ge=1)
    hard_negatives_sample_from: int = Field(
        30, ge=0, description="0: the top guarded candidates; N: a random draw from the top N"
    )
    hard_neg_margin: float = Field(0.95, gt=0)
    hard_neg_margin_type: Literal["perc", "abs"] = "perc"
    mining_candidates: int = Field(100, ge=2)
    mining_first_stage: Literal["dense", "hybrid"] = (
        "dense"  # hybrid: dense and BM25 ranks fused (RRF)
    )
    pad_missing_negatives: Literal["random", "drop"] = "random"

    @model_validator(mode="after")
    def _ratios(self) -> PrepParams:
        if self.train_ratio + self.val_ratio >= 1.0:
            raise ValueError("train_ratio + val_ratio must leave room for a test split (< 1.0)")
        return self


class PriorParams(Section):
    """The first stage's evidence added to the cross-encoder's logit: score = logit + prior
    (prior.py)."""

    dense_weight: float = Field(
        10.0, ge=0, description="x the first stage's cosine (retrieval.embedding)"
    )
    lexical_weight: float = Field(
        10.0, ge=0, description="x BM25 / its query's maximum, corpus statistics saved"
    )
    in_training: bool = Field(
        True,
        description="train on logit + prior (the model learns a correction to the "
        "first stage); false: the logit learns relevance alone and the prior is added after",
    )
    logit_loss_weight: float = Field(
        0.0,
        ge=0,
        le=1,
        description="with in_training: share of the loss on the "
        "logit alone, so the cross-encoder also learns where the prior is right",
    )
    ramp_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="with in_training: share of the training steps over which the prior "
        "rises from 0 to its full weight, so the logit first learns relevance alone",
    )
    fit_scale: bool = Field(
        False,
        description="after training a logit alone, scale both weights by the factor "
        "that ranks the validation queries best (needs prep.val_ratio > 0); their ratio stays",
    )

    @model_validator(mode="after")
    def _training_shares(self) -> PriorParams:
        for name in ("logit_loss_weight", "ramp_share"):
            if getattr(self, name) and not self.in_training:
                raise ValueError(f"{name} shapes the prior in the loss: needs in_training: true")
        return self


class FinetuneParams(Section):
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE
    rerank_max_length: int = Field(128, ge=8)
    train_n_passages: int = Field(5, ge=2)
    temperature: float = Field(1.0, gt=0)
    distillation_weight: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of the loss that matches the mining embedder's scores "
        "(training file 'score'); 0 = labels only",
    )
    distillation_temperature: float = Field(0.05, gt=0, description="divides the teacher's scores")
    distillation_teacher: Literal["embedder", "prior"] = Field(
        "embedder",
        description="embedder: prep's cosines; prior: the weighted prior (dense and BM25 evidence)",
    )
    prior: PriorParams = PriorParams()
    cloze_rate: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of positives trained without the sentence "
        "their query was cut from (inverse cloze): relevance beyond shared words",
    )
    global_batch_size: int = Field(8, ge=1)
    per_device_batch_size: int = Field(8, ge=1)
    learning_rate: float = Field(5e-5, gt=0)
    lr_warmup_steps: int = Field(10, ge=0)
    lr_scheduler: Literal["cosine", "linear"] = "cosine"
    weight_decay: float = Field(0.01, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    num_epochs: float = Field(1, gt=0)
    seed: int = 42
    mixed_precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"  # auto: bf16 where native
    gradient_checkpointing: bool = False
    attn_implementation: str | None = Field(
        "eager", description="e.g. eager or sdpa; null: transformers' choice for the model"
    )
    dropout: float | None = Field(
        0.0,
        ge=0,
        lt=1,
        description="every dropout layer's rate while training; null: the model's own",
    )
    pretokenize: bool = Field(
        False,
        description="tokenize every pair before training, so the collator only pads: "
        "on a GPU per-batch tokenization can take longer than the step",
    )
    group_by_length: bool = Field(
        False,
        description="batches of queries with similar pair lengths, in random "
        "order: less padding (off: the plain random order)",
    )
    save_steps: int = Field(50, ge=1)
    logging_steps: int = Field(5, ge=1)
    nproc: int = Field(
        1, ge=1, description="processes for torch distributed (DDP); >1 launches torchrun"
    )
    fsdp: str = Field(
        "", description="transformers' FSDP option, e.g. 'full_shard auto_wrap'; empty = DDP"
    )

    @model_validator(mode="after")
    def _template(self) -> FinetuneParams:
        for field in ("{query}", "{passage}"):
            if field not in self.prompt_template:
                raise ValueError(f"prompt_template must contain {field}")
        return self


FirstStage = Literal["dense", "bm25", "hybrid"]


class RetrievalParams(Section):
    """The first stage, one for every stage: prep mines with it, the prior carries its evidence
    into the reranker, eval and the export gate rerank its candidates."""

    first_stage: FirstStage = "hybrid"  # the candidates eval and the export gate rerank
    embedding: EmbeddingParams = EmbeddingParams()
    bm25_language: str = "english"  # PyStemmer language of BM25; "" = no stemming/stopwords
    rrf_k: int = Field(60, ge=1)  # reciprocal-rank fusion constant (hybrid)


class ModelParams(Section):
    """The cross-encoder finetune starts from and eval compares the fine-tuned one against."""

    base_model: str = DEFAULT_EMBEDDING_MODEL
    trust_remote_code: bool = False  # run the model's own code from its folder or the hub


MAX_K = 10_000  # candidates reranked per query, and metric cut-offs: far past any useful depth


class EvalParams(Section):
    questions_dir: str = (
        "data/questions"  # one BEIR folder of real questions per subfolder (none: empty)
    )
    data_path: str = (
        "data/prep/eval_beir"  # prep's synthetic split (any BEIR folder: corpus, queries, qrels)
    )
    split: str = "test"
    compare_first_stages: bool = True  # also report the other first stages alone
    top_k: int = Field(100, ge=1, le=MAX_K)
    k_values: list[Annotated[int, Field(ge=1, le=MAX_K)]] = Field([1, 5, 10, 100], min_length=1)
    mrr_k: int = Field(10, ge=1, le=MAX_K)
    batch_size: int = Field(64, ge=1)
    mixed_precision: Literal["auto", "bf16", "fp32"] = (
        "auto"  # auto: bf16 where the hardware has it
    )
    evaluate_base: Literal["auto", "always", "never"] = "auto"
    significance_k: int = Field(10, ge=1, le=MAX_K)  # paired test on nDCG@significance_k
    significance_resamples: int = Field(10000, ge=100)
    seed: int = 42
    breakdown_keys: list[str] = ["query_type", "reasoning_type", "hop_count"]
    endpoint_url: str = ""  # a running /v1/ranking API to check; "" = skip
    endpoint_model: str = ""  # "" = the first id from GET /v1/models
    endpoint_api_key_env: str = "RERANKTUNE_ENDPOINT_API_KEY"  # the variable's name, not a key
    endpoint_timeout_s: float = Field(120.0, gt=0)
    endpoint_tolerance_at_1: float = Field(0.03, ge=0)
    endpoint_tolerance: float = Field(0.01, ge=0)  # @5 and beyond (and every other cut-off)


ExportVariant = Literal["fp32", "optimized", "int8", "bf16", "fp16"]


class ExportParams(Section):
    """Variants to build and the accuracy gate each must pass to be offered to serve."""

    opset: int = Field(17, ge=14)
    variants: list[ExportVariant] = ["fp32", "optimized", "int8", "bf16", "fp16"]
    parity_atol: float = Field(1e-3, gt=0)  # fp32/optimized: max |score - PyTorch score|
    lossy_min_spearman: float = Field(
        0.9, ge=-1, le=1
    )  # int8/bf16/fp16: rank correlation with PyTorch
    max_ndcg_drop: float = Field(0.005, ge=0)  # every variant: NDCG@10 below PyTorch's
    parity_pairs: int = Field(64, ge=1)
    gate_queries: int = Field(48, ge=0)  # test queries reranked for the gate; 0 = all
    gate_top_k: int = Field(10, ge=1)  # dense candidates per query
    batch_size: int = Field(64, ge=1)
    tensorrt: bool = True  # build an engine when `tensorrt` imports
    trt_batch: list[int] = [1, 16, 64]  # TensorRT profile min/opt/max
    trt_length: list[int] = [3, 256, 512]

    @model_validator(mode="after")
    def _variants(self) -> ExportParams:
        if "fp32" not in self.variants:
            raise ValueError("variants must include fp32: every other variant is derived from it")
        if len(set(self.variants)) != len(self.variants):
            raise ValueError("variants must not repeat")
        for key in ("trt_batch", "trt_length"):
            values = getattr(self, key)
            if len(values) != 3 or values != sorted(values) or values[0] < 1:
                raise ValueError(f"{key} must be three increasing positive sizes (min, opt, max)")
        return self


class NimParams(Section):
    """NVIDIA's reranking container (``deploy.runtime: nim``); needs Docker, a GPU and
    NGC_API_KEY."""

    image: str = "nvcr.io/nim/nvidia/llama-nemotron-rerank-1b-v2:1.10.0"
    container_name: str = "reranktune-nim"
    model_mount: str = "/opt/nim/custom_model"  # where the export folder appears, read-only
    cache_dir: str | None = "~/.cache/nim"  # NIM's download cache (/opt/nim/.cache); null: none
    gpus: str = "all"  # "all" or device ids such as "0,1"
    shm_size: str = "16g"
    poll_interval_s: float = Field(5.0, gt=0)


class DeployParams(Section):
    """``reranktune serve`` defaults and ``reranktune deploy``: where and how the ranking API
    runs."""

    runtime: Literal["local", "nim"] = "local"
    # 0.0.0.0 exposes the API to the network: only behind a firewall or in a container
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    model_dir: str = "models/onnx"
    engine: Literal["export", "torch"] = "export"
    # a BEIR corpus.jsonl: the prior embeds its passages before the server is ready; "": none
    corpus: str = ""
    model_name: str = "reranktune"
    batching: bool = False  # bench/results/serve.json: slower for 1 client, no faster for 16
    max_batch: int = Field(32, ge=1)
    max_wait_ms: float = Field(5.0, ge=0)
    max_passages: int = Field(1000, ge=1)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    # per passage: its query + passage pair's tokens, up to the model's max_length; summed.
    # Over it: 413
    max_tokens_per_request: int = Field(65536, ge=1)
    request_timeout_s: float = Field(
        30.0, gt=0
    )  # past it: 503, and the request's unscored pairs are dropped
    # a connection's time limits; past one: 408 (if no answer started) and the connection is closed
    headers_timeout_s: float = Field(
        10.0, gt=0
    )  # a request's headers, from its first byte (or the connection)
    body_timeout_s: float = Field(30.0, gt=0)  # its body, from the end of its headers
    keep_alive_timeout_s: float = Field(5.0, gt=0)  # idle between two requests
    docs: bool = False  # /docs and /redoc; their pages load Swagger UI / ReDoc from a CDN
    threads: int = Field(0, ge=0)  # 0: the engine's default (all cores)
    ready_timeout_s: float = Field(120.0, gt=0)  # how long `deploy` waits for /v1/health/ready
    state_dir: str = ".cache/deploy"  # pid and log files of `deploy.runtime: local`
    nim: NimParams = NimParams()


SECTIONS: dict[str, type[Section]] = {
    "retrieval": RetrievalParams,
    "model": ModelParams,
    "sdg": SdgParams,
    "prep": PrepParams,
    "finetune": FinetuneParams,
    "eval": EvalParams,
    "export": ExportParams,
    "deploy": DeployParams,
}


# keys an older params.yaml may still have, and where their value went
RENAMED = {
    "finetune.prior_weight": "finetune.prior.dense_weight",
    "sdg.input_dir": "sdg.input_path",
    "prep.embedding": "retrieval.embedding",
    "prep.bm25_language": "retrieval.bm25_language",
    "finetune.prior.bm25_language": "retrieval.bm25_language",
    "eval.bm25_language": "retrieval.bm25_language",
    "eval.rrf_k": "retrieval.rrf_k",
    "eval.first_stage": "retrieval.first_stage",
    "finetune.base_model": "model.base_model",
    "finetune.trust_remote_code": "model.trust_remote_code",
}


def _format_error(path: Path, section: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join([section, *(str(p) for p in err["loc"])])
        if err["type"] == "extra_forbidden":
            moved = f" (now {RENAMED[key]})" if key in RENAMED else ""
            lines.append(f"{path}: {key}: unknown key{moved}")
        elif "api_key" in key:  # never echo what may be a pasted key
            lines.append(f"{path}: {key}: {err['msg']}")
        else:
            lines.append(f"{path}: {key}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


def load_section(section: str, path: str | Path = "params.yaml") -> Section:
    """Read and validate one section of ``params.yaml``; a missing section means defaults."""
    path = Path(path)
    if section not in SECTIONS:
        raise InputError(f"unknown params section {section!r}; expected one of {sorted(SECTIONS)}")
    raw = (read_yaml(path) if path.exists() else {}) or {}
    if not isinstance(raw, dict):
        raise InputError(
            f"{path}: expected a mapping of sections (sdg:, prep:, ...), got {type(raw).__name__}"
        )
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise InputError(f"{path}: unknown section(s): {', '.join(unknown)}")
    values = raw.get(section) or {}
    if not isinstance(values, dict):
        raise InputError(
            f"{path}: {section}: expected a mapping of keys, got {type(values).__name__}"
        )
    try:
        return SECTIONS[section].model_validate(values)
    except ValidationError as exc:
        raise InputError(_format_error(path, section, exc)) from None
