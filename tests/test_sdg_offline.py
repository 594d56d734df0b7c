import json

from reranktune.documents import read_documents
from reranktune.params import SdgParams
from reranktune.sdg.offline import OfflineGenerator
from reranktune.sdg.run import run_sdg


def _generate(corpus, seed=42):
    docs, _ = read_documents(corpus, [".txt", ""], 50, 5)
    return list(OfflineGenerator(docs, seed=seed).records())


def test_records_have_the_spec_shape(small_corpus):
    records = _generate(small_corpus)
    assert len(records) == 12
    for record in records:
        chunk_ids = {c["chunk_id"] for c in record["chunks"]}
        assert min(chunk_ids) == 1
        pairs = record["deduplicated_qa_pairs"]
        assert len(pairs) == len(record["qa_evaluations"]["evaluations"])
        for pair, judged in zip(pairs, record["qa_evaluations"]["evaluations"]):
            assert set(pair["segment_ids"]) <= chunk_ids
            assert pair["hop_count"] == len(pair["segment_ids"])
            assert 1 <= judged["overall"]["score"] <= 10
            assert pair["question"].strip()
    query_types = {p["query_type"] for r in records for p in r["deduplicated_qa_pairs"]}
    assert {"contextual", "multi_hop"} <= query_types


def test_generation_is_deterministic_under_a_seed(small_corpus):
    assert _generate(small_corpus, 7) == _generate(small_corpus, 7)
    assert _generate(small_corpus, 7) != _generate(small_corpus, 8)


def test_keyword_queries_come_from_their_positive_chunk(small_corpus):
    for record in _generate(small_corpus):
        chunks = {c["chunk_id"]: c["text"].lower() for c in record["chunks"]}
        for pair in record["deduplicated_qa_pairs"]:
            if pair["query_type"] == "contextual" and pair["question"].split()[0] not in (
                "what",
                "who",
                "when",
            ):
                words = pair["question"].split()
                assert all(w in chunks[pair["segment_ids"][0]] for w in words)


def test_run_sdg_writes_jsonl_and_summary(small_corpus, tmp_path):
    out, summary = tmp_path / "qa.jsonl", tmp_path / "sdg.json"
    result = run_sdg(SdgParams(input_path=str(small_corpus)), out, summary)
    lines = out.read_text().splitlines()
    assert len(lines) == result["documents_read"] == 12
    assert json.loads(summary.read_text())["qa_pairs"] == result["qa_pairs"] > 0


def test_question_and_title_shapes_follow_their_sentence():
    from reranktune.documents import Document

    text = (
        "Vitamin D Deficiency and Bone Health in Older Adults of Northern Europe\n\n"
        "Geoff Keighley told reporters the tenth show sold out in Los Angeles. "
        "The European Film Awards took place on December 9, 2023 in Berlin with many surprises."
    )
    docs = [
        Document("d1", "d1", text, [text.replace("\n\n", ". ")]),
        Document(
            "d2",
            "d2",
            "Unrelated filler text about gardening tomatoes.",
            ["Unrelated filler text."],
        ),
    ]
    questions = [
        p.question for p in OfflineGenerator(docs, seed=1, queries_per_chunk=3).pairs_for(0)
    ]
    assert "when the european film awards took place in berlin with many surprises" in questions
    assert "who told reporters the tenth show sold out in los angeles" in questions
    assert text.splitlines()[0] in questions  # the whole title
    short = [
        q
        for q in questions
        if q != text.splitlines()[0] and set(q.split()) <= set(text.lower().split())
    ]
    assert any(len(q.split()) == 3 for q in short)  # its rarest words


def test_a_title_ending_in_a_full_stop_is_still_a_title():
    """Paper titles end with a full stop; a one-line first paragraph is a title, a run-on line is
    not."""
    from reranktune.documents import Document

    body = "Statin users had a lower risk of breast cancer death in a national cohort from Finland."
    titled = "Statin Use and Breast Cancer Survival: A Nationwide Cohort Study.\n\n" + body
    run_on = "Statin use was studied in a cohort.\n" + body
    docs = [
        Document("t", "t", titled, [titled.replace("\n\n", " ")]),
        Document("r", "r", run_on, [run_on.replace("\n", " ")]),
        Document(
            "x", "x", "Unrelated filler text about gardening tomatoes.", ["Unrelated filler text."]
        ),
    ]
    generator = OfflineGenerator(docs, seed=1)
    titles = [p.question for p in generator.pairs_for(0) if p.query_type == "structural"]
    assert "Statin Use and Breast Cancer Survival: A Nationwide Cohort Study" in titles
    assert not [p for p in generator.pairs_for(1) if p.query_type == "structural"]
