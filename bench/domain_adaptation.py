"""Domain adaptation, measured on real human queries.

Runs the pipeline (sdg -> prep -> finetune) on a BEIR folder's *corpus only*, then
evaluates on its real test queries and qrels with the eval stage's own code and settings
(``reranktune.evaluation.run.evaluate``, params.yaml's ``eval`` section): every first stage
alone (dense, BM25, hybrid), the fine-tuned reranker on ``eval.first_stage``'s candidates,
and the paired test against the best untrained system (a first stage or the prior alone).
The real queries and labels are read only by the evaluation step.

    python bench/domain_adaptation.py /path/to/beir_folder [--params-file params.yaml] \
        [--params finetune.learning_rate=5e-5 bench.max_queries=4000 sdg.generator=llm ...] \
        [--run-id nq-utd/my-change --change "what it tries"] [--out report.json]

With ``--run-id`` the run goes into the run record, bench/results/domain_adaptation_runs.json
(a rerun under the same id replaces it), whose tables bench/results_table.py regenerates;
without it the report goes to bench/results/domain_adaptation_<folder name>.json.

The recipe is params.yaml's (see CORPUS_OVERRIDES for the data-volume keys that differ).
``sdg.generator=llm`` generates the pseudo-queries with the endpoint in ``sdg.llm`` (its key
from the environment variable ``sdg.llm.api_key_env`` names), to compare generators.

``bench.seeds=[42,43,44]`` trains one model per ``finetune.seed`` on the same pseudo-queries
and negatives and reports the seeds' mean: each query's scores are averaged over the seeds
before the paired tests, so a recipe is judged on more than one draw of its initial head and
batch order (``per_seed`` keeps each seed's figures).

``bench.real_query_folds=2`` trains on the folder's real questions instead of pseudo-queries,
to tell a weak training signal from a weak trainer: the queries are dealt into that many
folds, each fold is ranked by a model trained on the other folds' queries (every judged
document a positive, negatives mined by prep as usual), and the folds' rankings are pooled
into one evaluation of every query (``per_fold`` keeps each fold's training).
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from reranktune.beir_data import BeirData, load_beir
from reranktune.documents import Document, read_corpus_jsonl
from reranktune.evaluation.run import (
    EvalResult,
    evaluate,
    first_stage_names,
    judge_runs,
    review_metrics,
    significance_and_verdict,
)
from reranktune.finetune.run import run_finetune
from reranktune.io import InputError, iter_jsonl, write_json, write_jsonl
from reranktune.models import bf16_enabled
from reranktune.params import (
    EmbeddingParams,
    EvalParams,
    FinetuneParams,
    ModelParams,
    PrepParams,
    RetrievalParams,
    SdgParams,
)
from reranktune.prep.run import run_prep
from reranktune.reranker.model import Reranker
from reranktune.retrieval.first_stage import FirstStageSettings
from reranktune.sdg.offline import OfflineGenerator
from reranktune.sdg.records import bundle_record
from reranktune.sdg.run import paraphrase_embedder

sys.path.insert(
    0, str(Path(__file__).resolve().parent)
)  # the bench's helpers, also when a test loads this file
from common import RESULTS, RUNS, checkout_commit, machine, save_run  # noqa: E402

log = logging.getLogger("domain_adaptation")

REPO = Path(__file__).resolve().parents[1]

# Bench-only settings. The recipe itself (sdg, prep, finetune, eval) comes from params.yaml,
# so the recorded numbers are those of the shipped defaults.
BENCH_DEFAULTS: dict = {
    "sentences_per_chunk": 64,  # more than any passage has: one chunk == one BEIR passage
    "max_queries": 0,  # 0 = every pseudo-query; else a sample spread over documents
    "torch_threads": 0,  # 0 = torch's default
    "seeds": [],  # finetune seeds whose models are averaged per query; [] = finetune.seed alone
    "real_query_folds": 0,  # 0: train on pseudo-queries; N >= 2: on real queries, N-fold
}

# Where a BEIR corpus deliberately differs from params.yaml: data volume only. The default
# run's judge keeps fewer pseudo-queries so that `dvc repro` fits its 10 minutes on 2 cores;
# here more pseudo-queries are the point, and no synthetic test split is needed.
CORPUS_OVERRIDES: dict = {
    "prep": {"quality_threshold": 7.0},
    "finetune": {"save_steps": 200, "logging_steps": 25},
}
SECTIONS = ("retrieval", "model", "sdg", "prep", "finetune", "eval")
PATH_KEYS = ("input_path", "questions_dir", "data_path")  # the bench's folder replaces these


def load_config(params_file: Path) -> dict:
    """params.yaml's shared and sdg/prep/finetune/eval sections, with the corpus overrides on
    top."""
    if not params_file.exists():
        raise InputError(f"{params_file}: not found (--params-file)")
    params = yaml.safe_load(params_file.read_text(encoding="utf-8")) or {}
    config: dict = {"bench": dict(BENCH_DEFAULTS)}
    for section in SECTIONS:
        config[section] = {
            k: v for k, v in (params.get(section) or {}).items() if k not in PATH_KEYS
        }
        config[section].update(CORPUS_OVERRIDES.get(section, {}))
    return config


def parse_overrides(overrides: list[str]) -> dict:
    """``section.key=value`` pairs as ``{section.key: value parsed as YAML}``: what ``--params``
    changes, and what the run record keeps as the run's ``settings``."""
    settings = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or "." not in key:
            raise InputError(f"--params {item!r}: expected section.key=value")
        settings[key] = yaml.safe_load(raw)
    return settings


def apply_overrides(config: dict, overrides: list[str]) -> dict:
    """``--params`` onto ``config``; keys may nest (``finetune.prior.dense_weight=20``), as in
    ``dvc exp run -S``."""
    for key, value in parse_overrides(overrides).items():
        section, *path = key.split(".")
        if section not in config:
            raise InputError(f"--params {key}: expected a section in {sorted(config)}")
        if section == "bench" and path[0] not in BENCH_DEFAULTS:
            raise InputError(f"--params {key}: unknown bench key (known: {sorted(BENCH_DEFAULTS)})")
        parent = config[section]
        for name in path[:-1]:
            parent = parent.setdefault(name, {})
        parent[path[-1]] = value
    return config


def generate(
    params: SdgParams, documents: list[Document], work: Path, embedding: EmbeddingParams
) -> list[dict]:
    """SDG records from the configured generator: offline, or the LLM endpoint in ``sdg.llm``.

    The LLM run checkpoints per document in ``work``: with ``--work`` a stopped bench resumes
    without paying for finished documents again.
    """
    if params.generator == "llm":
        from reranktune.documents import ReadReport
        from reranktune.sdg.llm_run import run_llm_sdg

        raw = work / "sdg_llm.jsonl"
        run_llm_sdg(
            params.llm,
            documents,
            ReadReport(read=len(documents)),
            raw,
            work / "sdg_llm_summary.json",
        )
        return [record for _, record in iter_jsonl(raw)]
    generator = OfflineGenerator.from_params(
        documents, params, paraphrase_embedder(params, embedding)
    )
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
        out.append(
            {
                **record,
                "deduplicated_qa_pairs": [pairs[i] for i in idx],
                "qa_evaluations": {"evaluations": [evals[i] for i in idx]},
            }
        )
    return out


class Timer:
    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self.start = self.last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.laps[stage] = round(self.laps.get(stage, 0.0) + now - self.last, 1)  # over seeds
        self.last = now
        log.info("%s: %.1fs", stage, self.laps[stage])

    def total(self) -> dict[str, float]:
        return {**self.laps, "total": round(time.perf_counter() - self.start, 1)}


def read_documents(config: dict, beir_dir: Path) -> tuple[SdgParams, list[Document]]:
    """The folder's corpus as sdg reads it, one chunk per BEIR passage."""
    sdg_params = SdgParams(
        **{
            **config["sdg"],
            "input_path": str(beir_dir / "corpus.jsonl"),
            "sentences_per_chunk": config["bench"]["sentences_per_chunk"],
        }
    )
    documents, _ = read_corpus_jsonl(
        beir_dir / "corpus.jsonl", sdg_params.min_text_length, sdg_params.sentences_per_chunk
    )
    return sdg_params, documents


def pseudo_query_records(
    config: dict, sdg_params: SdgParams, documents: list[Document], work: Path
) -> tuple[list[dict], int]:
    """The generator's SDG records, sampled to ``bench.max_queries``; and how many it wrote."""
    retrieval = RetrievalParams(**config["retrieval"])
    records = generate(sdg_params, documents, work, retrieval.embedding)
    generated = sum(len(r["deduplicated_qa_pairs"]) for r in records)
    records = subsample(
        records,
        config["bench"]["max_queries"],
        config["prep"]["quality_threshold"],
        sdg_params.seed,
    )
    log.info(
        "sdg: %d pseudo-queries generated, %d kept",
        generated,
        sum(len(r["deduplicated_qa_pairs"]) for r in records),
    )
    return records, generated


def real_query_records(data: BeirData, documents: list[Document], qids: list[str]) -> list[dict]:
    """SDG records that train on real questions: every document without pairs (the corpus that
    negatives are mined from), then one record per question bundling its judged documents,
    all of them its positives, so that none of them is mined as its negative."""
    chunks_of = {doc.source_id: doc.chunks for doc in documents}
    records = [bundle_record([d.path], d.source_id, d.chunks, [], []) for d in documents]
    for qid in qids:
        chunks = [
            c
            for doc_id in data.qrels[qid]
            if data.qrels[qid][doc_id] > 0
            for c in chunks_of.get(doc_id, [])
        ]
        if not chunks:
            continue
        pair = {
            "question": data.queries[qid],
            "answer": "",
            "query_type": "real",
            "reasoning_type": "real",
            "segment_ids": list(range(1, len(chunks) + 1)),
        }
        records.append(
            bundle_record(
                [f"qrels:{qid}"],
                f"query {qid}",
                chunks,
                [pair],
                [{"overall": {"score": 10.0, "assessment": "qrels"}}],
            )
        )
    return records


def folds(qids: list[str], n: int, seed: int) -> list[list[str]]:
    """The queries dealt at random (seeded) into ``n`` folds of near-equal size."""
    order = sorted(qids)
    random.Random(seed).shuffle(order)
    return [sorted(order[f::n]) for f in range(n)]


def prepare(
    config: dict, records: list[dict], work: Path, timer: Timer, **overrides
) -> tuple[PrepParams, dict]:
    """prep on ``records``, with ``overrides`` of prep's params; returns (params, report)."""
    write_jsonl(work / "sdg.jsonl", records)
    timer.lap("sdg")
    # every document trains or validates; one (the prep validator keeps a test split) is held out
    val_ratio = config["prep"].get("val_ratio", 0.0)
    overrides["train_ratio"] = 1.0 - val_ratio - 1.0 / len(records)
    prep_params = PrepParams(**{**config["prep"], **overrides})
    prep_report = run_prep(
        prep_params,
        work / "sdg.jsonl",
        work / "prep",
        work / "prep_report.json",
        RetrievalParams(**config["retrieval"]),
    )
    timer.lap("prep")
    return prep_params, prep_report


def finetune(config: dict, work: Path, model_dir: Path, seed: int) -> dict:
    """prep's training file -> a reranker in ``model_dir`` trained with ``seed``; its summary."""
    return run_finetune(
        FinetuneParams(**{**config["finetune"], "seed": seed}),
        work / "prep" / "train.json",
        model_dir,
        model_dir.with_name(model_dir.name + "_checkpoints"),
        work / "live",
        val_file=work / "prep" / "val.json",
        model=ModelParams(**config["model"]),
        retrieval=RetrievalParams(**config["retrieval"]),
    )


def evaluate_real(config: dict, data: BeirData, model_dir: Path) -> EvalResult:
    """The eval stage's figures on real queries and qrels."""
    eval_params = EvalParams(**config["eval"])
    first_stage = FirstStageSettings.from_params(
        RetrievalParams(**config["retrieval"]), eval_params.top_k
    )
    reranker = Reranker.from_pretrained(
        str(model_dir), bf16=bf16_enabled(eval_params.mixed_precision)
    )
    return evaluate(data, eval_params, first_stage, reranker)


def queries_subset(data: BeirData, qids: list[str]) -> BeirData:
    """``data`` with only ``qids``'s questions and judgements (the whole corpus)."""
    return BeirData(
        corpus=data.corpus,
        queries={q: data.queries[q] for q in qids},
        qrels={q: data.qrels[q] for q in qids},
        metadata={q: data.metadata[q] for q in qids},
    )


def train_on_real_folds(
    config: dict, data: BeirData, documents: list[Document], work: Path, timer: Timer
) -> tuple[EvalResult, PrepParams, list[dict]]:
    """Each fold's questions ranked by a model trained on the other folds' questions and
    judgements; the folds' rankings judged together, so every question counts once."""
    seed = config["finetune"]["seed"]
    dealt = folds(list(data.qrels), config["bench"]["real_query_folds"], seed)
    runs: dict = {}
    per_fold = []
    for f, held_out in enumerate(dealt):
        fold_work = work / f"fold{f}"
        fold_work.mkdir(parents=True, exist_ok=True)
        trained_on = [q for g, fold in enumerate(dealt) if g != f for q in fold]
        records = real_query_records(data, documents, trained_on)
        most_judged = max(len(r["chunks"]) for r in records if r["deduplicated_qa_pairs"])
        prep_params, prep_report = prepare(
            config,
            records,
            fold_work,
            timer,
            max_pos_docs=max(config["prep"].get("max_pos_docs", 1), most_judged),
        )
        summary = finetune(config, fold_work, fold_work / "model", seed)
        timer.lap("finetune")
        fold_result = evaluate_real(config, queries_subset(data, held_out), fold_work / "model")
        timer.lap("eval")
        for name, run in fold_result.runs.items():
            runs.setdefault(name, {}).update(run)
        per_fold.append(
            {
                "queries": len(held_out),
                "prep": prep_summary(prep_report),
                "finetune": summary,
            }
        )
    dataset = fold_result.metrics["dataset"]
    result = judge_runs(
        data, runs, EvalParams(**config["eval"]), dataset["first_stage"], dataset["top_k"]
    )
    return result, prep_params, per_fold


def prep_summary(prep_report: dict) -> dict:
    """What the record keeps of prep's report."""
    return {
        k: prep_report.get(k)
        for k in (
            "pseudo_queries_generated",
            "counts",
            "queries_per_split",
            "train_records",
            "train_mining",
        )
    }


def mean_of_trees(trees: list):
    """Nested dicts of numbers with the same keys -> one such dict of their means."""
    if isinstance(trees[0], dict):
        return {key: mean_of_trees([tree[key] for tree in trees]) for key in trees[0]}
    return sum(trees) / len(trees)


def mean_over_seeds(results: list[EvalResult], config: dict) -> EvalResult:
    """One result from several seeds' models: every metric and every query's scores averaged
    over the seeds, the paired tests and the verdict redone on those per-query means."""
    eval_params = EvalParams(**config["eval"])
    systems = list(results[0].per_query)
    metrics = {system: mean_of_trees([r.metrics[system] for r in results]) for system in systems}
    per_query = {
        system: mean_of_trees([r.per_query[system] for r in results]) for system in systems
    }
    names = first_stage_names(eval_params, results[0].metrics["dataset"]["first_stage"])
    metrics.update(significance_and_verdict(per_query, eval_params, names))
    return EvalResult(metrics=metrics, runs={}, per_query=per_query)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("beir_dir", type=Path)
    parser.add_argument(
        "--out",
        type=Path,
        help="the report (default without --run-id: "
        "bench/results/domain_adaptation_<folder name>.json)",
    )
    parser.add_argument(
        "--run-id",
        help="add the run to the run record under this id, e.g. nq-utd/my-change, "
        "in place of a run with the same id",
    )
    parser.add_argument("--change", default="", help="what the run tries, for the record's tables")
    parser.add_argument(
        "--record", type=Path, default=RUNS, help="the run record (default: %(default)s)"
    )
    parser.add_argument(
        "--params-file",
        type=Path,
        default=REPO / "params.yaml",
        help="the recipe: its sdg, prep, finetune and eval sections",
    )
    parser.add_argument(
        "--params",
        nargs="*",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="overrides on top, e.g. finetune.learning_rate=5e-5 bench.max_queries=4000",
    )
    parser.add_argument(
        "--work", type=Path, help="keep intermediate files here (default: a temp folder)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    config = apply_overrides(load_config(args.params_file), args.params)
    if config["bench"]["torch_threads"]:
        torch.set_num_threads(config["bench"]["torch_threads"])
    name = args.beir_dir.resolve().name
    if args.run_id and not args.run_id.startswith(f"{name}/"):
        raise InputError(f"--run-id {args.run_id}: expected {name}/<what the run tries>")
    out = args.out or (None if args.run_id else RESULTS / f"domain_adaptation_{name}.json")
    timer = Timer()
    seeds = config["bench"]["seeds"] or [config["finetune"]["seed"]]
    n_folds = config["bench"]["real_query_folds"]
    if n_folds == 1 or n_folds < 0:
        raise InputError(f"--params bench.real_query_folds={n_folds}: expected 0 or at least 2")
    if n_folds and len(seeds) > 1:
        raise InputError("--params: bench.seeds and bench.real_query_folds, one at a time")
    data = load_beir(args.beir_dir)
    sdg_params, documents = read_documents(config, args.beir_dir)
    per_fold: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="da_") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if n_folds:
            result, prep_params, per_fold = train_on_real_folds(
                config, data, documents, work, timer
            )
            summaries = {seeds[0]: per_fold[0]["finetune"]}
            prep = per_fold[0]["prep"]
        else:
            records, generated = pseudo_query_records(config, sdg_params, documents, work)
            prep_params, prep_report = prepare(config, records, work, timer)
            prep = {**prep_summary(prep_report), "pseudo_queries_generated": generated}
            summaries, results = {}, {}
            for seed in seeds:
                model_dir = work / ("model" if len(seeds) == 1 else f"model_seed{seed}")
                summaries[seed] = finetune(config, work, model_dir, seed)
                timer.lap("finetune")
                results[seed] = evaluate_real(config, data, model_dir)
                timer.lap("eval")
            result = (
                mean_over_seeds(list(results.values()), config)
                if len(seeds) > 1
                else results[seeds[0]]
            )
    eval_params = EvalParams(**config["eval"])
    report = {
        "dataset": name,
        "queries": len(result.per_query["finetuned"]),
        "systems": review_metrics(result.metrics, eval_params),
        "verdict": result.verdict,
        "significance": result.metrics["significance"],
        "overrides": args.params,
        "params": {
            "bench": config["bench"],
            "retrieval": RetrievalParams(**config["retrieval"]).model_dump(),
            "model": ModelParams(**config["model"]).model_dump(),
            "sdg": SdgParams(**config["sdg"]).model_dump(),
            "prep": prep_params.model_dump(),
            "finetune": FinetuneParams(**config["finetune"]).model_dump(),
            "eval": eval_params.model_dump(),
        },
        "prep": prep,
        "finetune": summaries[seeds[0]],
        "wall_time_s": timer.total(),
        "machine": machine(),
    }
    if per_fold:
        report["per_fold"] = per_fold
    if len(seeds) > 1:
        report["per_seed"] = {
            str(s): {
                "systems": review_metrics(results[s].metrics, eval_params),
                "finetune": summaries[s],
            }
            for s in seeds
        }
    log.info("%s: %s", name, result.verdict["line"])
    if out:
        write_json(out, report)
        log.info("wrote %s", out)
    if args.run_id:
        save_run(
            {
                "id": args.run_id,
                "dataset": name,
                "change": args.change,
                "settings": parse_overrides(args.params),
                "commit": checkout_commit(),
                "date": time.strftime("%Y-%m-%d"),
                "result": report,
            },
            args.record,
        )
        log.info("recorded %s in %s", args.run_id, args.record)
    return report


if __name__ == "__main__":
    main()
