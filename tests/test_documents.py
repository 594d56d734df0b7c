import logging

import pytest

from reranktune.documents import chunk_text, read_documents, split_sentences
from reranktune.io import InputError


def test_split_sentences_keeps_abbreviations():
    text = "Use a list, e.g. a Python list. It grows! Does it shrink? Yes."
    assert split_sentences(text) == [
        "Use a list, e.g. a Python list.",
        "It grows!",
        "Does it shrink?",
        "Yes.",
    ]


def test_chunks_group_sentences_across_paragraphs():
    text = "One. Two. Three.\n\nFour. Five.\n\n\nSix."
    assert chunk_text(text, 2) == ["One. Two.", "Three. Four.", "Five. Six."]


def test_reader_recurses_takes_extensionless_and_reports_bad_files(tmp_path, caplog):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "doc.md").write_text("Markdown text that is long enough to keep. " * 3)
    (tmp_path / "NOTES").write_text("An extensionless file that is also long enough. " * 3)
    (tmp_path / "short.txt").write_text("Too short.")
    (tmp_path / "latin1.txt").write_bytes(
        "Caf\xe9 au lait, long enough to count as text. ".encode("latin-1") * 3
    )
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    with caplog.at_level(logging.WARNING):
        docs, report = read_documents(tmp_path, [".txt", ".md", ""], 50, 5)
    assert sorted(d.path for d in docs) == ["NOTES", "a/b/doc.md"]
    assert report.too_short == ["short.txt"]
    assert report.not_utf8 == ["latin1.txt"]
    assert "latin1.txt" in caplog.text


def test_reader_stops_when_nothing_usable(tmp_path):
    (tmp_path / "x.txt").write_text("tiny")
    with pytest.raises(InputError, match="no usable documents"):
        read_documents(tmp_path, [".txt"], 50, 5)


def test_inverse_cloze_removes_the_sentence_the_query_was_cut_from():
    from reranktune.documents import without_source_sentence

    passage = (
        "Vacuum reclaims storage held by dead tuples. It runs in the background.\n\n"
        "Autovacuum starts it when a table changes enough."
    )
    assert without_source_sentence("reclaims storage dead tuples", passage) == (
        "It runs in the background. Autovacuum starts it when a table changes enough."
    )
    # a query no sentence holds, or a passage of one sentence, is left as it is
    assert without_source_sentence("index only scans", passage) == passage
    assert (
        without_source_sentence("reclaims storage", "Vacuum reclaims storage.")
        == "Vacuum reclaims storage."
    )
