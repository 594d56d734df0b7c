"""Word neighbours for paraphrased pseudo-queries: vocabulary mismatch, simulated offline.

A pseudo-query cut from its passage shares every word with it, so lexical matching alone ranks
the passage first and training learns little the first stage does not already know. Real
questions often name things in other words than their answer does. Asking a pseudo-query with
one word swapped for a corpus word the embedding model places close to it, a word its positive
lacks, gives queries on which the first stage can be wrong, as it is on real ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from reranktune.retrieval.index import DenseIndex


def _related(a: str, b: str, stems: dict[str, str]) -> bool:
    """One word inflects or negates the other (same stem, or one spelled inside the other)."""
    return stems[a] == stems[b] or a in b or b in a


class WordNeighbours:
    """Each corpus word's nearest other corpus words by the embedding model, closest first."""

    def __init__(self, neighbours: dict[str, list[str]]) -> None:
        self.neighbours = neighbours

    @classmethod
    def build(
        cls,
        words: Iterable[str],
        embed: Callable[[list[str]], np.ndarray],
        min_similarity: float,
        per_word: int = 5,
    ) -> WordNeighbours:
        """Neighbours at cosine ``>= min_similarity``, at most ``per_word`` each; ``embed`` returns
        L2-normalised vectors. Inflections and negations of a word are not its neighbours."""
        import Stemmer

        vocabulary = sorted(set(words))
        if len(vocabulary) < 2:
            return cls({})
        stem = Stemmer.Stemmer("english").stemWord
        stems = {w: stem(w) for w in vocabulary}
        vectors = embed(vocabulary)
        # more candidates than kept: the word itself and its inflections come back too
        scores, ids = DenseIndex(vectors).search(vectors, per_word * 4 + 1)
        neighbours: dict[str, list[str]] = {}
        for word, row_scores, row_ids in zip(vocabulary, scores, ids):
            close = [
                vocabulary[j]
                for score, j in zip(row_scores, row_ids)
                if score >= min_similarity and not _related(word, vocabulary[j], stems)
            ][:per_word]
            if close:
                neighbours[word] = close
        return cls(neighbours)

    def __len__(self) -> int:
        return len(self.neighbours)

    def get(self, word: str) -> list[str]:
        return self.neighbours.get(word, [])
