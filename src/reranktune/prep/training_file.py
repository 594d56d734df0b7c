"""A ready training file in the reference trainer's format: checked and copied, not rebuilt."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from reranktune.finetune.data import load_corpus
from reranktune.io import InputError, atomic_dir, read_json, write_json
from reranktune.prep.writers import write_corpus_parquet

log = logging.getLogger(__name__)


def is_training_file(path: str | Path) -> bool:
    path = Path(path)
    if not (path.is_file() and path.suffix == ".json"):
        return False
    with open(path, encoding="utf-8") as fh:
        head = fh.read(4096)
    return '"corpus"' in head or '"data"' in head


def import_training_file(path: Path, output_dir: Path) -> dict:
    """Validate every referenced id against the corpus, then write ``output_dir`` like prep does."""
    spec = read_json(path)
    if not isinstance(spec, dict) or "data" not in spec or "corpus" not in spec:
        raise InputError(f"{path}: not a training file (expected keys 'corpus' and 'data')")
    corpus = load_corpus(path, spec["corpus"].get("path", "./corpus/"))
    for n, record in enumerate(spec["data"]):
        for key in ("question", "pos_doc", "neg_doc"):
            if key not in record:
                raise InputError(f"{path}: data[{n}]: missing key {key!r}")
        missing = [d["id"] for d in record["pos_doc"] + record["neg_doc"] if d["id"] not in corpus]
        if missing:
            raise InputError(f"{path}: data[{n}] ({record.get('question_id')}): ids not in the corpus: {missing[:5]}")
    with atomic_dir(output_dir) as out:
        write_json(out / "train.json", {"corpus": {"path": "./corpus/"}, "data": spec["data"]}, indent=None)
        write_corpus_parquet(out / "corpus" / "train.parquet", corpus)
    log.warning("%s: ready training file imported as is; it carries no test set, so point eval.data_path "
                "at a labelled BEIR folder", path)
    return {"input": "training_file", "train_records": len(spec["data"]), "corpus_chunks": len(corpus)}
