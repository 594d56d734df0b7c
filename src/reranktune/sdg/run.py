"""SDG end to end: read documents, generate Q&A, write the SDG JSONL and a summary."""

from __future__ import annotations

import logging
from pathlib import Path

from tqdm.auto import tqdm

from reranktune.documents import read_documents
from reranktune.io import write_json, write_jsonl
from reranktune.params import EmbeddingParams, SdgParams
from reranktune.sdg.offline import OfflineGenerator

log = logging.getLogger(__name__)


def run_sdg(
    params: SdgParams,
    output_path: str | Path,
    summary_path: str | Path,
    embedding: EmbeddingParams | None = None,
) -> dict:
    """``embedding``: the model the offline generator's paraphrases take their words from."""
    documents, read_report = read_documents(
        params.input_path,
        params.file_extensions,
        params.min_text_length,
        params.sentences_per_chunk,
    )
    if params.generator == "llm":
        from reranktune.sdg.llm_run import run_llm_sdg

        return run_llm_sdg(params.llm, documents, read_report, output_path, summary_path)
    generator = OfflineGenerator.from_params(
        documents, params, paraphrase_embedder(params, embedding)
    )
    pairs = 0

    def progress():
        nonlocal pairs
        for record in tqdm(generator.records(), total=len(documents), desc="sdg", unit="doc"):
            pairs += len(record["deduplicated_qa_pairs"])
            yield record

    write_jsonl(output_path, progress())
    summary = {
        **read_report.as_dict(),
        "generator": params.generator,
        "qa_pairs": pairs,
        "chunks": sum(len(d.chunks) for d in documents),
    }
    write_json(summary_path, summary)
    log.info("sdg: %d documents, %d Q&A pairs -> %s", len(documents), pairs, output_path)
    return summary


def paraphrase_embedder(params: SdgParams, embedding: EmbeddingParams | None):
    """The embedding model that finds the paraphrases' words; None when none are asked for."""
    if params.paraphrase_rate == 0:
        return None
    from reranktune.retrieval.embedder import Embedder

    return Embedder(embedding or EmbeddingParams(), what="paraphrase embedding model")
