"""The one scoring recipe: lexical prior, pair encoding and truncation, the typed model-folder
config."""

import json

import numpy as np
import pytest

from reranktune.io import InputError
from reranktune.reranker.config import FORMAT_VERSION, RerankerConfig
from reranktune.reranker.scoring import PairEncoder, PairTooLong, ScoreRecipe
from reranktune.retrieval.bm25 import LexicalScorer, tokenize

CORPUS = [
    "Vacuum reclaims storage occupied by dead tuples in PostgreSQL tables.",
    "An index speeds up lookups; a vacuum also updates the visibility map of an index.",
    "Lambda expressions create small anonymous functions in Python.",
    "Triggers run a function when rows change; vacuum never fires a trigger.",
]


def test_lexical_scores_are_bm25s_scores_over_the_querys_ceiling():
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(tokenize(CORPUS), show_progress=False)
    scorer = LexicalScorer.fit(CORPUS)
    query = "how does vacuum clean an index"
    terms = [t for t in tokenize([query])[0] if t in scorer.idf]
    expected = retriever.get_scores(terms) / sum(scorer.idf[t] for t in terms)
    assert scorer.scores([query] * len(CORPUS), CORPUS) == pytest.approx(expected, abs=1e-5)
    assert 0 <= scorer.scores([query], [CORPUS[1]])[0] < 1


def test_lexical_scores_need_no_corpus_and_ignore_unknown_terms(tmp_path):
    scorer = LexicalScorer.fit(CORPUS)
    scorer.save(tmp_path / "lexical.json")
    loaded = LexicalScorer.load(tmp_path / "lexical.json")
    outside = "A vacuum cleaner is not a database."  # a passage the statistics never saw
    assert loaded.scores(["vacuum"], [outside]) == pytest.approx(
        scorer.scores(["vacuum"], [outside])
    )
    assert loaded.scores(["vacuum"], [outside])[0] > 0
    assert loaded.scores(["zeppelin quasar"], [outside])[0] == 0  # no known term: no evidence
    (tmp_path / "broken.json").write_text(json.dumps({"idf": {}}))
    with pytest.raises(InputError, match="broken.json: missing key 'avgdl'"):
        LexicalScorer.load(tmp_path / "broken.json")


def test_the_recipe_adds_the_weighted_prior_to_the_logit():
    recipe = ScoreRecipe(dense_weight=10.0, lexical_weight=5.0)
    prior = recipe.prior(np.array([0.5, 0.1]), np.array([0.2, 0.8]))
    assert prior == pytest.approx([6.0, 5.0])
    assert ScoreRecipe.total(np.array([1.0, -1.0]), prior) == pytest.approx([7.0, 4.0])


@pytest.fixture
def encoder(minilm_path):
    from reranktune.reranker.model import load_tokenizer

    return PairEncoder(
        load_tokenizer(minilm_path),
        "question:{query} \n \n passage:{passage}",
        32,
        ["input_ids", "attention_mask"],
    )


def test_a_long_query_is_cut_so_the_passage_keeps_its_share(encoder):
    long_query = " ".join(["whatever"] * 100)
    passage = "vacuum reclaims storage"
    ids = encoder.encode([long_query], [passage])[0]["input_ids"]
    assert len(ids) <= 32
    passage_ids = encoder.tokenizer(passage, add_special_tokens=False)["input_ids"]
    text = encoder.tokenizer.decode(ids)
    assert "vacuum reclaims storage" in text, text  # the passage is there, not cut away
    assert (
        len(encoder.tokenizer(encoder.cut_query(long_query), add_special_tokens=False)["input_ids"])
        == 16
    )
    assert set(passage_ids) <= set(ids)
    assert encoder.cut_query("short query") == "short query"


def test_without_truncation_an_over_long_pair_is_refused(encoder):
    with pytest.raises(PairTooLong, match=r"passages\[1\].*maximum of 32"):
        encoder.encode(["q", "q"], ["short", "word " * 50], truncate=False)


def test_model_folder_config_round_trips_and_migrates_version_1(tmp_path):
    config = RerankerConfig(prompt_template="{query} | {passage}", max_length=64)
    config.save(tmp_path)
    assert RerankerConfig.load(tmp_path) == config
    assert (
        json.loads((tmp_path / "reranktune.json").read_text())["format_version"] == FORMAT_VERSION
    )

    (tmp_path / "prior").mkdir()
    (tmp_path / "prior" / "model.onnx").write_bytes(b"graph")
    (tmp_path / "reranktune.json").write_text(
        json.dumps(
            {  # what reranktune wrote before the typed config
                "prompt_template": "{query} {passage}",
                "max_length": 128,
                "onnx_inputs": ["input_ids"],
                "onnx_output": "logits",
                "onnx_file": "model.int8.onnx",
                "default_variant": "int8",
                "prior": {
                    "folder": "prior",
                    "weight": 20.0,
                    "source_model": "all-MiniLM-L6-v2",
                    "query_prefix": "query: ",
                    "passage_prefix": "passage: ",
                    "max_length": 256,
                },
            }
        )
    )
    migrated = RerankerConfig.load(tmp_path)
    assert migrated.prior.dense.weight == 20.0 and migrated.prior.lexical is None
    assert (
        migrated.prior.dense.onnx_file == "model.onnx"
        and migrated.prior.dense.query_prefix == "query: "
    )
    assert migrated.onnx.file == "model.int8.onnx" and migrated.onnx.inputs == ["input_ids"]


def test_a_config_from_a_newer_version_or_with_a_bad_value_is_one_clear_error(tmp_path):
    (tmp_path / "reranktune.json").write_text(json.dumps({"format_version": FORMAT_VERSION + 1}))
    with pytest.raises(InputError, match="newer than this reranktune reads"):
        RerankerConfig.load(tmp_path)
    (tmp_path / "reranktune.json").write_text(
        json.dumps({"format_version": FORMAT_VERSION, "max_length": "long"})
    )
    with pytest.raises(InputError, match=r"reranktune.json: max_length: "):
        RerankerConfig.load(tmp_path)
    assert (
        RerankerConfig.load(tmp_path / "no-config-here") == RerankerConfig()
    )  # a plain HF checkpoint


class GpuLike:
    """A CPU backend that claims a GPU, so Reranker.score takes its GPU path here."""

    cuda = True

    def __init__(self, inner):
        self.inner = inner

    def logits_batches(self, batches):
        return self.inner.logits_batches(batches)


def test_score_gives_each_pair_its_own_logit_on_the_cpu_path_and_the_chunked_gpu_path(
    tiny_bert_dir,
):
    """On a GPU Reranker.score pipelines tokenization over chunks; every pair still gets the logit
    it gets alone."""
    import torch

    from reranktune.reranker.model import SCORE_CHUNK_BATCHES, Reranker

    reranker = Reranker.from_pretrained(str(tiny_bert_dir), device="cpu", max_length=48)
    queries = [f"query {i} " + "about vacuum " * (i % 4) for i in range(23)]
    passages = [" ".join(CORPUS[: 1 + i % 4]) for i in range(23)]
    # 23 pairs in batches of 2: chunks of 2, 4, 8 and 9 pairs on the GPU path
    chunked = reranker.with_backend(GpuLike(reranker.backend)).score(
        queries, passages, batch_size=2
    )
    assert SCORE_CHUNK_BATCHES * 2 < len(queries)
    scores = reranker.score(queries, passages, batch_size=2)
    assert chunked == pytest.approx(scores, abs=1e-5)
    alone = []
    for query, passage in zip(queries, passages):
        batch = reranker.encoder.pad(reranker.encoder.encode([query], [passage]))
        with torch.no_grad():
            alone.append(
                reranker.model(**{k: torch.from_numpy(v) for k, v in batch.items()})
                .logits[0, 0]
                .item()
            )
    assert scores == pytest.approx(alone, abs=1e-5)
    assert reranker.score([], []) == []


def test_torch_backend_scores_a_stream_of_batches_like_one_batch_at_a_time(tiny_bert_dir, encoder):
    from reranktune.reranker.model import load_classifier
    from reranktune.reranker.scoring import TorchBackend

    backend = TorchBackend(load_classifier(str(tiny_bert_dir))[0], "cpu")
    batches = [encoder.pad(encoder.encode(["vacuum"] * n, CORPUS[:n])) for n in (1, 3, 4)]
    streamed = backend.logits_batches(iter(batches))
    assert [len(x) for x in streamed] == [1, 3, 4]
    for batch, logits in zip(batches, streamed):
        assert logits == pytest.approx(backend.logits(batch), abs=1e-6)
    assert backend.logits_batches([]) == []


def test_with_the_model_on_a_gpu_the_prior_is_computed_alongside_with_the_same_scores(
    tiny_bert_with_prior_dir,
):
    from reranktune.reranker.model import Reranker

    reranker = Reranker.from_pretrained(str(tiny_bert_with_prior_dir), device="cpu")
    queries = ["what does vacuum do"] * 3 + ["lambda functions"] * 2
    passages = CORPUS + ["Lambdas are anonymous functions."]
    expected = reranker.score(queries, passages, batch_size=2)
    assert reranker.with_backend(GpuLike(reranker.backend)).score(
        queries, passages, batch_size=2
    ) == pytest.approx(expected, abs=1e-6)
    assert max(expected) - min(expected) > 1  # the prior (x20 cosine, x10 BM25) is in the scores
