"""One logging setup for every stage and command."""
from __future__ import annotations

import logging
import os


def setup_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("RERANKTUNE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("httpx", "urllib3", "sentence_transformers", "filelock", "faiss.loader", "beir"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
