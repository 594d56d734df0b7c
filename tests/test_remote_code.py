"""A local model folder whose config points at its own modelling code (``auto_map``)."""

import json

import pytest
import torch
from test_finetune import NO_PRIOR, write_training_set

from reranktune.finetune.run import run_finetune
from reranktune.params import FinetuneParams, ModelParams
from reranktune.reranker.model import Reranker

CONFIGURATION = """
from transformers import PretrainedConfig


class TinyRerankConfig(PretrainedConfig):
    model_type = "tiny-rerank"

    def __init__(self, vocab_size=30522, hidden_size=16, **kwargs):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        super().__init__(**kwargs)
"""

MODELING = '''
import torch
from transformers import PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration_tiny import TinyRerankConfig


class TinyRerankForSequenceClassification(PreTrainedModel):
    """Mean-pooled embeddings and a linear head: the shape of a bidirectional reranker."""

    config_class = TinyRerankConfig

    def __init__(self, config):
        super().__init__(config)
        self.embed = torch.nn.Embedding(config.vocab_size, config.hidden_size)
        self.score = torch.nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, **kwargs):
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (self.embed(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1)
        return SequenceClassifierOutput(logits=self.score(pooled))
'''


@pytest.fixture
def remote_code_dir(tmp_path, minilm_path):
    from transformers import AutoTokenizer

    folder = tmp_path / "tiny-remote"
    folder.mkdir()
    (folder / "configuration_tiny.py").write_text(CONFIGURATION)
    (folder / "modeling_tiny.py").write_text(MODELING)
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": "tiny-rerank",
                "vocab_size": 30522,
                "hidden_size": 16,
                "num_labels": 1,
                "auto_map": {
                    "AutoConfig": "configuration_tiny.TinyRerankConfig",
                    "AutoModelForSequenceClassification": (
                        "modeling_tiny.TinyRerankForSequenceClassification"
                    ),
                },
            }
        )
    )
    torch.manual_seed(0)
    weights = {
        "embed.weight": torch.randn(30522, 16) * 0.02,
        "score.weight": torch.zeros(1, 16),
        "score.bias": torch.zeros(1),
    }
    from safetensors.torch import save_file

    save_file(weights, folder / "model.safetensors")
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(folder)
    return folder


def test_remote_code_needs_an_explicit_opt_in(remote_code_dir, tmp_path):
    train_file = write_training_set(tmp_path / "prep", n_queries=8)
    params = FinetuneParams(
        prior=NO_PRIOR,
        global_batch_size=8,
        per_device_batch_size=8,
        num_epochs=1,
        rerank_max_length=32,
        mixed_precision="fp32",
    )
    with pytest.raises(ValueError, match="trust_remote_code"):
        run_finetune(
            params,
            train_file,
            tmp_path / "m",
            tmp_path / "ckpt",
            tmp_path / "live",
            model=ModelParams(base_model=str(remote_code_dir)),
        )


def test_remote_code_model_trains_and_scores_when_trusted(remote_code_dir, tmp_path, caplog):
    train_file = write_training_set(tmp_path / "prep", n_queries=8)
    params = FinetuneParams(
        prior=NO_PRIOR,
        global_batch_size=8,
        per_device_batch_size=8,
        num_epochs=2,
        learning_rate=1e-2,
        rerank_max_length=32,
        mixed_precision="fp32",
    )
    summary = run_finetune(
        params,
        train_file,
        tmp_path / "m",
        tmp_path / "ckpt",
        tmp_path / "live",
        model=ModelParams(base_model=str(remote_code_dir), trust_remote_code=True),
    )
    assert summary["steps"] == 2
    assert "trust_remote_code is on" in caplog.text
    reranker = Reranker.from_pretrained(str(tmp_path / "m"), trust_remote_code=True, device="cpu")
    assert reranker.input_names == ["input_ids", "attention_mask"]
    assert len(reranker.score(["what is vacuum"], ["VACUUM reclaims storage."])) == 1
