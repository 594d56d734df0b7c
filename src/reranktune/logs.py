"""One logging setup for every stage and command."""

from __future__ import annotations

import logging
import os

from reranktune.io import InputError

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def setup_logging() -> None:
    level = os.environ.get("RERANKTUNE_LOG_LEVEL", "INFO")
    if level.upper() not in LEVELS:
        raise InputError(
            f"RERANKTUNE_LOG_LEVEL={level!r}: unknown log level; use one of {', '.join(LEVELS)}"
        )
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("httpx", "urllib3", "sentence_transformers", "filelock", "faiss.loader", "beir"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
