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
        block: int = 2048,
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
        k = min(per_word * 4 + 1, len(vocabulary))
        neighbours: dict[str, list[str]] = {}
        for start in range(0, len(vocabulary), block):
            sims = vectors[start : start + block] @ vectors.T
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            for row, candidates in enumerate(top):
                word = vocabulary[start + row]
                ranked = sorted(candidates, key=lambda j: -sims[row, j])
                close = [
                    vocabulary[j]
                    for j in ranked
                    if sims[row, j] >= min_similarity and not _related(word, vocabulary[j], stems)
                ][:per_word]
                if close:
                    neighbours[word] = close
        return cls(neighbours)

    def __len__(self) -> int:
        return len(self.neighbours)

    def get(self, word: str) -> list[str]:
        return self.neighbours.get(word, [])
