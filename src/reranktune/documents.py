"""Read documents and cut them into sentence chunks (spec, stage 0).

The input is a folder of text files (read recursively) or a BEIR-style ``corpus.jsonl``
(one ``{"_id", "title", "text"}`` record per document), so a corpus that comes with
labelled questions trains from the very documents its questions are judged on.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from reranktune.io import InputError

log = logging.getLogger(__name__)

# A sentence ends at . ! or ? followed by space and an upper-case letter, digit,
# quote or bracket; common abbreviations are not sentence ends.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[A-Z0-9\"'(\[])")
_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "Mr.", "Dr.", "cf.", "Fig.", "No.")
PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


@dataclass
class Document:
    source_id: str
    path: str
    text: str
    chunks: list[str] = field(default_factory=list)


@dataclass
class ReadReport:
    read: int = 0
    too_short: list[str] = field(default_factory=list)
    not_utf8: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "documents_read": self.read,
            "skipped_too_short": len(self.too_short),
            "skipped_not_utf8": len(self.not_utf8),
            "not_utf8_files": self.not_utf8,
        }


def split_sentences(paragraph: str) -> list[str]:
    text = " ".join(paragraph.split())
    if not text:
        return []
    pieces = _SENTENCE_END.split(text)
    sentences: list[str] = []
    for piece in pieces:
        if sentences and sentences[-1].endswith(_ABBREVIATIONS):
            sentences[-1] = f"{sentences[-1]} {piece}"
        else:
            sentences.append(piece)
    return [s.strip() for s in sentences if s.strip()]


_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:[-'][A-Za-z0-9_]+)*|\d+")
STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each either else few
    for from further had has have having he her here hers herself him himself his how however i
    if in into is it its itself just may me might more most must my myself no nor not now of off
    on once only or other our ours ourselves out over own same shall she should so some such than
    that the their theirs them themselves then there these they this those through thus to too
    under until up upon us use used uses using very via was we were what when where which while
    who whom why will with would you your yours yourself yourselves one two see also e g ie
    eg""".split()
)


def content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS and len(w) > 1]


def without_source_sentence(query: str, passage: str, min_overlap: float = 0.5) -> str:
    """The passage less the sentence the query was cut from (the inverse cloze task).

    A query made from a passage's own words is solved by matching them. Taken out, the model
    has to judge the passage by what surrounds the answer, which is what a real question's
    relevant passage offers. The source is the sentence holding the largest share of the
    query's words, when that share is at least ``min_overlap``; a one-sentence passage, or
    a query no sentence holds, comes back unchanged.
    """
    words = set(content_words(query))
    sentences = [s for para in PARAGRAPH_BREAK.split(passage) for s in split_sentences(para)]
    if not words or len(sentences) < 2:
        return passage
    overlaps = [len(words & set(content_words(s))) / len(words) for s in sentences]
    source = max(range(len(sentences)), key=overlaps.__getitem__)
    if overlaps[source] < min_overlap:
        return passage
    return " ".join(s for i, s in enumerate(sentences) if i != source)


def chunk_text(text: str, sentences_per_chunk: int) -> list[str]:
    """Paragraphs -> sentences -> chunks of ``sentences_per_chunk`` sentences."""
    sentences = [s for para in PARAGRAPH_BREAK.split(text) for s in split_sentences(para)]
    return [
        " ".join(sentences[i : i + sentences_per_chunk])
        for i in range(0, len(sentences), sentences_per_chunk)
    ]


def _wanted(path: Path, extensions: set[str]) -> bool:
    if path.name.startswith("."):
        return False
    return path.suffix.lower() in extensions


def read_corpus_jsonl(
    path: Path, min_text_length: int, sentences_per_chunk: int
) -> tuple[list[Document], ReadReport]:
    """One document per BEIR corpus record, its title as the first paragraph.

    A record that fits one chunk keeps its passage verbatim, as eval reads it ("title. text"),
    so training sees the very text that eval reranks.
    """
    from reranktune.io import iter_jsonl

    report = ReadReport()
    documents: list[Document] = []
    for lineno, record in iter_jsonl(path):
        if (
            not isinstance(record, dict)
            or not isinstance(record.get("_id"), (str, int))
            or not isinstance(record.get("text"), str)
        ):
            raise InputError(
                f'{path}:{lineno}: expected a corpus record with an "_id" and a "text"'
            )
        doc_id = str(record["_id"])
        title, text = (record.get("title") or "").strip(), record["text"].strip()
        if len(text) < min_text_length:
            report.too_short.append(doc_id)
            continue
        chunks = chunk_text(f"{title}.\n\n{text}" if title else text, sentences_per_chunk)
        passage = f"{title}. {text}" if title else text
        documents.append(
            Document(
                source_id=doc_id,
                path=doc_id,
                text=f"{title}\n\n{text}" if title else text,
                chunks=[passage] if len(chunks) == 1 else chunks,
            )
        )
        report.read += 1
    if not documents:
        raise InputError(
            f"{path}: no usable documents ({len(report.too_short)} shorter than {min_text_length})"
        )
    return documents, report


def read_documents(
    root: str | Path,
    file_extensions: list[str],
    min_text_length: int,
    sentences_per_chunk: int,
) -> tuple[list[Document], ReadReport]:
    """Every wanted file under ``root`` (or every record of a corpus .jsonl); short or non-UTF-8
    ones are reported."""
    root = Path(root)
    if root.is_file() and root.suffix == ".jsonl":
        return read_corpus_jsonl(root, min_text_length, sentences_per_chunk)
    if not root.is_dir():
        raise InputError(f"{root}: input folder (or corpus .jsonl file) not found")
    extensions = {e.lower() for e in file_extensions}
    report = ReadReport()
    documents: list[Document] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and _wanted(p, extensions)):
        rel = path.relative_to(root).as_posix()
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            log.warning("%s: not UTF-8 (byte %d), skipped", path, exc.start)
            report.not_utf8.append(rel)
            continue
        if len(text.strip()) < min_text_length:
            report.too_short.append(rel)
            continue
        chunks = chunk_text(text, sentences_per_chunk)
        documents.append(Document(source_id=rel, path=rel, text=text, chunks=chunks))
        report.read += 1
    if not documents:
        raise InputError(
            f"{root}: no usable documents (extensions {sorted(extensions)}, "
            f"{len(report.too_short)} too short, {len(report.not_utf8)} not UTF-8)"
        )
    if report.too_short:
        log.info(
            "skipped %d files shorter than %d characters", len(report.too_short), min_text_length
        )
    return documents, report
