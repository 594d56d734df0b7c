"""Domain adaptation, measured on real human queries.

Runs the pipeline (sdg -> prep -> finetune) on a BEIR folder's *corpus only*, then
evaluates on its real test queries and qrels: the dense first stage alone, the base
reranker (when its head is trained) and the fine-tuned reranker reranking the same
candidates, with a paired randomisation test on per-query nDCG@10 against the first
stage. The real queries and labels are read only by the evaluation step.

    python bench/domain_adaptation.py /path/to/beir_folder \
        [--out bench/results/domain_adaptation_<name>.json] [--params-file params.yaml] \
        [--params finetune.learning_rate=5e-5 bench.max_queries=4000 sdg.generator=llm ...]

The recipe is params.yaml's (see CORPUS_OVERRIDES for the data-volume keys that differ).
``sdg.generator=llm`` generates the pseudo-queries with the endpoint in ``sdg.llm`` (its key
from the environment variable ``sdg.llm.api_key_env`` names), to compare generators.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from reranktune.documents import Document, chunk_text
from reranktune.evaluation.beir_data import load_beir
from reranktune.evaluation.metrics import ranking_metrics
from reranktune.evaluation.first_stage import dense_retrieval
from reranktune.evaluation.run import rerank
from reranktune.evaluation.significance import paired_randomization_test
from reranktune.finetune.run import run_finetune
from reranktune.io import InputError, iter_jsonl, write_json, write_jsonl
from reranktune.params import EmbeddingParams, FinetuneParams, PrepParams, SdgParams
from reranktune.prep.run import run_prep
from reranktune.reranker import Reranker
from reranktune.sdg.offline import OfflineGenerator

log = logging.getLogger("domain_adaptation")


def versus(first: dict[str, float], system: dict[str, float], permutations: int) -> dict:
    """Per-query wins/losses of ``system`` over the first stage, and the paired test's p-value."""
    qids = sorted(set(first) & set(system))
    diff = np.array([system[q] - first[q] for q in qids])
    return {
        "queries": len(qids), "mean_difference": float(diff.mean()), "wins": int((diff > 0).sum()),
        "losses": int((diff < 0).sum()), "ties": int((diff == 0).sum()), "permutations": permutations,
        "p_value": paired_randomization_test([system[q] for q in qids], [first[q] for q in qids], permutations),
    }

REPO = Path(__file__).resolve().parents[1]

# Bench-only settings. The recipe itself (sdg, prep, finetune, and eval.top_k as the rerank
# depth) comes from params.yaml, so the recorded numbers are those of the shipped defaults.
BENCH_DEFAULTS: dict = {
    "sentences_per_chunk": 64,   # more than any passage has: one chunk == one BEIR passage
    "max_queries": 0,            # 0 = every pseudo-query; else the best ones, spread over documents
    "top_k": 100,                # first-stage candidates (Recall@100 is measured on these)
    "rerank_top_k": None,        # set from params.yaml's eval.top_k: the eval stage's rerank depth
    "k_values": [1, 5, 10, 100],
    "rerank_batch_size": 64,
    "rerank_bf16": True,         # bf16 autocast at inference on CPU (AMX), as in training
    "permutations": 10000,
    "torch_threads": 0,          # 0 = torch's default; 1 is ~3x faster when the cores are oversubscribed
    "fusion_alpha": 0.0,         # >0: an extra row, alpha x z(reranker) + (1 - alpha) x z(first stage) (runs A-H)
}

# Where a BEIR corpus deliberately differs from params.yaml: data volume only. The sample
# corpus keeps fewer pseudo-queries so `dvc repro` fits its 15-minute budget on 2 cores;
# here more pseudo-queries are the point, and no synthetic test split is needed.
CORPUS_OVERRIDES: dict = {
    "sdg": {"queries_per_chunk": 2},
    "prep": {"quality_threshold": 7.0, "val_ratio": 0.0},
    "finetune": {"save_steps": 200, "logging_steps": 25},
}


def load_config(params_file: Path) -> dict:
    """params.yaml's sdg/prep/finetune sections and eval.top_k, with the corpus overrides on top."""
    if not params_file.exists():
        raise InputError(f"{params_file}: not found (--params-file)")
    params = yaml.safe_load(params_file.read_text(encoding="utf-8")) or {}
    config: dict = {"bench": dict(BENCH_DEFAULTS)}
    for section in ("sdg", "prep", "finetune"):
        config[section] = {k: v for k, v in (params.get(section) or {}).items() if k not in ("input_dir", "input_path")}
        config[section].update(CORPUS_OVERRIDES.get(section, {}))
    config["bench"]["rerank_top_k"] = (params.get("eval") or {}).get("top_k", 20)
    return config


def apply_overrides(config: dict, overrides: list[str]) -> dict:
    """``section.key=value`` pairs (value parsed as YAML) onto ``config``."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        section, _, name = key.partition(".")
        if not sep or not name or section not in config:
            raise InputError(f"--params {item!r}: expected section.key=value with section in {sorted(config)}")
        if section == "bench" and name not in BENCH_DEFAULTS:
            raise InputError(f"--params {item!r}: unknown bench key (known: {sorted(BENCH_DEFAULTS)})")
        config[section][name] = yaml.safe_load(raw)
    return config


def read_corpus(beir_dir: Path) -> list[dict]:
    """The corpus records only: the training side never opens queries or qrels."""
    path = beir_dir / "corpus.jsonl"
    if not path.exists():
        raise InputError(f"{beir_dir}: missing corpus.jsonl (expected a BEIR folder)")
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def corpus_documents(records: list[dict], sentences_per_chunk: int) -> list[Document]:
    """Title as the first line (a title query exists); chunks cut from "title. text", as eval reads it.

    A document that fits one chunk keeps its passage verbatim, so training sees the very
    text that eval reranks (and the first stage's passage embeddings are reused from cache).
    """
    documents = []
    for record in records:
        title, text = (record.get("title") or "").strip(), (record.get("text") or "").strip()
        if not text:
            continue
        passage = f"{title}. {text}" if title else text      # exactly what eval reranks
        chunks = chunk_text(f"{title}.\n\n{text}" if title else text, sentences_per_chunk)
        chunks = [passage] if len(chunks) == 1 else chunks
        documents.append(Document(source_id=str(record["_id"]), path=str(record["_id"]),
                                  text=f"{title}\n\n{text}" if title else text, chunks=chunks))
    return documents


def generate(params: SdgParams, documents: list[Document], work: Path) -> list[dict]:
    """SDG records from the configured generator: offline, or the LLM endpoint in ``sdg.llm``.

    The LLM run checkpoints per document in ``work``: with ``--work`` a stopped bench resumes
    without paying for finished documents again.
    """
    if params.generator == "llm":
        from reranktune.documents import ReadReport
        from reranktune.sdg.llm_run import run_llm_sdg

        raw = work / "sdg_llm.jsonl"
        run_llm_sdg(params.llm, documents, ReadReport(read=len(documents)), raw, work / "sdg_llm_summary.json")
        return [record for _, record in iter_jsonl(raw)]
    generator = OfflineGenerator(documents, seed=params.seed, queries_per_chunk=params.queries_per_chunk,
                                 multi_hop_per_document=params.multi_hop_per_document,
                                 min_query_words=params.min_query_words, max_query_words=params.max_query_words)
    return list(generator.records())


def subsample(records: list[dict], max_queries: int, threshold: float, seed: int) -> list[dict]:
    """Keep ``max_queries`` pairs judged >= ``threshold``, spread evenly over documents.

    Within a document the order is random (seeded), so the kept set has the generator's
    mix of query shapes; ranking by the judge would keep mostly rare-keyword queries.
    """
    rng = random.Random(seed)
    ranked = []
    for d, record in enumerate(records):
        scores = [e["overall"]["score"] for e in record["qa_evaluations"]["evaluations"]]
        good = [i for i, score in enumerate(scores) if score >= threshold]
        rng.shuffle(good)
        ranked += [(rank, rng.random(), d, i) for rank, i in enumerate(good)]
    if not max_queries or len(ranked) <= max_queries:
        return records
    keep: dict[int, set[int]] = {}
    for _, _, d, i in sorted(ranked)[:max_queries]:
        keep.setdefault(d, set()).add(i)
    out = []
    for d, record in enumerate(records):
        idx = sorted(keep.get(d, ()))
        pairs, evals = record["deduplicated_qa_pairs"], record["qa_evaluations"]["evaluations"]
        out.append({**record, "deduplicated_qa_pairs": [pairs[i] for i in idx],
                    "qa_evaluations": {"evaluations": [evals[i] for i in idx]}})
    return out


def per_query_ndcg10(qrels: dict, run: dict) -> dict[str, float]:
    import pytrec_eval

    scores = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
    return {q: s["ndcg_cut_10"] for q, s in scores.items()}


def head_of(candidates: dict, top: int) -> dict:
    """Each query's first ``top`` candidates by first-stage score."""
    return {q: dict(sorted(d.items(), key=lambda x: -x[1])[:top]) for q, d in candidates.items()}


def with_tail(candidates: dict, head_scores: dict) -> dict:
    """The reranked head first, then the other candidates in first-stage order below it."""
    run = {}
    for qid, docs in candidates.items():
        scores = head_scores.get(qid, {})
        floor = min(scores.values()) if scores else 0.0
        tail = sorted((d for d in docs if d not in scores), key=lambda d: -docs[d])
        run[qid] = {**scores, **{d: floor - 1.0 - i for i, d in enumerate(tail)}}
    return run


def rerank_top(data, candidates: dict, reranker: Reranker, top: int, batch_size: int, bf16: bool) -> dict:
    """Rerank each query's first ``top`` candidates; the rest keep their order below them."""
    reranker.bf16 = reranker.bf16 or bf16
    return with_tail(candidates, rerank(data, head_of(candidates, top), reranker, batch_size))


def fuse(candidates: dict, reranked: dict, top: int, alpha: float) -> dict:
    """alpha x z(reranker) + (1 - alpha) x z(first stage) over each query's reranked head."""

    run = {}
    for qid, docs in candidates.items():
        head = sorted(docs, key=lambda d: -docs[d])[:top]
        z = {}
        for name, source in (("ce", reranked[qid]), ("dense", docs)):
            values = np.array([source[d] for d in head], dtype=np.float64)
            z[name] = (values - values.mean()) / (values.std() or 1.0)
        fused = alpha * z["ce"] + (1 - alpha) * z["dense"]
        tail = [d for d in sorted(docs, key=lambda d: -docs[d]) if d not in set(head)]
        run[qid] = {**dict(zip(head, fused.tolist())),
                    **{d: float(fused.min()) - 1.0 - i for i, d in enumerate(tail)}}
    return run


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    import transformers

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "load_average_at_end": os.getloadavg(), "torch_threads": torch.get_num_threads()}


def summarise(metrics: dict, k_values: list[int]) -> dict:
    return {f"NDCG@{k}": round(metrics["NDCG"][f"NDCG@{k}"], 5) for k in k_values} | {
        f"Recall@{k}": round(metrics["Recall"][f"Recall@{k}"], 5) for k in k_values}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("beir_dir", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--params-file", type=Path, default=REPO / "params.yaml",
                        help="the recipe: its sdg, prep and finetune sections and eval.top_k")
    parser.add_argument("--params", nargs="*", default=[], metavar="SECTION.KEY=VALUE",
                        help="overrides on top, e.g. finetune.learning_rate=5e-5 bench.max_queries=4000")
    parser.add_argument("--work", type=Path, help="keep intermediate files here (default: a temp folder)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    config = apply_overrides(load_config(args.params_file), args.params)
    bench = config["bench"]
    if bench["torch_threads"]:
        torch.set_num_threads(bench["torch_threads"])
    name = args.beir_dir.resolve().name
    out = args.out or Path(__file__).parent / "results" / f"domain_adaptation_{name}.json"
    timings: dict[str, float] = {}
    start = time.perf_counter()

    def lap(stage: str, since: float) -> float:
        timings[stage] = round(time.perf_counter() - since, 1)
        log.info("%s: %.1fs", stage, timings[stage])
        return time.perf_counter()

    work_ctx = tempfile.TemporaryDirectory(prefix="da_") if args.work is None else None
    work = Path(work_ctx.name) if work_ctx else args.work
    work.mkdir(parents=True, exist_ok=True)
    sdg_params = SdgParams(**{**config["sdg"], "input_dir": str(args.beir_dir),
                              "sentences_per_chunk": bench["sentences_per_chunk"]})
    # ---- training side: corpus only ---------------------------------------------------
    t = time.perf_counter()
    documents = corpus_documents(read_corpus(args.beir_dir), sdg_params.sentences_per_chunk)
    records = generate(sdg_params, documents, work)
    generated = sum(len(r["deduplicated_qa_pairs"]) for r in records)
    records = subsample(records, bench["max_queries"], config["prep"]["quality_threshold"], sdg_params.seed)
    write_jsonl(work / "sdg.jsonl", records)
    t = lap("sdg", t)

    # every document may train; one (the prep validator keeps a test split) is held out
    prep_params = PrepParams(**{**config["prep"], "train_ratio": 1.0 - 1.0 / len(documents)})
    prep_report = run_prep(prep_params, work / "sdg.jsonl", work / "prep", work / "prep_report.json")
    t = lap("prep", t)

    ft_params = FinetuneParams(**config["finetune"])
    ft_summary = run_finetune(ft_params, work / "prep" / "train.json", work / "model",
                              work / "checkpoints", work / "live", prior_embedding=prep_params.embedding)
    t = lap("finetune", t)

    # ---- evaluation side: real queries and qrels ---------------------------------------
    data = load_beir(args.beir_dir)
    embedding = prep_params.embedding
    candidates = dense_retrieval(data, embedding, bench["top_k"])
    t = lap("first_stage", t)
    finetuned = Reranker.from_pretrained(str(work / "model"))
    base = Reranker.from_pretrained(ft_params.base_model, prompt_template=finetuned.prompt_template,
                                    max_length=finetuned.max_length)
    runs = {"first_stage": candidates}
    if not base.head_was_new:
        runs["base"] = rerank_top(data, candidates, base, bench["rerank_top_k"], bench["rerank_batch_size"],
                                  bench["rerank_bf16"])
        t = lap("rerank_base", t)
    runs["finetuned"] = rerank_top(data, candidates, finetuned, bench["rerank_top_k"],
                                   bench["rerank_batch_size"], bench["rerank_bf16"])
    t = lap("rerank_finetuned", t)
    if bench["fusion_alpha"]:
        runs["finetuned_fused"] = fuse(candidates, runs["finetuned"], bench["rerank_top_k"], bench["fusion_alpha"])

    write_json(work / "runs.json", runs)   # kept with --work, for analysis without re-scoring
    per_query = {name: per_query_ndcg10(data.qrels, run) for name, run in runs.items()}
    systems = {}
    for system, run in runs.items():
        entry = summarise(ranking_metrics(data.qrels, run, bench["k_values"]), bench["k_values"])
        if system != "first_stage":
            entry["vs_first_stage_ndcg@10"] = versus(per_query["first_stage"], per_query[system],
                                                     bench["permutations"])
        systems[system] = entry
    if "base" not in systems:
        systems["base"] = f"none: {ft_params.base_model} has an untrained classification head"
    timings["total"] = round(time.perf_counter() - start, 1)

    result = {
        "dataset": name,
        "corpus_documents": len(documents),
        "test_queries": len(data.queries),
        "pseudo_queries_generated": generated,
        "pseudo_queries_used": sum(len(r["deduplicated_qa_pairs"]) for r in records),
        "systems": systems,
        "gain_ndcg@10": round(systems["finetuned"]["NDCG@10"] - systems["first_stage"]["NDCG@10"], 5),
        "params": {"bench": bench, "sdg": sdg_params.model_dump(), "prep": prep_params.model_dump(),
                   "finetune": ft_params.model_dump()},
        "prep": {k: prep_report.get(k) for k in ("counts", "queries_per_split", "train_records", "train_mining")},
        "finetune": ft_summary,
        "wall_time_s": timings,
        "machine": machine(),
    }
    write_json(out, result)
    log.info("first stage nDCG@10 %.4f -> fine-tuned %.4f (p=%.4f); wrote %s",
             systems["first_stage"]["NDCG@10"], systems["finetuned"]["NDCG@10"],
             systems["finetuned"]["vs_first_stage_ndcg@10"]["p_value"], out)
    if work_ctx:
        work_ctx.cleanup()
    return result


if __name__ == "__main__":
    main()
