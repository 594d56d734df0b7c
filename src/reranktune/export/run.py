"""Export end to end: ONNX graph, tokenizer and prompt beside it, parity gate."""
from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path

from reranktune.evaluation.beir_data import load_beir
from reranktune.export.onnx_export import export_onnx
from reranktune.export.parity import check_parity, onnx_session
from reranktune.io import atomic_dir, write_json
from reranktune.params import ExportParams
from reranktune.reranker import Reranker, format_pair, write_reranker_config

log = logging.getLogger(__name__)


class ParityError(RuntimeError):
    """The exported graph does not score like the PyTorch model."""


def parity_texts(beir_dir: str | Path, template: str, n_pairs: int, seed: int = 0) -> list[str]:
    """Real (query, passage) pairs from the test set: each query's positive and a random passage."""
    data = load_beir(beir_dir)
    rng = random.Random(seed)
    doc_ids = sorted(data.corpus)
    texts: list[str] = []
    for qid in sorted(data.queries):
        for did in [next(iter(data.qrels[qid])), rng.choice(doc_ids)]:
            texts.append(format_pair(template, data.queries[qid], data.passage_text(did)))
    rng.shuffle(texts)
    # one over-long pair exercises the truncation path at the maximum length
    texts.append(format_pair(template, "long query", " ".join(data.passage_text(d) for d in doc_ids[:20])))
    return texts[:n_pairs] if len(texts) > n_pairs else texts


def run_export(params: ExportParams, model_dir: str | Path, beir_dir: str | Path,
               output_dir: str | Path, report_path: str | Path) -> dict:
    reranker = Reranker.from_pretrained(str(model_dir), device="cpu")
    texts = parity_texts(beir_dir, reranker.prompt_template, params.parity_pairs)
    sample = reranker.tokenizer(texts[:2], padding=True, return_tensors="pt")
    with atomic_dir(output_dir) as out:
        names = export_onnx(reranker.model, reranker.tokenizer, out / "model.onnx", params.opset, sample)
        reranker.tokenizer.save_pretrained(out)
        shutil.copy(Path(model_dir) / "config.json", out / "config.json")
        write_reranker_config(
            out,
            prompt_template=reranker.prompt_template,
            max_length=reranker.max_length,
            onnx_inputs=names,
            onnx_file="model.onnx",
            source_model=str(model_dir),
        )
        parity = check_parity(onnx_session(str(out / "model.onnx")), reranker.model, reranker.tokenizer,
                              texts, reranker.max_length, names)
        report = {"fp32": {**parity.as_dict(), "tolerance": params.parity_atol,
                           "passed": parity.max_abs_diff <= params.parity_atol}}
        write_json(report_path, report)
        if not report["fp32"]["passed"]:
            raise ParityError(
                f"ONNX scores differ from PyTorch by {parity.max_abs_diff:.2e} "
                f"(> parity_atol {params.parity_atol:.0e}) on {parity.pairs} pairs"
            )
    log.info("exported %s (max |diff| %.2e over %d pairs)", output_dir, parity.max_abs_diff, parity.pairs)
    return report
