#!/usr/bin/env python3
"""Build the bundled sample corpus of permissively licensed plain-text documents.

Two sources are converted to clean UTF-8 plain text (paragraphs separated by one
blank line, each document capped at about MAX_CHARS characters of whole
paragraphs):

* the Python language-reference topics that ship with Python itself
  (``pydoc_data.topics``, PSF License Agreement), one file per topic in
  ``<out>/python/<topic>.txt``;
* a fixed list of SQL command reference pages from the PostgreSQL manual as
  packaged by Debian (``postgresql-doc-15``, PostgreSQL Licence), one file per
  page in ``<out>/postgresql/<page>.txt``; the pages in EXTENSIONLESS_PAGES are
  written without an extension to ``<out>/postgresql/extensionless/<page>``.

The output is deterministic for a given Python version and package version.
The corpus is built in a temporary folder next to the output folder and then
swapped into place, so a failed run never leaves a half-written corpus.

Rebuild (from the repository root, Debian/Ubuntu)::

    apt-get update && apt-get install -y postgresql-doc-15
    python3 scripts/build_sample_corpus.py tests/fixtures/sample_corpus
"""

from __future__ import annotations

import argparse
import html.parser
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

MAX_CHARS = 6000
"""Soft cap per document: whole paragraphs are kept while the text fits."""

MIN_CHARS = 200
"""Documents shorter than this after conversion are skipped (and reported)."""

REPO_ROOT = Path(__file__).resolve().parent.parent
PG_DOC_PACKAGE = "postgresql-doc-15"
DEFAULT_PG_HTML_DIR = Path("/usr/share/doc") / PG_DOC_PACKAGE / "html"

# Fixed, sorted list of 80 SQL command reference pages (stem of the HTML file):
# the core DML/DDL/transaction commands plus the other command pages with the
# most text, so that the corpus reaches a useful size under MAX_CHARS.
PG_PAGES: tuple[str, ...] = (
    "sql-alteraggregate",
    "sql-altercollation",
    "sql-alterdatabase",
    "sql-alterdefaultprivileges",
    "sql-alterdomain",
    "sql-alterextension",
    "sql-alterforeigntable",
    "sql-alterfunction",
    "sql-alterindex",
    "sql-alteropfamily",
    "sql-alterprocedure",
    "sql-alterpublication",
    "sql-alterrole",
    "sql-altersequence",
    "sql-altersubscription",
    "sql-altertable",
    "sql-altertype",
    "sql-alterview",
    "sql-analyze",
    "sql-begin",
    "sql-cluster",
    "sql-comment",
    "sql-commit",
    "sql-copy",
    "sql-createaggregate",
    "sql-createcast",
    "sql-createcollation",
    "sql-createdatabase",
    "sql-createdomain",
    "sql-createextension",
    "sql-createforeigndatawrapper",
    "sql-createforeigntable",
    "sql-createfunction",
    "sql-createindex",
    "sql-createlanguage",
    "sql-creatematerializedview",
    "sql-createopclass",
    "sql-createoperator",
    "sql-createpolicy",
    "sql-createprocedure",
    "sql-createpublication",
    "sql-createrole",
    "sql-createrule",
    "sql-createschema",
    "sql-createsequence",
    "sql-createstatistics",
    "sql-createsubscription",
    "sql-createtable",
    "sql-createtableas",
    "sql-createtransform",
    "sql-createtrigger",
    "sql-createtype",
    "sql-createview",
    "sql-declare",
    "sql-delete",
    "sql-dropindex",
    "sql-dropprocedure",
    "sql-droptable",
    "sql-explain",
    "sql-fetch",
    "sql-grant",
    "sql-insert",
    "sql-listen",
    "sql-lock",
    "sql-merge",
    "sql-notify",
    "sql-prepare",
    "sql-prepare-transaction",
    "sql-reindex",
    "sql-revoke",
    "sql-savepoint",
    "sql-security-label",
    "sql-select",
    "sql-set",
    "sql-set-transaction",
    "sql-show",
    "sql-truncate",
    "sql-update",
    "sql-vacuum",
    "sql-values",
)

# Pages written without a file extension, to exercise the corpus reader.
EXTENSIONLESS_PAGES: frozenset[str] = frozenset(
    {
        "sql-analyze",
        "sql-begin",
        "sql-cluster",
        "sql-declare",
        "sql-explain",
        "sql-fetch",
        "sql-listen",
        "sql-lock",
        "sql-reindex",
        "sql-vacuum",
    }
)

HEADING, TERM, TEXT, CODE = "heading", "term", "text", "code"

# A line made only of underline / table-border characters containing a run of
# three equal rule characters (e.g. "*****", "=====", "+----+----+", psql's
# "-----+-----"), or an empty doctest prompt (">>>", "..."). Grammar lines such
# as "* |" are not rules.
_RULE_LINE = re.compile(r"^(?=[\s*=\-~^_+|#:]*$)(?=.*([*=\-~^_])\1\1).*$|^\s*(?:>>>|\.\.\.)\s*$")
_BORDER_LINE = re.compile(r"^\s*[+|][-=+|]*[+|]\s*$")


@dataclass(frozen=True)
class Para:
    """One paragraph of a document: its kind (heading, term, text, code) and text."""

    kind: str
    text: str


@dataclass(frozen=True)
class Doc:
    """One output document: path relative to the corpus root, and its text."""

    relpath: str
    text: str


def cap_paragraphs(paras: list[Para], limit: int = MAX_CHARS) -> str:
    """Join whole paragraphs (blank-line separated) while the text fits in *limit*.

    The first paragraph is always kept. Trailing headings and definition terms
    (which would announce a section or item that was cut off) are dropped.
    """
    kept: list[Para] = []
    size = 0
    for para in paras:
        extra = len(para.text) + (2 if kept else 0)
        if kept and size + extra > limit:
            break
        kept.append(para)
        size += extra
    while len(kept) > 1 and kept[-1].kind in (HEADING, TERM):
        kept.pop()
    return "\n\n".join(p.text for p in kept) + "\n"


def collapse(text: str) -> str:
    """Collapse runs of whitespace inside a prose paragraph to single spaces."""
    return " ".join(text.split())


# --------------------------------------------------------------------------- #
# Python pydoc topics
# --------------------------------------------------------------------------- #


def _grid_table_rows(lines: list[str]) -> list[str]:
    """Turn an RST grid table (as rendered in pydoc topics) into one line per row.

    Column boundaries are taken from the '+' positions of the first border line;
    multi-line cells are joined with spaces and cells are separated by ' | '.
    """
    border = next(ln for ln in lines if _BORDER_LINE.match(ln))
    cuts = [i for i, ch in enumerate(border) if ch in "+|"]
    indent = " " * (len(border) - len(border.lstrip()))
    rows: list[str] = []
    group: list[str] = []

    def flush() -> None:
        if not group:
            return
        cells: list[str] = []
        for left, right in zip(cuts, cuts[1:], strict=False):
            cell = " ".join(collapse(ln[left + 1 : right]) for ln in group)
            cells.append(collapse(cell))
        while cells and not cells[-1]:  # e.g. an empty "Notes" column
            cells.pop()
        if cells:
            rows.append(indent + " | ".join(cells))
        group.clear()

    for line in lines:
        if _BORDER_LINE.match(line):
            flush()
        else:
            group.append(line)
    flush()
    return rows


_RUBRIC = re.compile(r"^-\[ (.+) \]-$")  # pydoc rendering of ".. rubric::"
WRAP_WIDTH = 70  # pydoc topics are hard-wrapped at 70 columns
_BULLET = re.compile(r"^(?:[*-]|\d+\.|\(\d+\)) ")


def _python_blocks(raw: str) -> list[tuple[str, list[str]]]:
    """Split a topic into blank-line separated blocks of lines.

    Returns (kind, lines) pairs, kind being HEADING (a line that was followed
    by an underline, or a rubric such as "-[ Footnotes ]-"), CODE for a grid
    table rewritten one row per line, or TEXT for anything else.
    """
    lines = raw.expandtabs(8).splitlines()
    blocks: list[tuple[str, list[str]]] = []
    current: list[str] = []

    def end_block(kind: str = TEXT) -> None:
        nonlocal current
        if current:
            blocks.append((kind, current))
            current = []

    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if _BORDER_LINE.match(line) and line.strip().startswith("+"):
            end_block()
            j = i - 1
            while j < len(lines) and lines[j].strip() and lines[j].lstrip()[:1] in "+|":
                j += 1
            current = _grid_table_rows(lines[i - 1 : j])
            end_block(CODE)
            i = j
        elif _RULE_LINE.match(line):
            underline = len(current) == 1 and line.strip()[:1] in "*=-~^"
            end_block(HEADING if underline else TEXT)
        elif rubric := _RUBRIC.match(line.strip()):
            end_block()
            current = [rubric.group(1)]
            end_block(HEADING)
        elif not line.strip():
            end_block()
        else:
            current.append(line.rstrip())
    end_block()
    return blocks


def _join_wrapped(lines: list[str]) -> str:
    """Join hard-wrapped lines into one, undoing breaks after hyphens."""
    text = ""
    for line in lines:
        part = line.strip()
        if not text:
            text = part
        elif re.search(r"[A-Za-z]-$", text) and part[:1].isalpha():
            text += part  # "double-" + "precision" -> "double-precision"
        else:
            text += " " + part
    return collapse(text)


def _unwrap_prose(block: list[str]) -> str | None:
    """Return *block* as one line if it is hard-wrapped prose, else None.

    Prose is a block (optionally a list item such as "* text") whose
    continuation lines share one indentation and whose lines, except the
    last, are filled close to the wrap width. Code and grammar blocks, whose
    lines are short or ragged or contain prompts, are left alone.
    """
    first = block[0]
    indent = len(first) - len(first.lstrip())
    bullet = _BULLET.match(first.lstrip())
    if indent == 0 and not bullet:
        return _join_wrapped(block)
    if len(block) < 2:
        return None
    expected = indent + (len(bullet.group(0)) if bullet else 0)
    if any(len(ln) - len(ln.lstrip()) != expected for ln in block[1:]):
        return None
    for line, nxt in zip(block, block[1:], strict=False):
        # A short line is fine only if the next word would not have fitted.
        if len(line) < 50 and len(line) + 1 + len(nxt.split()[0]) <= WRAP_WIDTH:
            return None
    if any(tok in ln for ln in block for tok in (">>>", "::=", "... ")):
        return None
    return _join_wrapped(block)


def python_topic_paragraphs(raw: str) -> list[Para]:
    """Convert one pydoc topic to paragraphs.

    Hard-wrapped prose paragraphs and list items are joined into one line with
    whitespace collapsed (indentation dropped); code, grammar, tables and other
    indented blocks keep their line structure.
    """
    paras: list[Para] = []
    for kind, block in _python_blocks(raw):
        if kind == HEADING:
            paras.append(Para(HEADING, collapse(block[0])))
            continue
        prose = _unwrap_prose(block) if kind == TEXT else None
        if prose is not None:
            paras.append(Para(TEXT, prose))
        else:
            paras.append(Para(CODE, "\n".join(block)))
    return paras


def python_docs() -> tuple[list[Doc], str]:
    """Return one document per pydoc topic, and a description of the source."""
    try:
        from pydoc_data.topics import topics
    except ImportError as exc:  # some distributions split pydoc_data out
        raise SystemExit(
            f"error: cannot import pydoc_data.topics ({exc}); install the full "
            "Python standard library (e.g. Debian package libpython3.11-stdlib)."
        ) from exc
    docs = [
        Doc(f"python/{name}.txt", cap_paragraphs(python_topic_paragraphs(topics[name])))
        for name in sorted(topics)
    ]
    version = ".".join(str(v) for v in sys.version_info[:3])
    return docs, f"pydoc_data.topics from Python {version} ({len(topics)} topics)"


# --------------------------------------------------------------------------- #
# PostgreSQL HTML manual
# --------------------------------------------------------------------------- #

_BLOCK_TAGS = frozenset(
    {
        "p",
        "div",
        "dl",
        "dt",
        "dd",
        "ul",
        "ol",
        "li",
        "table",
        "tr",
        "thead",
        "tbody",
        "blockquote",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "pre",
        "hr",
    }
)
_SKIP_CLASSES = frozenset({"navheader", "navfooter", "toc", "indexterm"})
_VOID_TAGS = frozenset({"br", "hr", "img", "meta", "link", "col", "input"})


class _ManualPageParser(html.parser.HTMLParser):
    """Extract headings, paragraphs, lists, tables and preformatted blocks.

    Navigation headers/footers, the table of contents and index anchors are
    skipped. Inline markup is flattened; whitespace inside a paragraph is
    collapsed; <pre> blocks keep their lines (blank lines split them into
    paragraphs); a table becomes one paragraph with one line per row.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paras: list[Para] = []
        self._buf: list[str] = []
        self._kind = TEXT
        self._skip_depth = 0  # >0 while inside a skipped element
        self._stack: list[tuple[str, bool]] = []  # (tag, starts a skipped region)
        self._pre = 0
        self._in_head = False
        self._table = 0  # >0 inside <table>
        self._cell_sep = False  # a cell separator is due before the next cell
        self._bullet = False  # the next text paragraph starts a list item

    # -- helpers ---------------------------------------------------------- #
    def _flush(self) -> None:
        """End the current paragraph and store it (if it has any text)."""
        raw = "".join(self._buf)
        self._buf = []
        kind, self._kind = self._kind, TEXT
        if self._pre:
            return
        if kind == CODE:
            lines = [ln.rstrip() for ln in raw.replace("\u00a0", " ").split("\n")]
            chunk: list[str] = []
            for line in lines + [""]:  # blank lines inside <pre> split paragraphs
                if _RULE_LINE.match(line):  # e.g. psql's "-----+-----" separator
                    continue
                if line.strip():
                    chunk.append(line)
                elif chunk:
                    self.paras.append(Para(CODE, "\n".join(chunk)))
                    chunk = []
            return
        lines = [collapse(ln) for ln in raw.split("\n")]
        text = "\n".join(ln for ln in lines if ln)
        if text and kind == TEXT and self._bullet:
            text, self._bullet = "- " + text, False
        if text:
            self.paras.append(Para(kind, text))

    # -- parser callbacks ------------------------------------------------- #
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "head":
            self._in_head = True
        classes = set((dict(attrs).get("class") or "").split())
        skip = bool(classes & _SKIP_CLASSES) or tag in {"script", "style"}
        if tag not in _VOID_TAGS:
            self._stack.append((tag, skip))
            if skip:
                self._skip_depth += 1
        if self._skip_depth or self._in_head:
            return
        if tag == "br":
            self._buf.append("\n")
        elif self._table and tag != "table":
            if tag == "tr":
                self._cell_sep = False
            elif tag in {"td", "th"}:
                if self._cell_sep:
                    self._buf.append(" | ")
                self._cell_sep = True
        elif tag in _BLOCK_TAGS:
            self._flush()
            if tag == "pre":
                self._kind = CODE
                self._pre += 1
            elif tag in {"h1", "h2", "h3", "h4", "h5", "h6"}:
                self._kind = HEADING
            elif tag == "dt":
                self._kind = TERM
            elif tag == "li":
                self._bullet = True
            elif tag == "table":
                self._table += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "head":
            self._in_head = False
        # Pop up to and including the matching open tag (tolerates bad nesting).
        if any(t == tag for t, _ in self._stack):
            while self._stack:
                open_tag, skip = self._stack.pop()
                if skip:
                    self._skip_depth -= 1
                if open_tag == tag:
                    break
        if self._skip_depth or self._in_head:
            return
        if self._table and tag != "table":
            if tag == "tr":
                self._buf.append("\n")
            return
        if tag in _BLOCK_TAGS:
            if tag == "table":
                self._table -= 1
            elif tag == "pre":
                self._pre -= 1
                self._kind = CODE
            self._flush()

    def handle_data(self, data: str) -> None:
        if self._skip_depth or self._in_head:
            return
        self._buf.append(data if self._pre else data.replace("\n", " "))

    def close(self) -> None:
        super().close()
        self._flush()


def html_to_paragraphs(markup: str) -> list[Para]:
    """Convert one PostgreSQL manual page to paragraphs."""
    parser = _ManualPageParser()
    parser.feed(markup)
    parser.close()
    return parser.paras


def debian_package_version(package: str) -> str | None:
    """Return the installed Debian version of *package*, or None if unknown."""
    try:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def postgresql_docs(html_dir: Path) -> tuple[list[Doc], str]:
    """Return one document per page in PG_PAGES, and a description of the source."""
    missing = [p for p in PG_PAGES if not (html_dir / f"{p}.html").is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise SystemExit(
            f"error: PostgreSQL HTML manual not found in {html_dir} "
            f"(missing {len(missing)} of {len(PG_PAGES)} pages: {shown}).\n"
            f"Install the Debian package '{PG_DOC_PACKAGE}' "
            f"(apt-get update && apt-get install -y {PG_DOC_PACKAGE}) "
            "or pass --pg-html-dir. The committed corpus files remain valid."
        )
    docs: list[Doc] = []
    for page in PG_PAGES:
        markup = (html_dir / f"{page}.html").read_text(encoding="utf-8")
        text = cap_paragraphs(html_to_paragraphs(markup))
        if page in EXTENSIONLESS_PAGES:
            rel = f"postgresql/extensionless/{page}"
        else:
            rel = f"postgresql/{page}.txt"
        docs.append(Doc(rel, text))
    version = debian_package_version(PG_DOC_PACKAGE) if html_dir == DEFAULT_PG_HTML_DIR else None
    source = f"{PG_DOC_PACKAGE} {version or '(version unknown)'} from {html_dir}"
    return docs, source


# --------------------------------------------------------------------------- #
# Output
# --------------------------------------------------------------------------- #


def check_doc(doc: Doc) -> list[str]:
    """Return a list of format problems in *doc* (empty when it is clean)."""
    problems: list[str] = []
    if len(doc.text) < MIN_CHARS:
        problems.append(f"shorter than {MIN_CHARS} characters")
    if re.search(r"&(?:[A-Za-z]+|#\d+|#x[0-9A-Fa-f]+);", doc.text):
        problems.append("contains an HTML entity")
    if "\n\n\n" in doc.text:
        problems.append("contains more than one blank line in a row")
    if any(_RULE_LINE.match(ln) for ln in doc.text.splitlines()):
        problems.append("contains an underline/rule line")
    return problems


def write_corpus(docs: list[Doc], out_dir: Path, force: bool) -> None:
    """Write *docs* to a temp folder beside *out_dir*, then swap it into place."""
    out_dir = out_dir.resolve()
    if out_dir.exists() and not force:
        ours = {"python", "postgresql"}
        unexpected = sorted(p.name for p in out_dir.iterdir() if p.name not in ours)
        if unexpected:
            raise SystemExit(
                f"error: {out_dir} contains entries this script did not write "
                f"({', '.join(unexpected[:5])}); refusing to replace it (use --force)."
            )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        for doc in docs:
            path = tmp / doc.relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(doc.text)
        for path in [tmp, *tmp.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        if out_dir.exists():
            out_dir.rename(old)
        tmp.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def summarize(docs: list[Doc]) -> str:
    """Return a short human-readable summary of the corpus."""
    lines = []
    groups: dict[str, list[Doc]] = {}
    for doc in docs:
        groups.setdefault(doc.relpath.split("/")[0], []).append(doc)
    for name, group in [*sorted(groups.items()), ("total", docs)]:
        sizes = [len(d.text) for d in group]
        nbytes = sum(len(d.text.encode("utf-8")) for d in group)
        lines.append(
            f"{name:<11} docs={len(group):4d} chars={sum(sizes):8d} bytes={nbytes:8d} "
            f"min={min(sizes):5d} median={int(statistics.median(sizes)):5d} max={max(sizes):5d}"
        )
    extless = sum(1 for d in docs if "." not in d.relpath.rsplit("/", 1)[-1])
    lines.append(f"documents without a file extension: {extless}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse command-line arguments."""
    parser = argparse.ArgumentParser(
        description=(
            "Build the sample corpus from Python's pydoc_data topics (PSF licence) "
            f"and the PostgreSQL SQL command reference (Debian package {PG_DOC_PACKAGE}, "
            "PostgreSQL licence). The output folder is replaced as a whole."
        )
    )
    parser.add_argument(
        "out_dir",
        nargs="?",
        type=Path,
        default=REPO_ROOT / "tests" / "fixtures" / "sample_corpus",
        help="output folder (default: tests/fixtures/sample_corpus in the repository root)",
    )
    parser.add_argument(
        "--pg-html-dir",
        type=Path,
        default=DEFAULT_PG_HTML_DIR,
        help=f"folder holding the PostgreSQL HTML manual (default: {DEFAULT_PG_HTML_DIR})",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace the output folder even if it holds files this script did not write",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Build the corpus, validate it, write it and print a summary."""
    args = parse_args(argv)
    py_docs, py_source = python_docs()
    pg_docs, pg_source = postgresql_docs(args.pg_html_dir)
    docs: list[Doc] = []
    for doc in py_docs + pg_docs:
        problems = check_doc(doc)
        if problems == [f"shorter than {MIN_CHARS} characters"]:
            print(
                f"skipped {doc.relpath}: {len(doc.text)} characters < {MIN_CHARS}",
                file=sys.stderr,
            )
            continue
        if problems:
            print(f"error: {doc.relpath}: {'; '.join(problems)}", file=sys.stderr)
            return 1
        docs.append(doc)
    write_corpus(docs, args.out_dir, args.force)
    print(f"sources: {py_source}; {pg_source}")
    print(f"wrote {len(docs)} documents to {args.out_dir}")
    print(summarize(docs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
