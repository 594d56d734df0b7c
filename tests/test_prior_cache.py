"""The prior's embedding cache: the same vectors as the encoder, each text embedded once,
bounded."""

import numpy as np

from reranktune.retrieval.embedder import CachedEncoder


class CountingEncoder:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.seen += texts
        return np.array([[len(t), t.count("a"), 1.0] for t in texts], dtype=np.float32)


def test_cached_vectors_equal_the_encoders_and_each_text_is_embedded_once():
    encoder = CountingEncoder()
    cached = CachedEncoder(encoder, max_texts=10)
    first = cached(["banana", "apple", "banana"])
    again = cached(["apple", "cherry", "banana"])
    np.testing.assert_array_equal(first, encoder(["banana", "apple", "banana"]))
    np.testing.assert_array_equal(again, encoder(["apple", "cherry", "banana"]))
    assert encoder.seen[:3] == ["banana", "apple", "cherry"]  # before the two direct calls above
    assert cached([]).shape[0] == 0


def test_the_least_recently_used_text_is_evicted_first():
    encoder = CountingEncoder()
    cached = CachedEncoder(encoder, max_texts=2)
    cached(["a", "b"])
    cached(["a"])  # b is now the oldest
    cached(["c"])  # evicts b
    encoder.seen.clear()
    cached(["a", "b", "c"])
    assert encoder.seen == ["b"]
