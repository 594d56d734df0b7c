"""Read a folder of documents and cut them into sentence chunks (spec, stage 0)."""
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


def read_documents(
    root: str | Path,
    file_extensions: list[str],
    min_text_length: int,
    sentences_per_chunk: int,
) -> tuple[list[Document], ReadReport]:
    """Read every wanted file under ``root``; skip and report short or non-UTF-8 files."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: input folder not found")
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
        log.info("skipped %d files shorter than %d characters", len(report.too_short), min_text_length)
    return documents, report
