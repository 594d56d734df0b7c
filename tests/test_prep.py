import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reranktune.beir_data import load_beir
from reranktune.params import EmbeddingParams, PrepParams, RetrievalParams, SdgParams
from reranktune.prep.mining import guard_threshold, mine_hard_negatives
from reranktune.prep.records import Query, load_sdg
from reranktune.prep.run import run_prep
from reranktune.prep.split import split_documents, split_queries
from reranktune.prep.writers import unroll
from reranktune.sdg.run import run_sdg


@settings(max_examples=200, deadline=None)
@given(
    docs=st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=40, unique=True),
    queries_per_doc=st.integers(1, 4),
    seed=st.integers(0, 10_000),
    train=st.floats(0.1, 0.9),
    val=st.floats(0.0, 0.5),
)
def test_split_never_puts_a_document_in_two_splits(docs, queries_per_doc, seed, train, val):
    val = min(val, 0.95 - train)
    assignment = split_documents(docs, seed, train, val)
    assert set(assignment) == set(docs)
    queries = [Query(f"{d}-{i}", "q", ["x"], d) for d in docs for i in range(queries_per_doc)]
    splits = split_queries(queries, assignment)
    owners = {}
    for name, items in splits.items():
        for q in items:
            assert owners.setdefault(q.source_id, name) == name
    if len(docs) >= 2:
        assert splits["test"], "at least one test document"


def test_split_is_a_pure_function_of_seed():
    docs = [f"doc{i}" for i in range(30)]
    assert split_documents(docs, 1, 0.8, 0) == split_documents(list(reversed(docs)), 1, 0.8, 0)
    assert split_documents(docs, 1, 0.8, 0) != split_documents(docs, 2, 0.8, 0)


def _unit(rows):
    v = np.asarray(rows, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_mining_masks_positives_applies_the_guard_and_never_uses_banned_chunks():
    rng = np.random.default_rng(0)
    pool_ids = [f"p{i}" for i in range(50)]
    pool = _unit(rng.normal(size=(50, 16)))
    query = _unit(pool[:1] + 0.05 * rng.normal(size=(1, 16)))  # p0 is the positive
    mined = mine_hard_negatives(
        query,
        [["p0"]],
        pool_ids,
        pool,
        {"p0": pool[0]},
        n_negatives=5,
        margin=0.95,
        margin_type="perc",
        candidates=49,
        pad="random",
        seed=0,
    )
    limit = guard_threshold(float(query[0] @ pool[0]), 0.95, "perc")
    negatives = mined.negatives[0]
    assert len(negatives) == 5
    assert "p0" not in {c for c, _ in negatives}
    assert all(score <= limit for _, score in negatives)
    assert all(np.isfinite(score) for _, score in negatives)
    scores = [s for _, s in negatives]
    assert scores == sorted(scores, reverse=True)


def test_mining_can_sample_negatives_from_a_wider_top_n():
    rng = np.random.default_rng(1)
    pool_ids = [f"p{i}" for i in range(60)]
    pool = _unit(rng.normal(size=(60, 16)))
    query = _unit(pool[:1] + 0.05 * rng.normal(size=(1, 16)))
    kwargs = dict(n_negatives=4, margin=0.95, margin_type="perc", candidates=10, pad="random")
    top = mine_hard_negatives(query, [["p0"]], pool_ids, pool, {"p0": pool[0]}, seed=0, **kwargs)
    wide = [
        mine_hard_negatives(
            query, [["p0"]], pool_ids, pool, {"p0": pool[0]}, seed=s, sample_from=30, **kwargs
        )
        for s in range(5)
    ]
    limit = guard_threshold(float(query[0] @ pool[0]), 0.95, "perc")
    scores = (query @ pool.T)[0]
    ranked = [
        pool_ids[i] for i in np.argsort(-scores) if pool_ids[i] != "p0" and scores[i] <= limit
    ]
    for mined in wide:
        chosen = [c for c, _ in mined.negatives[0]]
        assert len(chosen) == 4 and set(chosen) <= set(ranked[:30])
        assert [s for _, s in mined.negatives[0]] == sorted(
            (s for _, s in mined.negatives[0]), reverse=True
        )
    assert [c for c, _ in top.negatives[0]] == ranked[:4]
    assert len({tuple(c for c, _ in m.negatives[0]) for m in wide}) > 1  # seeds draw differently
    again = mine_hard_negatives(
        query, [["p0"]], pool_ids, pool, {"p0": pool[0]}, seed=3, sample_from=30, **kwargs
    )
    assert again.negatives == wide[3].negatives


def test_mining_pads_or_drops_when_the_guard_leaves_too_few():
    pool = _unit([[1, 0], [0.99, 0.1], [0.98, 0.2], [0, 1], [-1, 0], [0.1, -1]])
    ids = [f"p{i}" for i in range(6)]
    query = pool[:1].copy()
    kwargs = dict(n_negatives=4, margin=0.0, margin_type="abs", candidates=2, seed=0)
    padded = mine_hard_negatives(
        query, [["p0"]], ids, pool, {"p0": pool[0]}, pad="random", **kwargs
    )
    assert len(padded.negatives[0]) == 4 and padded.counts["random_negatives_added"] >= 1
    dropped = mine_hard_negatives(query, [["p0"]], ids, pool, {"p0": pool[0]}, pad="drop", **kwargs)
    assert dropped.negatives[0] == []


def test_unrolling_three_positives_gives_three_records_with_identical_negatives():
    query = Query("q_1", "what", ["a", "b", "c"], "doc")
    records = unroll(query, [("n1", 0.5), ("n2", 0.4)], {"a": 0.9, "b": 0.8, "c": 0.7})
    assert [r["question_id"] for r in records] == ["q_1_0", "q_1_1", "q_1_2"]
    assert [r["pos_doc"][0]["id"] for r in records] == ["a", "b", "c"]
    assert all(r["neg_doc"] == records[0]["neg_doc"] for r in records)


def _sdg_line(source_id, chunks, pairs):
    return json.dumps(
        {
            "file_name": [source_id],
            "source_id": source_id,
            "chunks": [{"chunk_id": i + 1, "text": t} for i, t in enumerate(chunks)],
            "deduplicated_qa_pairs": [
                {"question": q, "answer": "", "segment_ids": s} for q, s, _ in pairs
            ],
            "qa_evaluations": {"evaluations": [{"overall": {"score": sc}} for _, _, sc in pairs]},
        }
    )


def test_load_sdg_filters_and_reports_bad_lines(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(
        "\n".join(
            [
                _sdg_line(
                    "a.txt",
                    ["alpha text", "beta text"],
                    [("good", [1], 9), ("low", [1], 3), ("ghost", [7], 9), ("wide", [1, 2], 9)],
                ),
                "{not json",
                _sdg_line("b.txt", ["gamma text"], [("fine", ["1"], 8)]),
            ]
        )
        + "\n"
    )
    data = load_sdg(path, quality_threshold=7, max_pos_docs=1)
    assert [q.text for q in data.queries] == ["good", "fine"]
    assert data.counts["dropped_low_quality"] == 1
    assert data.counts["dropped_unknown_chunk_id"] == 1
    assert data.counts["dropped_too_many_positives"] == 1
    assert data.bad_lines == [
        f"{path}:2: invalid JSON: Expecting property name enclosed in double quotes"
    ]


def test_prep_outputs_are_beir_and_exclude_test_chunks(small_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("RERANKTUNE_CACHE_DIR", str(tmp_path / "cache"))
    sdg = tmp_path / "qa.jsonl"
    run_sdg(SdgParams(input_path=str(small_corpus)), sdg, tmp_path / "sdg.json")
    params = PrepParams(quality_threshold=5)
    retrieval = RetrievalParams(embedding=EmbeddingParams(batch_size=32))
    report = run_prep(params, sdg, tmp_path / "prep", tmp_path / "prep.json", retrieval)
    assert report["train_records"] > 0 and report["queries_per_split"]["test"] > 0

    beir = tmp_path / "prep" / "eval_beir"
    assert (beir / "qrels" / "test.tsv").read_text().splitlines()[0] == "query-id\tcorpus-id\tscore"
    for name in ("corpus.jsonl", "queries.jsonl"):  # the fields BEIR's GenericDataLoader reads
        for line in (beir / name).read_text().splitlines():
            assert {"_id", "text"} <= json.loads(line).keys()
    test_set = load_beir(beir)
    corpus, queries, qrels = test_set.corpus, test_set.queries, test_set.qrels
    assert len(queries) == report["queries_per_split"]["test"]
    assert all(d in corpus for rel in qrels.values() for d in rel)

    training = json.loads((tmp_path / "prep" / "train.json").read_text())
    assert training["corpus"] == {"path": "./corpus/"}
    import pandas as pd

    train_corpus = set(pd.read_parquet(tmp_path / "prep" / "corpus" / "train.parquet")["id"])
    test_chunks = set(qrels_doc for rel in qrels.values() for qrels_doc in rel)
    for record in training["data"]:
        assert len(record["neg_doc"]) == params.hard_negatives_to_mine
        negative_ids = {n["id"] for n in record["neg_doc"]}
        assert record["pos_doc"][0]["id"] not in negative_ids
        assert not negative_ids & test_chunks
        assert negative_ids <= train_corpus


def test_a_ready_training_file_is_imported_without_conversion(tmp_path):
    from test_finetune import write_training_set

    source = write_training_set(tmp_path / "theirs", n_queries=6)
    report = run_prep(PrepParams(), source, tmp_path / "prep", tmp_path / "prep.json")
    assert report == {
        "input": "training_file",
        "train_records": 6,
        "corpus_chunks": 30,
        "records_scored_on_import": 0,
    }
    imported = json.loads((tmp_path / "prep" / "train.json").read_text())
    assert imported["data"] == json.loads(source.read_text())["data"]
    assert (tmp_path / "prep" / "corpus" / "train.parquet").exists()


def test_an_imported_training_file_without_scores_is_scored_by_the_embedder(tmp_path):
    """Distillation needs a score per document; files from elsewhere often have none."""
    from test_finetune import write_training_set

    source = write_training_set(tmp_path / "theirs", n_queries=4)
    spec = json.loads(source.read_text())
    for record in spec["data"]:
        for doc in record["pos_doc"] + record["neg_doc"][:2]:
            del doc["score"]
    source.write_text(json.dumps(spec))
    report = run_prep(PrepParams(), source, tmp_path / "prep", tmp_path / "prep.json")
    assert report["records_scored_on_import"] == 4
    for record in json.loads((tmp_path / "prep" / "train.json").read_text())["data"]:
        positive, negatives = record["pos_doc"][0]["score"], [d["score"] for d in record["neg_doc"]]
        assert negatives[2:] == [0.5, 0.5], "scores already there are kept"
        assert -1 <= min(negatives[:2]) and positive <= 1
        assert positive > max(negatives[:2]), (
            "the positive repeats the query's topic; the negatives do not"
        )


def test_a_training_file_with_unknown_ids_is_refused_by_record(tmp_path):
    import pytest
    from test_finetune import write_training_set

    from reranktune.io import InputError

    source = write_training_set(tmp_path / "theirs", n_queries=3)
    spec = json.loads(source.read_text())
    spec["data"][2]["neg_doc"][0]["id"] = "ghost"
    source.write_text(json.dumps(spec))
    with pytest.raises(InputError, match=r"data\[2\].*ghost"):
        run_prep(PrepParams(), source, tmp_path / "prep", tmp_path / "prep.json")


def test_hybrid_mining_adds_the_passages_bm25_ranks_high_and_keeps_the_dense_guard():
    from reranktune.retrieval.index import reciprocal_rank_fusion

    assert list(reciprocal_rank_fusion([[0, 1, 2], [2, 3]], k=60))[:2] == [
        2,
        0,
    ]  # in both lists beats first in one
    # dense space: query [1, 0]; pool rows 0-1 close to it, row 2 far (BM25's favourite),
    # row 3 the positive
    pool = np.array([[0.9, 0.436], [0.8, 0.6], [0.1, 0.995], [0.999, 0.045]], dtype=np.float32)
    kwargs = dict(
        positives=[["p"]],
        pool_ids=["a", "b", "lexical", "p"],
        pool_vectors=pool,
        positive_vectors={"p": pool[3]},
        n_negatives=2,
        margin=0.95,
        margin_type="perc",
        candidates=2,
        pad="drop",
        seed=0,
    )
    query = np.array([[1.0, 0.0]], dtype=np.float32)
    dense = mine_hard_negatives(query, **kwargs)
    assert [c for c, _ in dense.negatives[0]] == ["a", "b"]
    hybrid = mine_hard_negatives(query, lexical_rows=[[2, 1]], **kwargs)
    chosen = dict(hybrid.negatives[0])
    assert "lexical" in chosen and chosen["lexical"] == pytest.approx(
        0.1, abs=1e-6
    )  # scored by its cosine
