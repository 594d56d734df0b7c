"""Append-only per-document results, so a killed or failed run resumes without paying twice.

One JSON line per finished unit (document or bundle), keyed by a hash of its content and
of the params that shape its result; each line is flushed and fsync'ed before the next
unit is counted as done. A torn last line (killed mid-write) is ignored on load.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from reranktune.io import atomic_path

log = logging.getLogger(__name__)


def checkpoint_path(output_path: str | os.PathLike) -> Path:
    output_path = Path(output_path)
    return output_path.with_name(output_path.name + ".checkpoint.jsonl")


class Checkpoint:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, dict]:
        entries: dict[str, dict] = {}
        if not self.path.exists():
            return entries
        with open(self.path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                try:
                    entry = json.loads(line)
                    entries[entry["key"]] = entry
                except (json.JSONDecodeError, KeyError, TypeError):
                    log.warning(
                        "%s:%d: unreadable checkpoint line ignored (torn write?)", self.path, lineno
                    )
        return entries

    def append(self, entry: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def compact(self, entries: list[dict]) -> None:
        """Keep only this run's entries (stale params/documents drop out)."""
        with atomic_path(self.path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            for entry in entries:
                fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
