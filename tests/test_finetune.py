import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from reranktune.finetune.data import ListwiseCollator, ListwiseDataset
from reranktune.finetune.run import batch_layout, precision_flags, run_finetune, set_dropout
from reranktune.finetune.trainer import distillation_loss, listwise_loss, lr_factor
from reranktune.io import InputError
from reranktune.params import (
    EmbeddingParams,
    FinetuneParams,
    ModelParams,
    PriorParams,
    RetrievalParams,
)

NO_PRIOR = PriorParams(
    dense_weight=0.0, lexical_weight=0.0
)  # the reranker alone: most tests need no embedder


def test_loss_is_softmax_cross_entropy_over_each_group_by_temperature():
    logits = torch.tensor([2.0, 1.0, 0.5, -1.0, 0.0, 3.0])  # two groups of three
    t = 0.5
    expected = []
    for group in ([2.0, 1.0, 0.5], [-1.0, 0.0, 3.0]):
        z = [x / t for x in group]
        expected.append(-(z[0] - math.log(sum(math.exp(v) for v in z))))
    loss = listwise_loss(logits, n_passages=3, temperature=t)
    assert loss.item() == pytest.approx(sum(expected) / 2, rel=1e-6)


def test_distillation_loss_is_the_kl_divergence_from_the_teachers_softmax():
    logits = torch.tensor([2.0, 1.0, 0.0, 0.5, 0.5, 0.5])
    teacher = torch.tensor([[0.8, 0.7, 0.1], [0.9, 0.2, 0.3]])
    p = torch.softmax(teacher / 0.05, dim=-1)
    q = torch.softmax(logits.view(2, 3) / 2.0, dim=-1)
    expected = (p * (p.log() - q.log())).sum(dim=-1).mean()
    assert distillation_loss(logits, teacher, 2.0, 0.05).item() == pytest.approx(
        expected.item(), rel=1e-5
    )
    # a student that orders and spaces the passages like the teacher has (near) zero loss
    assert distillation_loss(teacher.flatten() / 0.05, teacher, 1.0, 0.05).item() == pytest.approx(
        0.0, abs=1e-6
    )


def test_schedule_warms_up_from_a_tenth_and_decays_to_a_hundredth():
    assert lr_factor(0, 10, 100, "cosine") == pytest.approx(0.1)
    assert lr_factor(5, 10, 100, "cosine") == pytest.approx(0.55)
    assert lr_factor(10, 10, 100, "cosine") == pytest.approx(1.0)
    assert lr_factor(100, 10, 100, "cosine") == pytest.approx(0.01)
    assert lr_factor(55, 10, 100, "linear") == pytest.approx(0.01 + 0.99 * 0.5)


def test_batch_layout_counts_queries_across_devices():
    params = FinetuneParams(global_batch_size=128, per_device_batch_size=16)
    assert batch_layout(params, 1) == (16, 8)
    assert batch_layout(params, 2) == (16, 4)
    assert batch_layout(FinetuneParams(global_batch_size=8, per_device_batch_size=16), 1) == (8, 1)


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_only_where_the_hardware_runs_it(monkeypatch, caplog, native):
    monkeypatch.setattr("reranktune.finetune.run.bf16_enabled", lambda mode, device: native)
    assert precision_flags("auto") == {"bf16": native, "fp16": False}
    assert precision_flags("fp32") == {"bf16": False, "fp16": False}
    assert "emulated" not in caplog.text
    assert precision_flags("bf16") == {"bf16": True, "fp16": False}  # asked for, so kept
    assert ("emulated" in caplog.text) is not native  # but said aloud where it is slow


@pytest.fixture
def bert_with_dropout(tiny_bert_dir, tmp_path):
    """tiny_bert_dir with BERT's usual dropout (the fixture has none)."""
    folder = shutil.copytree(tiny_bert_dir, tmp_path / "bert-with-dropout")
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_without_dropout_training_mode_scores_as_evaluation_does(bert_with_dropout):
    model = AutoModelForSequenceClassification.from_pretrained(bert_with_dropout)
    ids = torch.randint(5, 100, (4, 16))
    model.eval()
    expected = model(input_ids=ids).logits
    model.train()
    torch.manual_seed(0)
    assert not torch.allclose(model(input_ids=ids).logits, expected), "the fixture has dropout"
    set_dropout(model, 0.0)
    torch.testing.assert_close(model(input_ids=ids).logits, expected)


def write_training_set(folder, n_queries=24, n_negatives=4):
    """Queries whose positive repeats the query's key word; negatives are about other things."""
    topics = [
        "vacuum",
        "index",
        "trigger",
        "sequence",
        "schema",
        "cursor",
        "lambda",
        "decorator",
        "generator",
        "coroutine",
        "iterator",
        "exception",
    ]
    corpus, data = {}, []
    for i in range(n_queries):
        topic = topics[i % len(topics)]
        pos = f"p{i}"
        corpus[pos] = f"The {topic} command explains how {topic} works in detail."
        negs = []
        for j in range(n_negatives):
            other = topics[(i + j + 1) % len(topics)]
            nid = f"n{i}_{j}"
            corpus[nid] = f"A note about {other} and unrelated settings."
            negs.append({"id": nid, "score": 0.5})
        data.append(
            {
                "question_id": f"q{i}_0",
                "question": f"what does {topic} do",
                "corpus_id": "train",
                "pos_doc": [{"id": pos, "score": 0.9}],
                "neg_doc": negs,
            }
        )
    (folder / "corpus").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": list(corpus), "text": list(corpus.values())}).to_parquet(
        folder / "corpus" / "train.parquet"
    )
    (folder / "train.json").write_text(json.dumps({"corpus": {"path": "./corpus/"}, "data": data}))
    return folder / "train.json"


@pytest.mark.parametrize("fixture", ["tiny_bert_dir", "tiny_llama_dir", "bert_with_dropout"])
def test_training_lowers_the_loss_and_saves_a_loadable_model(fixture, request, tmp_path):
    """With params.yaml's training (no dropout, eager attention); the saved config keeps the
    model's own dropout."""
    base = request.getfixturevalue(fixture)
    train_file = write_training_set(tmp_path / "prep")
    params = FinetuneParams(
        prior=NO_PRIOR,
        learning_rate=3e-3,
        lr_warmup_steps=0,
        global_batch_size=8,
        per_device_batch_size=4,
        num_epochs=6,
        rerank_max_length=32,
        mixed_precision="fp32",
        logging_steps=1,
        save_steps=1000,
    )
    out = tmp_path / "model"
    summary = run_finetune(
        params,
        train_file,
        out,
        tmp_path / "ckpt",
        tmp_path / "live",
        model=ModelParams(base_model=str(base)),
    )
    assert summary["steps"] == 18 and summary["gradient_accumulation_steps"] == 2
    assert summary["train_loss"] < math.log(5) and summary["precision"] == "fp32"
    assert summary["prior_alone"] is None
    curve = (tmp_path / "live" / "plots" / "metrics" / "loss.tsv").read_text().splitlines()
    assert curve[0].split("\t") == ["step", "loss"] and len(curve) == 19
    assert (
        len(
            (tmp_path / "live" / "plots" / "metrics" / "learning_rate.tsv").read_text().splitlines()
        )
        == 19
    )
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.num_labels == 1
    assert (out / "model.safetensors").exists() and (out / "reranktune.json").exists()
    assert "Fine-tuned" in (out / "README.md").read_text()
    assert not (tmp_path / "ckpt").exists(), "checkpoints are removed after a finished run"
    base_config = json.loads((base / "config.json").read_text())
    saved_config = json.loads((out / "config.json").read_text())
    dropouts = [key for key in base_config if "dropout" in key]
    assert dropouts and all(saved_config[key] == base_config[key] for key in dropouts)


def test_distillation_needs_scores_and_names_the_record_without_one(tmp_path):
    train_file = write_training_set(tmp_path / "prep", n_queries=3)
    spec = json.loads(train_file.read_text())
    del spec["data"][2]["neg_doc"][1]["score"]
    train_file.write_text(json.dumps(spec))
    assert ListwiseDataset(train_file, 5)[2]["query"] == "what does trigger do"  # labels only: fine
    with pytest.raises(InputError, match=r"data\[2\] \(q2_0\).*score.*distillation_weight"):
        ListwiseDataset(train_file, 5, with_scores=True)


def test_collator_carries_the_teacher_scores_of_each_group_in_passage_order(
    tiny_bert_dir, tmp_path
):
    from transformers import AutoTokenizer

    from reranktune.reranker.scoring import PairEncoder

    train_file = write_training_set(tmp_path / "prep", n_queries=2, n_negatives=2)
    data = ListwiseDataset(train_file, 4, with_scores=True)  # 1 positive + 2 negatives cycled to 3
    assert data[0]["scores"] == [0.9, 0.5, 0.5, 0.5]
    encoder = PairEncoder(
        AutoTokenizer.from_pretrained(tiny_bert_dir),
        "{query} {passage}",
        16,
        ["input_ids", "attention_mask"],
    )
    batch = ListwiseCollator(encoder)([data[0], data[1]])
    assert batch["teacher_scores"].shape == (2, 4) and batch["input_ids"].shape[0] == 8


def test_distillation_teaches_the_teachers_order_of_the_negatives(tiny_bert_dir, tmp_path):
    """Only the teacher prefers negatives that mention zebras: with weight 1 the model learns to as
    well."""
    train_file = write_training_set(tmp_path / "prep", n_queries=12)
    spec = json.loads(train_file.read_text())
    for record in spec["data"]:
        for j, neg in enumerate(record["neg_doc"]):
            neg["score"] = 0.2 + 0.2 * j
    corpus = pd.read_parquet(tmp_path / "prep" / "corpus" / "train.parquet")
    # the teacher's best negative (n*_3) mentions zebras, which no query or positive does
    corpus["text"] = [
        t + " Zebras graze." if i.endswith("_3") else t
        for i, t in zip(corpus["id"], corpus["text"])
    ]
    corpus.to_parquet(tmp_path / "prep" / "corpus" / "train.parquet")
    train_file.write_text(json.dumps(spec))
    params = FinetuneParams(
        prior=NO_PRIOR,
        learning_rate=3e-3,
        lr_warmup_steps=0,
        global_batch_size=4,
        per_device_batch_size=4,
        num_epochs=8,
        rerank_max_length=32,
        mixed_precision="fp32",
        distillation_weight=1.0,
        distillation_temperature=0.1,
        save_steps=1000,
    )
    run_finetune(
        params,
        train_file,
        tmp_path / "model",
        tmp_path / "ckpt",
        tmp_path / "live",
        model=ModelParams(base_model=str(tiny_bert_dir)),
    )
    from reranktune.reranker.model import Reranker

    reranker = Reranker.from_pretrained(tmp_path / "model")
    texts = dict(zip(corpus["id"], corpus["text"]))
    queries = [r["question"] for r in spec["data"]]
    zebra = reranker.score(queries, [texts[f"n{i}_3"] for i in range(12)])
    plain = reranker.score(queries, [texts[f"n{i}_0"] for i in range(12)])
    assert sum(z > p for z, p in zip(zebra, plain)) >= 11


def _score_with_minilm(train_file, embedding):
    """The training file rescored with the embedding model's real cosines, as prep writes them."""
    from reranktune.retrieval.embedder import Embedder

    spec = json.loads(train_file.read_text())
    corpus = pd.read_parquet(train_file.parent / "corpus" / "train.parquet")
    texts = dict(zip(corpus["id"], corpus["text"]))
    embedder = Embedder(embedding, device="cpu")
    for record in spec["data"]:
        docs = record["pos_doc"] + record["neg_doc"]
        q = embedder.model.encode(
            [embedding.query_prefix + record["question"]], normalize_embeddings=True
        )
        p = embedder.model.encode(
            [embedding.passage_prefix + texts[d["id"]] for d in docs], normalize_embeddings=True
        )
        for doc, cosine in zip(docs, (p @ q[0]).tolist()):
            doc["score"] = cosine
    train_file.write_text(json.dumps(spec))
    return embedder


def test_prior_training_saves_the_prior_and_scores_logit_plus_weighted_evidence(
    tiny_bert_dir, minilm_path, tmp_path
):
    from reranktune.params import PriorParams
    from reranktune.reranker.model import Reranker
    from reranktune.retrieval.bm25 import LexicalScorer

    train_file = write_training_set(tmp_path / "prep", n_queries=8)
    params = FinetuneParams(
        learning_rate=3e-3,
        lr_warmup_steps=0,
        global_batch_size=4,
        per_device_batch_size=4,
        num_epochs=1,
        rerank_max_length=32,
        mixed_precision="fp32",
        prior=PriorParams(dense_weight=20.0, lexical_weight=10.0),
        save_steps=1000,
    )
    embedding = EmbeddingParams(
        model=minilm_path, max_length=64, query_prefix="q: ", passage_prefix="p: "
    )
    embedder = _score_with_minilm(train_file, embedding)
    run_finetune(
        params,
        train_file,
        tmp_path / "model",
        tmp_path / "ckpt",
        tmp_path / "live",
        model=ModelParams(base_model=str(tiny_bert_dir)),
        retrieval=RetrievalParams(embedding=embedding),
    )
    saved = json.loads((tmp_path / "model" / "reranktune.json").read_text())
    assert saved["format_version"] == 2
    assert saved["prior"] == {
        "folder": "prior",
        "lexical": {"weight": 10.0, "file": "lexical.json"},
        "dense": {
            "weight": 20.0,
            "source_model": minilm_path,
            "query_prefix": "q: ",
            "passage_prefix": "p: ",
            "max_length": 64,
            "bf16": False,  # export sets it when it serves the bf16 variant
        },
    }
    assert "prior/" in (tmp_path / "model" / "README.md").read_text()

    reranker = Reranker.from_pretrained(tmp_path / "model", device="cpu")
    queries, passages = (
        ["what does vacuum do", "what does vacuum do"],
        ["VACUUM reclaims storage.", "A cursor."],
    )
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model").eval()
    batch = reranker.tokenizer(
        [f"question:{q} \n \n passage:{p}" for q, p in zip(queries, passages)],
        padding=True,
        truncation=True,
        max_length=32,
        return_tensors="pt",
    )
    with torch.no_grad():
        logits = model(**batch).logits[:, 0].tolist()
    cosines = (
        embedder.model.encode(["q: " + q for q in queries], normalize_embeddings=True)
        * embedder.model.encode(["p: " + p for p in passages], normalize_embeddings=True)
    ).sum(axis=1)
    corpus = pd.read_parquet(tmp_path / "prep" / "corpus" / "train.parquet")["text"].tolist()
    lexical = LexicalScorer.fit(corpus).scores(queries, passages)
    assert lexical[0] > 0 and lexical[1] == 0  # "vacuum" (stemmed) is in the first passage only
    expected = [logit + 20.0 * c + 10.0 * lex for logit, c, lex in zip(logits, cosines, lexical)]
    assert reranker.score(queries, passages) == pytest.approx(expected, abs=1e-4)


def test_a_training_file_scored_by_another_model_stops_training(
    tiny_bert_dir, minilm_path, tmp_path
):
    from reranktune.params import PriorParams

    train_file = write_training_set(
        tmp_path / "prep", n_queries=4
    )  # scores 0.9 / 0.5: not MiniLM's cosines
    params = FinetuneParams(
        global_batch_size=4,
        per_device_batch_size=4,
        rerank_max_length=32,
        mixed_precision="fp32",
        prior=PriorParams(dense_weight=20.0),
    )
    with pytest.raises(
        InputError, match=r"train\.json: its documents' 'score' values are not .*cosines"
    ):
        run_finetune(
            params,
            train_file,
            tmp_path / "model",
            tmp_path / "ckpt",
            tmp_path / "live",
            model=ModelParams(base_model=str(tiny_bert_dir)),
            retrieval=RetrievalParams(embedding=EmbeddingParams(model=minilm_path, max_length=64)),
        )
    assert not (tmp_path / "model").exists()


def test_with_a_prior_the_cross_encoder_learns_to_overrule_it(tiny_bert_dir, tmp_path):
    """A lexical prior that prefers every negative: the loss starts high and training brings it
    down."""
    from reranktune.params import PriorParams

    train_file = write_training_set(tmp_path / "prep", n_queries=12)
    corpus = pd.read_parquet(tmp_path / "prep" / "corpus" / "train.parquet")
    topics = {
        r["pos_doc"][0]["id"]: r["question"].split()[2]
        for r in json.loads(train_file.read_text())["data"]
    }
    # positives lose the query's word; every negative repeats it, so BM25 ranks the negatives first
    spec = json.loads(train_file.read_text())
    negative_topic = {n["id"]: r["question"].split()[2] for r in spec["data"] for n in r["neg_doc"]}
    corpus["text"] = [
        f"It explains this command in detail, number {i}."
        if i in topics
        else f"{negative_topic[i]} {negative_topic[i]}: a note on unrelated settings."
        for i in corpus["id"]
    ]
    corpus.to_parquet(tmp_path / "prep" / "corpus" / "train.parquet")
    params = FinetuneParams(
        learning_rate=3e-3,
        lr_warmup_steps=0,
        global_batch_size=4,
        per_device_batch_size=4,
        num_epochs=8,
        rerank_max_length=32,
        mixed_precision="fp32",
        prior=PriorParams(dense_weight=0.0, lexical_weight=2.0),
        logging_steps=1,
        save_steps=1000,
    )
    summary = run_finetune(
        params,
        train_file,
        tmp_path / "model",
        tmp_path / "ckpt",
        tmp_path / "live",
        model=ModelParams(base_model=str(tiny_bert_dir)),
    )
    # the summary says how much the groups leave to learn: the prior alone ranks no positive first
    assert summary["prior_alone"]["groups_ranked_first"] == 0
    assert summary["prior_alone"]["loss"] > 2.0
    losses = [
        float(line.split("\t")[1])
        for line in (tmp_path / "live" / "plots" / "metrics" / "loss.tsv")
        .read_text()
        .splitlines()[1:]
    ]
    # a fresh head scores ~0, so the first loss is the prior's, well above the uniform log(5) ~ 1.6
    assert losses[0] > 2.0 and losses[-1] < 1.0


def test_a_reranker_whose_prior_folder_is_gone_fails_naming_it(tiny_bert_with_prior_dir, tmp_path):
    import shutil

    from reranktune.reranker.model import Reranker

    broken = tmp_path / "model"
    shutil.copytree(tiny_bert_with_prior_dir, broken)
    shutil.rmtree(broken / "prior")
    with pytest.raises(
        InputError, match=r"model/prior: the reranker's prior embedding model is missing"
    ):
        Reranker.from_pretrained(str(broken), device="cpu")


def test_pretokenized_batches_equal_the_ones_tokenized_per_batch(tiny_bert_dir, tmp_path):
    from transformers import AutoTokenizer

    from reranktune.reranker.scoring import PairEncoder

    train_file = write_training_set(tmp_path / "prep", n_queries=6)
    encoder = PairEncoder(
        AutoTokenizer.from_pretrained(tiny_bert_dir),
        "question:{query} passage:{passage}",
        16,
        ["input_ids", "attention_mask", "token_type_ids"],
    )
    per_batch, pretokenized = ListwiseDataset(train_file, 5), ListwiseDataset(train_file, 5)
    pretokenized.tokenize(encoder)
    collate = ListwiseCollator(encoder)
    for rows in ([0, 1, 2], [5], [3, 4]):
        expected = collate([per_batch[i] for i in rows])
        got = collate([pretokenized[i] for i in rows])
        assert expected.keys() == got.keys()
        for key in expected:
            assert torch.equal(expected[key], got[key]), key
    # lengths: characters before tokenizing, the longest pair's tokens after
    assert per_batch.lengths()[0] == len(per_batch[0]["query"]) + max(
        map(len, per_batch[0]["passages"])
    )
    assert pretokenized.lengths() == [
        max(len(p["input_ids"]) for p in item["encoded"]) for item in pretokenized.items
    ]


def test_length_grouped_batches_cover_every_item_once_and_replay_per_epoch():
    from reranktune.finetune.data import LengthGroupedSampler

    lengths = [(i * 37) % 101 for i in range(103)]
    sampler = LengthGroupedSampler(lengths, batch_size=4, seed=7, pool_batches=10)
    order = list(sampler)
    assert sorted(order) == list(range(103)) and len(sampler) == 103
    assert order == list(sampler), (
        "the same epoch replays the same order (a resumed run skips what it saw)"
    )

    # cut as the data loader cuts it (the short batch came last), batches hold similar lengths
    def mean_spread(indices):
        batches = [indices[i : i + 4] for i in range(0, 100, 4)]
        return sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(
            batches
        )

    assert mean_spread(order) < mean_spread(list(range(103))) / 4
    sampler.set_epoch(1)
    assert list(sampler) != order


def test_pretokenized_length_grouped_training_lowers_the_loss(tiny_bert_dir, tmp_path):
    train_file = write_training_set(tmp_path / "prep")
    params = FinetuneParams(
        prior=NO_PRIOR,
        learning_rate=3e-3,
        lr_warmup_steps=0,
        global_batch_size=4,
        per_device_batch_size=4,
        num_epochs=6,
        rerank_max_length=32,
        mixed_precision="fp32",
        pretokenize=True,
        group_by_length=True,
        save_steps=1000,
    )
    summary = run_finetune(
        params,
        train_file,
        tmp_path / "model",
        tmp_path / "ckpt",
        tmp_path / "live",
        model=ModelParams(base_model=str(tiny_bert_dir)),
    )
    assert summary["steps"] == 36 and summary["train_loss"] < math.log(5)


def test_inverse_cloze_takes_the_source_sentence_out_of_positives_only(tmp_path):
    train_file = write_training_set(tmp_path / "prep", n_queries=4)
    spec = json.loads(train_file.read_text())
    corpus = pd.read_parquet(tmp_path / "prep" / "corpus" / "train.parquet")
    corpus["text"] = [t + " It ships with every release." for t in corpus["text"]]
    corpus.to_parquet(tmp_path / "prep" / "corpus" / "train.parquet")
    whole = ListwiseDataset(train_file, 3)
    clozed = ListwiseDataset(train_file, 3, cloze_rate=1.0, seed=1)
    for plain, item, _record in zip(whole.items, clozed.items, spec["data"]):
        assert (
            item["passages"][0] == "It ships with every release."
        )  # "what does vacuum do" came from sentence 1
        assert item["passages"][1:] == plain["passages"][1:]
    assert clozed.clozed_rows() == [0, 3, 6, 9]
    assert ListwiseDataset(train_file, 3, cloze_rate=0.0).items == whole.items


def test_fit_scale_adds_as_much_prior_as_ranks_held_out_groups_best():
    from reranktune.reranker.config import LexicalPriorConfig, PriorConfig
    from reranktune.reranker.prior import Prior, fit_scale
    from reranktune.retrieval.bm25 import LexicalScorer

    logits = np.array(
        [[1.0, 0.0, 0.5], [0.0, 0.2, -1.0], [2.0, 1.9, 0.0]]
    )  # the logit misranks group 2
    prior = 10.0 * np.array(
        [[0.5, 0.4, 0.5], [0.9, 0.1, 0.0], [0.5, 0.5, 0.5]]
    )  # the prior ranks it right
    assert fit_scale(logits, prior) == (0.125, 1.0)  # the lightest scale that does
    assert fit_scale(logits, prior[:, ::-1].copy())[0] == 0.0  # a misleading prior is left out
    lexical = Prior(
        PriorConfig(lexical=LexicalPriorConfig(weight=10.0)), lexical=LexicalScorer.fit(["a b"])
    )
    assert lexical.scaled(0.125).config.lexical.weight == 1.25 and lexical.scaled(0.0) is None


def test_a_logit_trained_alone_ships_with_its_prior_rescaled_on_validation_queries(
    tiny_bert_dir, tmp_path
):
    from reranktune.params import PriorParams

    train_file = write_training_set(tmp_path / "prep", n_queries=8)
    val_file = tmp_path / "prep" / "val.json"
    val_file.write_text(train_file.read_text())
    params = FinetuneParams(
        learning_rate=1e-7,
        lr_warmup_steps=0,
        global_batch_size=4,
        per_device_batch_size=4,
        num_epochs=1,
        rerank_max_length=32,
        mixed_precision="fp32",
        save_steps=1000,
        prior=PriorParams(dense_weight=0.0, lexical_weight=10.0, in_training=False, fit_scale=True),
    )
    with pytest.raises(InputError, match="prep.val_ratio"):
        run_finetune(
            params,
            train_file,
            tmp_path / "model",
            tmp_path / "ckpt",
            tmp_path / "live",
            model=ModelParams(base_model=str(tiny_bert_dir)),
        )
    summary = run_finetune(
        params,
        train_file,
        tmp_path / "model",
        tmp_path / "ckpt",
        tmp_path / "live",
        val_file=val_file,
        model=ModelParams(base_model=str(tiny_bert_dir)),
    )
    saved = json.loads((tmp_path / "model" / "reranktune.json").read_text())["prior"]
    weight = summary["prior_weights"]["lexical"] if summary["prior_weights"] else None
    # a (barely trained) random head needs the prior: BM25 ranks every validation positive first
    assert weight in [10.0 * s for s in (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)]
    assert saved["lexical"]["weight"] == weight and saved.get("dense") is None


def loss_over_prior(logits, prior, *, step=0, training=True, **trainer_fields):
    """ListwiseTrainer.compute_loss on fixed logits (groups of three) with the prior's scores,
    ``step`` of 100 into training."""
    from types import SimpleNamespace

    from reranktune.finetune.trainer import ListwiseTrainer

    model = lambda **_: SimpleNamespace(logits=logits[:, None])  # noqa: E731
    model.training = training
    trainer = SimpleNamespace(
        **{
            "n_passages": 3,
            "temperature": 1.0,
            "distillation_weight": 0.0,
            "logit_loss_weight": 0.0,
            "prior_ramp_share": 0.0,
            **trainer_fields,
        },
        state=SimpleNamespace(global_step=step, max_steps=100),
    )
    return ListwiseTrainer.compute_loss(trainer, model, {"prior_scores": prior.clone()})


def test_logit_loss_weight_keeps_a_gradient_where_the_prior_already_ranks_the_positive_first():
    logits = torch.zeros(6, requires_grad=True)  # a fresh head: no preference
    prior = torch.tensor([[20.0, 0.0, 0.0], [20.0, 0.0, 0.0]])  # the prior solves both groups

    assert loss_over_prior(logits, prior).item() == pytest.approx(0.0, abs=1e-6)
    mixed = loss_over_prior(logits, prior, logit_loss_weight=0.5)
    assert mixed.item() == pytest.approx(
        0.5 * math.log(3), rel=1e-4
    )  # half the loss is the logit's own
    (gradient,) = torch.autograd.grad(mixed, logits)
    assert gradient[0] < 0 and gradient[3] < 0  # pushes each positive's logit up


def test_loss_shares_of_the_prior_need_the_prior_in_training(tmp_path):
    from reranktune.params import load_section

    for key in ("ramp_share", "logit_loss_weight"):
        path = tmp_path / "params.yaml"
        path.write_text(f"finetune:\n  prior:\n    in_training: false\n    {key}: 0.5\n")
        with pytest.raises(InputError, match=f"finetune.prior: .*{key} shapes the prior"):
            load_section("finetune", path)


def test_the_prior_ramps_up_in_the_training_loss_and_is_whole_in_evaluation():
    from reranktune.finetune.trainer import prior_ramp

    assert [prior_ramp(s, 100, 0.5) for s in (0, 25, 50, 99)] == [0.0, 0.5, 1.0, 1.0]
    assert prior_ramp(0, 100, 0.0) == 1.0  # off: the whole prior from the first step

    logits = torch.zeros(3, requires_grad=True)
    prior = torch.tensor([[20.0, 0.0, 0.0]])  # the prior alone solves the group

    def loss(step, training=True):
        return loss_over_prior(logits, prior, step=step, training=training, prior_ramp_share=0.5)

    assert loss(0).item() == pytest.approx(math.log(3), rel=1e-4)  # the logit alone at first
    assert loss(25).item() > loss(50).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(0, training=False).item() == pytest.approx(0.0, abs=1e-6)  # scored as served


def test_the_prior_can_be_the_distillation_teacher_without_entering_the_loss(tmp_path):
    from reranktune.finetune.run import attach_prior
    from reranktune.reranker.config import LexicalPriorConfig, PriorConfig
    from reranktune.reranker.prior import Prior
    from reranktune.retrieval.bm25 import LexicalScorer

    train_file = write_training_set(tmp_path / "prep", n_queries=4)
    data = ListwiseDataset(train_file, 3, with_scores=True)
    prior = Prior(
        PriorConfig(lexical=LexicalPriorConfig(weight=10.0)),
        lexical=LexicalScorer.fit(data.corpus_texts),
    )
    attach_prior(prior, [data], train_file, seed=0, in_loss=False, as_teacher=True)
    queries, passages = data.pairs()
    teacher = torch.tensor(
        [item["teacher"] for item in data.items]
    )  # what the collator hands the loss
    assert teacher.flatten().tolist() == pytest.approx(
        (10.0 * prior.lexical_scores(queries, passages)).tolist()
    )
    assert data.file_scores() == [
        s for item in data.items for s in item["scores"]
    ]  # the file's, for the prior
    assert all("prior" not in item for item in data.items)
    assert all(row[0] > max(row[1:]) for row in teacher.tolist())  # BM25 favours the positives
