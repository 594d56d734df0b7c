import numpy as np
import pytest

from reranktune.documents import Document, content_words
from reranktune.params import SdgParams
from reranktune.sdg.offline import OfflineGenerator
from reranktune.sdg.paraphrase import WordNeighbours

# words sharing a direction are synonyms to the fake embedding model; the rest stand alone
SYNONYMS = [
    ("aircraft", "airplane"),
    ("turbulence", "eddies"),
    ("flow", "flows", "inflows"),
]


def fake_embed(words: list[str]) -> np.ndarray:
    groups = {w: g for g, group in enumerate(SYNONYMS) for w in group}
    vectors = np.zeros((len(words), len(SYNONYMS) + len(words)), dtype=np.float32)
    for i, word in enumerate(words):
        vectors[i, groups[word] if word in groups else len(SYNONYMS) + i] = 1.0
    return vectors


def test_neighbours_are_close_words_not_inflections_or_negations():
    words = ["aircraft", "airplane", "turbulence", "eddies", "flow", "flows", "inflows"]
    neighbours = WordNeighbours.build(words + ["wing"], fake_embed, min_similarity=0.7)
    assert neighbours.get("aircraft") == ["airplane"]
    assert neighbours.get("eddies") == ["turbulence"]
    assert neighbours.get("flow") == []  # "flows" shares its stem, "inflows" spells it
    assert neighbours.get("wing") == []
    assert len(neighbours) == 4


def _documents() -> list[Document]:
    texts = [
        "Aircraft wings flutter when turbulence excites their bending modes at high speed.",
        "An airplane cabin keeps its pressure while the aircraft climbs through thin air.",
        "Eddies shed behind a cylinder form a street of alternating vortices downstream.",
        "Turbulence and eddies thicken a boundary layer as viscous forces slow the flow.",
    ]
    return [Document(f"d{i}", f"d{i}", t, [t]) for i, t in enumerate(texts)]


def _generator(rate: float) -> OfflineGenerator:
    params = SdgParams(paraphrase_rate=rate, paraphrase_min_similarity=0.7)
    return OfflineGenerator.from_params(_documents(), params, fake_embed)


def test_a_paraphrased_query_swaps_one_word_for_a_neighbour_its_positive_lacks():
    generator = _generator(1.0)
    swapped = 0
    for d, document in enumerate(generator.documents):
        own = set(content_words(document.chunks[0]))
        for pair in generator.pairs_for(d):
            foreign = set(content_words(pair.question)) - own
            assert len(foreign) <= 1
            if foreign:
                swapped += 1
                (word,) = foreign
                assert any(word in generator.neighbours.get(w) for w in own)
    assert swapped  # d0's queries about turbulence are asked about eddies (in two passages)


def test_paraphrase_rate_zero_generates_what_it_did_without_neighbours():
    without = OfflineGenerator(_documents(), seed=42)
    generator = _generator(0.0)
    assert not generator.neighbours
    assert list(generator.records()) == list(without.records())


def test_a_paraphrase_rate_without_an_embedding_model_is_refused():
    with pytest.raises(ValueError, match="paraphrase_rate"):
        OfflineGenerator.from_params(_documents(), SdgParams(paraphrase_rate=0.5))


def test_the_paraphrase_rate_is_a_share():
    with pytest.raises(ValueError):
        SdgParams(paraphrase_rate=1.5)


def test_run_sdg_paraphrases_with_the_embedding_model(small_corpus, tmp_path):
    import json

    from reranktune.sdg.run import run_sdg

    out = tmp_path / "qa.jsonl"
    params = SdgParams(input_path=str(small_corpus), paraphrase_rate=1.0)
    run_sdg(params, out, tmp_path / "sdg.json")
    foreign = 0
    for line in out.read_text().splitlines():
        record = json.loads(line)
        chunks = {c["chunk_id"]: c["text"] for c in record["chunks"]}
        for pair in record["deduplicated_qa_pairs"]:
            positive = " ".join(chunks[s] for s in pair["segment_ids"])
            foreign += bool(set(content_words(pair["question"])) - set(content_words(positive)))
    assert foreign > 0
