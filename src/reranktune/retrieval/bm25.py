"""BM25 for one (query, passage) pair at a time, from statistics saved with the model.

The BM25 first stage (bm25s) scores a query against an indexed corpus. The reranker's
prior needs the same evidence for any pair it is sent, with no corpus at hand (a NIM
``/v1/ranking`` request is a query and its passages): so the corpus's document
frequencies and mean length are saved with the model and the score is computed per pair,
with the same tokenizer and the same Lucene formula as bm25s (tests check the two agree).

The score is divided by the query's own ceiling, the sum of its terms' idf (Lucene's term
score tends to idf as the term frequency grows): 1 means every query term is saturated in
the passage. That puts every query on one 0..1 scale, which a fixed weight against the
dense cosine needs, and it can be computed from the query alone.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path

import numpy as np

from reranktune.io import InputError, read_json, write_json

K1 = 1.5
B = 0.75


def load_bm25s():
    """``bm25s``, kept off the GPU.

    Where JAX is installed, importing bm25s runs a JAX top-k, and JAX's first use of a GPU
    reserves 75% of its memory, which PyTorch then lacks. JAX is pinned to the CPU unless
    ``JAX_PLATFORMS`` says otherwise; callers retrieve with bm25s's numpy backend, so every
    machine ranks ties alike.
    """
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import bm25s

    return bm25s


def tokenize(texts: list[str], language: str = "english") -> list[list[str]]:
    """bm25s's tokenizer: lower case, words of 2+ characters, stopwords out and stemmed when
    ``language`` is set."""
    bm25s = load_bm25s()

    stemmer = stopwords = None
    if language:
        import Stemmer

        try:
            stemmer = Stemmer.Stemmer(language)
        except KeyError:
            raise InputError(
                f"BM25 language {language!r}: PyStemmer has no stemmer for it "
                f"(known: {', '.join(Stemmer.algorithms())})"
            ) from None
        stopwords = "en" if language == "english" else None
    return bm25s.tokenize(
        texts, stopwords=stopwords, stemmer=stemmer, show_progress=False, return_ids=False
    )


def bm25_search(
    queries: list[str], passages: list[str], k: int, language: str = "english"
) -> tuple[np.ndarray, np.ndarray]:
    """Okapi BM25 (bm25s, Lucene variant) over ``passages``: per query the best ``min(k, len)``
    (rows, scores).

    Zero-scored passages fill a query's list when fewer match; bm25s's numpy backend ranks
    ties alike on every machine.
    """
    retriever = load_bm25s().BM25()
    retriever.index(tokenize(passages, language), show_progress=False)
    return retriever.retrieve(
        tokenize(queries, language),
        k=min(k, len(passages)),
        show_progress=False,
        backend_selection="numpy",
    )


class LexicalScorer:
    """Normalised BM25 of a pair:
    ``sum idf(t) x tf / (tf + k1 (1 - b + b dl / avgdl)) / sum idf(t)``."""

    def __init__(
        self,
        idf: dict[str, float],
        avgdl: float,
        documents: int,
        language: str = "english",
        k1: float = K1,
        b: float = B,
    ) -> None:
        self.idf = idf
        self.avgdl = avgdl
        self.documents = documents
        self.language = language
        self.k1 = k1
        self.b = b

    @classmethod
    def fit(
        cls, corpus: list[str], language: str = "english", k1: float = K1, b: float = B
    ) -> LexicalScorer:
        """Statistics of ``corpus``; terms get bm25s's Lucene idf,
        ``ln(1 + (N - df + 0.5) / (df + 0.5))``."""
        if not corpus:
            raise ValueError("the lexical prior needs a non-empty corpus")
        tokens = tokenize(corpus, language)
        df = Counter(term for doc in tokens for term in set(doc))
        n = len(tokens)
        idf = {term: math.log(1 + (n - count + 0.5) / (count + 0.5)) for term, count in df.items()}
        avgdl = sum(len(doc) for doc in tokens) / n
        return cls(idf, avgdl, n, language, k1, b)

    def save(self, path: str | Path) -> None:
        write_json(
            path,
            {
                "k1": self.k1,
                "b": self.b,
                "language": self.language,
                "documents": self.documents,
                "avgdl": self.avgdl,
                "idf": self.idf,
            },
            indent=None,
        )

    @classmethod
    def load(cls, path: str | Path) -> LexicalScorer:
        stats = read_json(path)
        try:
            return cls(
                stats["idf"],
                float(stats["avgdl"]),
                int(stats["documents"]),
                stats["language"],
                float(stats["k1"]),
                float(stats["b"]),
            )
        except KeyError as exc:
            raise InputError(
                f"{path}: missing key {exc} (written by `reranktune finetune`)"
            ) from None

    def scores(self, queries: list[str], passages: list[str]) -> np.ndarray:
        """One score in [0, 1) per pair; each distinct text is tokenized once."""
        unique_queries = list(dict.fromkeys(queries))
        unique_passages = list(dict.fromkeys(passages))
        query_terms = dict(zip(unique_queries, tokenize(unique_queries, self.language)))
        passage_terms = {
            text: (Counter(tokens), len(tokens))
            for text, tokens in zip(unique_passages, tokenize(unique_passages, self.language))
        }
        out = np.zeros(len(queries), dtype=np.float64)
        for i, (query, passage) in enumerate(zip(queries, passages)):
            terms = [t for t in query_terms[query] if t in self.idf]
            ceiling = sum(self.idf[t] for t in terms)
            if not ceiling:
                continue
            counts, length = passage_terms[passage]
            norm = self.k1 * (1 - self.b + self.b * length / self.avgdl)
            out[i] = (
                sum(self.idf[t] * counts[t] / (counts[t] + norm) for t in terms if counts[t])
                / ceiling
            )
        return out
