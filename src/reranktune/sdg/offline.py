"""Offline pseudo-query generator: no LLM, no key, deterministic under a seed.

Queries are extracted from the corpus itself, in the shapes real users type:
- *keyword* queries: the rarest content words of a salient sentence, in order;
- *question* queries: a definitional sentence ("X is ...") rewritten as "what is X";
- *wh* questions: a sentence's leading name or its date asked about ("who won the ...",
  "when did ..."), the shape of real questions about facts;
- *sentence* queries: a salient sentence's leading clause, lower-cased (inverse cloze);
- *short title* queries: the rarest words of a long title, the shape of topical searches;
- *title* queries: a document's or section's heading, positive = the chunk under it;
- *multi-hop* queries: key phrases of two chunks of one document, both positive;
- with ``paraphrase_rate`` > 0, that share of them asked with one word swapped for a close
  corpus word their positive lacks (``reranktune.sdg.paraphrase``).

Each query is scored by a heuristic judge (1-10): how rare its words are and
whether its positive chunk is the best lexical match in the whole corpus, so that
ambiguous queries (many chunks match equally) fall below the quality threshold.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator

import numpy as np

from reranktune.documents import (
    PARAGRAPH_BREAK,
    STOPWORDS,
    Document,
    content_words,
    split_sentences,
)
from reranktune.params import SdgParams
from reranktune.sdg.paraphrase import WordNeighbours
from reranktune.sdg.records import QAPair, document_record

JUDGE = "heuristic: rare-word specificity and lexical rank of the positive chunk"

_DEFINITION = re.compile(
    r"^(?:The |A |An )?(?P<subject>[A-Za-z][\w\-'`()]*(?: [\w\-'`()]+){0,4}?) "
    r"(?P<verb>is|are|means|refers to) "
)
_DATE = re.compile(
    r",? ?(?:(?:on|in|since|by|from|until) )?(?:(?:early|late|mid)[- ])?"
    r"(?:(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.? (?:\d{1,2},? )?)?"
    r"(?:19|20)\d\d\b"
)
_LEADING_NAME = re.compile(
    r"^(?:The )?(?P<name>(?:[A-Z][\w.'&-]*|\d[\w.-]*)"
    r"(?: (?:[A-Z][\w.'&-]*|of|de|\d[\w.-]*)){0,5}) (?P<rest>[a-z].*)$"
)
_PERSON_HINT = re.compile(
    r"\b(?:he|she|his|her|him|said|says|told|born|died|player|singer|actor|actress|director|"
    r"president|minister|ceo|coach|star|rapper|artist|author|founder)\b",
    re.I,
)
_CLAUSE_END = re.compile(r"[,;:()\[\]\"“”]| - | – | — ")
_NOT_A_VERB = frozenset("to of in for on at with from by and or as the a an that which who".split())


class LexicalIndex:
    """IDF statistics and an inverted index over every chunk of the corpus."""

    def __init__(self, chunks: list[str]) -> None:
        self.postings: dict[str, set[int]] = defaultdict(set)
        for i, chunk in enumerate(chunks):
            for word in set(content_words(chunk)):
                self.postings[word].add(i)
        n = len(chunks)
        self.idf = {w: math.log((n + 1) / (len(ids) + 0.5)) for w, ids in self.postings.items()}
        self.max_idf = math.log((n + 1) / 1.5)

    def rank_of(self, words: list[str], positive: int) -> int:
        """1-based rank of chunk ``positive`` when chunks are scored by summed IDF of ``words``."""
        scores: Counter[int] = Counter()
        for word in set(words):
            for chunk in self.postings.get(word, ()):
                scores[chunk] += self.idf[word]
        own = scores.get(positive, 0.0)
        return 1 + sum(1 for s in scores.values() if s > own + 1e-9)

    def vocabulary(self, min_chunks: int = 2) -> list[str]:
        """Words of three or more letters found in ``min_chunks`` chunks or more."""
        return [
            w
            for w, ids in self.postings.items()
            if len(ids) >= min_chunks and len(w) > 2 and w.isalpha()
        ]


class OfflineGenerator:
    def __init__(
        self,
        documents: list[Document],
        seed: int = 42,
        queries_per_chunk: int = 2,
        multi_hop_per_document: int = 1,
        min_query_words: int = 3,
        max_query_words: int = 12,
        paraphrase_rate: float = 0.0,
    ) -> None:
        self.documents = documents
        self.seed = seed
        self.queries_per_chunk = queries_per_chunk
        self.multi_hop_per_document = multi_hop_per_document
        self.min_words = min_query_words
        self.max_words = max_query_words
        self.paraphrase_rate = paraphrase_rate
        self.neighbours = WordNeighbours({})  # from_params finds them when paraphrasing
        self.offsets: list[int] = []
        all_chunks: list[str] = []
        for doc in documents:
            self.offsets.append(len(all_chunks))
            all_chunks.extend(doc.chunks)
        self.index = LexicalIndex(all_chunks)
        self.median_idf = (
            sorted(self.index.idf.values())[len(self.index.idf) // 2] if self.index.idf else 0.0
        )

    @classmethod
    def from_params(
        cls,
        documents: list[Document],
        params: SdgParams,
        embed: Callable[[list[str]], np.ndarray] | None = None,
    ) -> OfflineGenerator:
        """The generator ``params.yaml``'s sdg section describes; ``embed`` (texts to
        L2-normalised vectors) finds the paraphrases' word neighbours."""
        generator = cls(
            documents,
            seed=params.seed,
            queries_per_chunk=params.queries_per_chunk,
            multi_hop_per_document=params.multi_hop_per_document,
            min_query_words=params.min_query_words,
            max_query_words=params.max_query_words,
            paraphrase_rate=params.paraphrase_rate,
        )
        if params.paraphrase_rate > 0:
            if embed is None:
                raise ValueError("sdg.paraphrase_rate > 0 needs an embedding model")
            generator.neighbours = WordNeighbours.build(
                generator.index.vocabulary(), embed, params.paraphrase_min_similarity
            )
        return generator

    # -- scoring ---------------------------------------------------------------
    def _idf(self, word: str) -> float:
        return self.index.idf.get(word, self.index.max_idf)

    def _salience(self, sentence: str) -> float:
        words = content_words(sentence)
        if len(words) < self.min_words:
            return 0.0
        return sum(self._idf(w) for w in words) / len(words) * math.log(1 + len(words))

    def judge(self, query: str, global_positive: int) -> float:
        """1-10: rare words (specificity), positive ranked first lexically, sensible length."""
        words = content_words(query)
        if not words:
            return 1.0
        specificity = sum(self._idf(w) for w in words) / len(words) / self.index.max_idf
        rank = self.index.rank_of(words, global_positive)
        rank_score = 1.0 if rank == 1 else 0.6 if rank <= 3 else 0.3 if rank <= 10 else 0.0
        length_ok = 1.0 if self.min_words <= len(query.split()) <= self.max_words + 4 else 0.5
        return round(1 + 9 * (0.45 * specificity + 0.35 * rank_score + 0.2 * length_ok), 1)

    # -- query shapes ------------------------------------------------------------
    def _keyword_query(self, sentence: str, rng: random.Random) -> str:
        """The most informative run of consecutive content words, as a search-box query."""
        words = content_words(sentence)
        n = min(
            len(words), rng.randint(self.min_words, max(self.min_words, min(6, self.max_words)))
        )
        best = max(
            range(len(words) - n + 1), key=lambda i: sum(self._idf(w) for w in words[i : i + n])
        )
        return " ".join(words[best : best + n])

    def _question_query(self, sentence: str) -> str | None:
        match = _DEFINITION.match(sentence)
        if not match:
            return None
        subject = match.group("subject").strip(" `'")
        words = content_words(subject)
        if (
            not words
            or subject.split()[0].lower() in STOPWORDS
            or max(map(self._idf, words)) < self.median_idf
        ):
            return None
        verb = {"means": "does", "refers to": "does"}.get(match.group("verb"))
        if verb:
            return f"what {verb} {subject} mean"
        return f"what {match.group('verb')} {subject}"

    def _clause(self, text: str) -> str:
        """Lower-cased words of ``text`` up to its first clause break, at most max_words long."""
        head = _CLAUSE_END.split(text, maxsplit=1)[0]
        words = [w.strip(".!?'`’") for w in head.lower().split()]
        return " ".join([w for w in words if w][: self.max_words])

    def _sentence_query(self, sentence: str) -> str | None:
        """The leading clause of a salient sentence, as a long natural-language query."""
        query = self._clause(sentence)
        return query if len(content_words(query)) >= self.min_words else None

    def _wh_question(self, sentence: str) -> str | None:
        """Ask for the sentence's date ("when ...") or its leading name ("who/what ...")."""
        date = _DATE.search(sentence)
        if date and date.start() > 0:
            rest = self._clause(_DATE.sub("", sentence, count=1))
            if len(content_words(rest)) >= self.min_words:
                return f"when {rest}"
        match = _LEADING_NAME.match(sentence)
        if (
            match
            and match.group("name").split()[0].lower() not in STOPWORDS
            and match.group("rest").split()[0] not in _NOT_A_VERB
        ):
            rest = self._clause(match.group("rest"))
            if len(content_words(rest)) >= self.min_words:
                wh = "who" if _PERSON_HINT.search(match.group("rest")) else "what"
                return f"{wh} {rest}"
        return None

    def _short_title(self, title: str) -> str | None:
        """A long title's rarest content words in order: the shape of a topical search."""
        words = list(dict.fromkeys(content_words(title)))
        if len(words) <= self.min_words:
            return None
        keep = set(sorted(words, key=self._idf, reverse=True)[: self.min_words])
        return " ".join(w for w in words if w in keep)

    def _heading(self, text: str) -> str | None:
        """The first line, when it reads as a title.

        A title may end with a full stop (most paper titles do) when it is a paragraph
        of its own with text after it; a first line that runs on into the body is not one.
        """
        paragraphs = PARAGRAPH_BREAK.split(text.strip())
        first = paragraphs[0].splitlines()[0].strip() if paragraphs[0] else ""
        if first.endswith(".") and len(paragraphs) > 1 and "\n" not in paragraphs[0].strip():
            first = first[:-1].rstrip()
        words = first.split()
        if 1 <= len(words) <= self.max_words + 12 and not first.endswith((".", ":", ";", ",")):
            return first
        return None

    def _paraphrase(self, question: str, positive: str) -> str:
        """``question`` with its rarest word that has a neighbour the positive lacks swapped for
        that neighbour; unchanged where no word has one."""
        own = set(content_words(positive))
        for word in sorted(sorted(set(content_words(question))), key=self._idf, reverse=True):
            for other in self.neighbours.get(word):
                if other not in own:
                    pattern = rf"(?<![\w-]){re.escape(word)}(?![\w-])"
                    return re.sub(pattern, other, question, count=1, flags=re.I)
        return question

    # -- generation ----------------------------------------------------------------
    def pairs_for(self, doc_index: int) -> list[QAPair]:
        doc = self.documents[doc_index]
        offset = self.offsets[doc_index]
        rng = random.Random(f"{self.seed}:{doc.source_id}")
        pairs: list[QAPair] = []
        seen: set[str] = set()

        def add(
            question: str,
            answer: str,
            qtype: str,
            rtype: str,
            segments: list[int],
            contexts: list[dict],
        ):
            if self.neighbours and rng.random() < self.paraphrase_rate:
                positive = " ".join(doc.chunks[s - 1] for s in segments)
                question = self._paraphrase(question, positive)
            key = " ".join(sorted(set(content_words(question))))
            if not key or key in seen:
                return
            seen.add(key)
            score = self.judge(question, offset + segments[0] - 1)
            pairs.append(
                QAPair(question, answer, qtype, rtype, segments, score, len(segments), contexts)
            )

        heading = self._heading(doc.text)
        if heading and doc.chunks:
            for title in (heading, self._short_title(heading)):
                if title:
                    add(
                        title,
                        doc.chunks[0],
                        "structural",
                        "factual",
                        [1],
                        [{"hop_number": 1, "segment_ids": [1], "summary": heading}],
                    )

        best_by_chunk: list[tuple[str, list[str]]] = []
        for chunk_id, chunk in enumerate(doc.chunks, start=1):
            sentences = sorted(split_sentences(chunk), key=self._salience, reverse=True)
            sentences = [s for s in sentences if self._salience(s) > 0]
            for sentence in sentences[: self.queries_per_chunk]:
                question = self._question_query(sentence)
                if question:
                    add(
                        question,
                        sentence,
                        "contextual",
                        "factual",
                        [chunk_id],
                        [{"hop_number": 1, "segment_ids": [chunk_id], "summary": sentence}],
                    )
                keywords = self._keyword_query(sentence, rng)
                add(
                    keywords,
                    sentence,
                    "contextual",
                    "factual",
                    [chunk_id],
                    [{"hop_number": 1, "segment_ids": [chunk_id], "summary": sentence}],
                )
                for extra, reasoning in (
                    (self._wh_question(sentence), "factual"),
                    (self._sentence_query(sentence), "factual"),
                ):
                    if extra:
                        add(
                            extra,
                            sentence,
                            "contextual",
                            reasoning,
                            [chunk_id],
                            [{"hop_number": 1, "segment_ids": [chunk_id], "summary": sentence}],
                        )
            if sentences:
                best_by_chunk.append((sentences[0], [str(chunk_id)]))

        if len(best_by_chunk) >= 2:
            for _ in range(self.multi_hop_per_document):
                (s1, (c1,)), (s2, (c2,)) = rng.sample(best_by_chunk, 2)
                a, b = sorted([(int(c1), s1), (int(c2), s2)])
                k1 = " ".join(self._keyword_query(a[1], rng).split()[:3])
                k2 = " ".join(self._keyword_query(b[1], rng).split()[:3])
                add(
                    f"{k1} and {k2}",
                    f"{a[1]} {b[1]}",
                    "multi_hop",
                    "relational",
                    [a[0], b[0]],
                    [
                        {"hop_number": i + 1, "segment_ids": [c], "summary": s}
                        for i, (c, s) in enumerate([a, b])
                    ],
                )
        return pairs

    def records(self) -> Iterator[dict]:
        for i, doc in enumerate(self.documents):
            yield document_record(doc, self.pairs_for(i), JUDGE)
