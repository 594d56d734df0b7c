"""Eval end to end: every first stage, the reranker on one of them, the verdict against the best.

``evaluate`` works on one loaded BEIR folder and returns everything in memory (the benches
call it, so their figures come from the same code and settings as the stage); ``run_eval``
is the DVC stage: it evaluates each test set (human questions first, when there are any,
then prep's synthetic split) and writes the files.
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from reranktune.beir_data import BeirData, load_beir
from reranktune.evaluation.breakdown import breakdown
from reranktune.evaluation.endpoint import (
    EndpointMismatch,
    RankingClient,
    compare_metrics,
    endpoint_summary,
    format_table,
    rerank_with_endpoint,
)
from reranktune.evaluation.report import PARTS, SYSTEMS, markdown_report
from reranktune.evaluation.significance import compare_systems
from reranktune.io import atomic_path, write_json, write_text
from reranktune.ir_metrics import Run, per_query_scores, ranking_metrics
from reranktune.models import bf16_enabled
from reranktune.params import EvalParams, ModelParams, RetrievalParams
from reranktune.reranker.model import Reranker
from reranktune.retrieval.first_stage import FIRST_STAGES, FirstStageSettings, first_stage_runs

log = logging.getLogger(__name__)

SIGNIFICANCE_LEVEL = 0.05
SYNTHETIC = "synthetic"
RECALL_K = 100  # the review's recall cut-off: what a first stage hands to the reranker


@dataclass
class EvalResult:
    """One test set's figures: ``metrics`` holds every system's means at every k, the tests and
    the verdict."""

    metrics: dict
    runs: dict[str, Run]
    per_query: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    @property
    def verdict(self) -> dict:
        return self.metrics["verdict"]


@dataclass(frozen=True)
class EvalOutputs:
    metrics: Path  # the review numbers (DVC metrics)
    details: Path  # every figure, every k, tests, breakdowns
    plots: Path
    per_query: Path
    report: Path


@dataclass(frozen=True)
class TestSet:
    name: str  # a real-question folder's name, or "synthetic" (prep's split of generated queries)
    path: str
    description: str


def rerank_speed(run: Run, seconds: float, reranker: Reranker, batch_size: int) -> dict:
    """How fast a reranker scored a run, prior included: on a GPU, what to hold against
    bench/gpu/gpu_throughput.py."""
    pairs = sum(len(docs) for docs in run.values())
    return {
        "pairs": pairs,
        "seconds": round(seconds, 3),
        "pairs_per_s": round(pairs / max(seconds, 1e-9), 1),
        "device": getattr(reranker.backend, "device", None),
        "bf16": getattr(reranker.backend, "bf16", None),
        "batch_size": batch_size,
    }


def first_stage_names(params: EvalParams, reranked: str) -> list[str]:
    """The reranked first stage first, then the others when they are compared too."""
    others = [n for n in FIRST_STAGES if n != reranked] if params.compare_first_stages else []
    return [reranked, *others]


def mean_of(per_query: dict, system: str, key: str) -> float:
    """A system's mean of one per-query metric."""
    return sum(s[key] for s in per_query[system].values()) / max(1, len(per_query[system]))


def verdict(per_query: dict, params: EvalParams, first_stages: list[str]) -> dict:
    """The fine-tuned model against the best untrained system measured here, and the one line
    that says so.

    Untrained: every first stage (the reranked one first), and the prior alone (the fusion of
    their evidence without the cross-encoder) where the reranker has one. Training is worth
    shipping only if it beats all of them.
    """
    reranked = first_stages[0]
    key = f"NDCG@{params.significance_k}"
    untrained = [*first_stages, *(["prior"] if "prior" in per_query else [])]
    best = max(untrained, key=lambda n: mean_of(per_query, n, key))
    test = compare_systems(
        per_query, [("finetuned", best)], key, params.significance_resamples, params.seed
    )[f"finetuned_vs_{best}"]
    beats = test["delta"] > 0 and test["p_value"] < SIGNIFICANCE_LEVEL
    outcome = "beats" if beats else "DOES NOT beat"
    line = (
        f"the fine-tuned reranker (on {reranked} candidates) {outcome} the best untrained system, "
        f"{best}: {key} {test[f'mean_{best}']:.4f} -> {test['mean_finetuned']:.4f} "
        f"({test['delta'] * 100:+.1f} points, p = {test['p_value']:.4f}, {test['queries']} queries)"
    )
    best_first_stage = max(first_stages, key=lambda n: mean_of(per_query, n, key))
    if best_first_stage != reranked:
        line += (
            f"; {best_first_stage} is the better first stage here: "
            f"set retrieval.first_stage: {best_first_stage}"
        )
    return {
        "best_baseline": best,
        "beats_best_baseline": beats,
        "gain": test["delta"],
        "p_value": test["p_value"],
        "line": line,
    }


def evaluate(
    data: BeirData,
    params: EvalParams,
    first_stage: FirstStageSettings,
    finetuned: Reranker,
    base: Reranker | None = None,
    notes: list[str] | None = None,
) -> EvalResult:
    """Every first stage alone, and each reranker on ``first_stage``'s candidates."""
    reranked = first_stage.name
    names = first_stage_names(params, reranked)
    runs: dict[str, Run] = first_stage_runs(data, names, first_stage)
    speed: dict[str, dict] = {}
    for name, reranker in (("base", base), ("finetuned", finetuned)):
        if reranker is not None:
            log.info("reranking the %s candidates with the %s model", reranked, name)
            start = time.perf_counter()
            parts = reranker.rerank_parts(data, runs[reranked], params.batch_size, progress=True)
            runs[name] = parts.pop("finetuned")
            if name == "finetuned":
                runs.update(parts)
            speed[name] = rerank_speed(
                runs[name], time.perf_counter() - start, reranker, params.batch_size
            )
            log.info(
                "%s: %d pairs in %.1f s, %.0f pairs/s (%s)",
                name,
                speed[name]["pairs"],
                speed[name]["seconds"],
                speed[name]["pairs_per_s"],
                speed[name]["device"],
            )

    result = judge_runs(data, runs, params, reranked, first_stage.top_k)
    if speed:
        result.metrics["rerank_speed"] = speed
    if notes:
        result.metrics["notes"] = list(notes)
    return result


def judge_runs(
    data: BeirData, runs: dict[str, Run], params: EvalParams, reranked: str, top_k: int
) -> EvalResult:
    """Every system's metrics and per-query scores against ``data``'s qrels, the paired tests
    and the verdict: ``evaluate``'s figures, also for runs pooled from several evaluations
    (the bench's query folds)."""
    key = f"NDCG@{params.significance_k}"
    recall_k = max(params.k_values)
    metrics: dict = {
        name: ranking_metrics(data.qrels, run, params.k_values, params.mrr_k)
        for name, run in runs.items()
    }
    per_query = {
        name: per_query_scores(data.qrels, run, params.significance_k, recall_k, params.mrr_k)
        for name, run in runs.items()
    }
    metrics.update(significance_and_verdict(per_query, params, first_stage_names(params, reranked)))
    by_meta = breakdown(per_query, data.metadata, params.breakdown_keys, key)
    if by_meta:
        metrics["breakdown"] = {"metric": key, **by_meta}
    metrics["dataset"] = {
        "queries": len(data.queries),
        "passages": len(data.corpus),
        "first_stage": reranked,
        "top_k": top_k,
    }
    return EvalResult(metrics=metrics, runs=runs, per_query=per_query)


def significance_and_verdict(per_query: dict, params: EvalParams, first_stages: list[str]) -> dict:
    """The paired tests (each reranker against its candidates and the prior, the cross-encoder
    alone against every first stage) and the verdict, from the systems' per-query scores."""
    key = f"NDCG@{params.significance_k}"
    candidates = (
        ("finetuned", first_stages[0]),
        ("finetuned", "prior"),
        ("finetuned", "base"),
        ("base", first_stages[0]),
        *(("crossencoder", n) for n in first_stages),
    )
    pairs = [(a, b) for a, b in candidates if a in per_query and b in per_query]
    return {
        "significance": {
            "metric": key,
            "test": "paired randomisation (sign flip), two-sided, "
            f"{params.significance_resamples} resamples",
            **compare_systems(per_query, pairs, key, params.significance_resamples, params.seed),
        },
        "verdict": verdict(per_query, params, first_stages),
    }


def review_metrics(metrics: dict, params: EvalParams) -> dict:
    """The numbers that decide a review (DVC's ``metrics`` file): a few per system, then the
    verdict.

    The reranker's parts alone (prior, cross-encoder) get nDCG only: they rerank the same
    candidates, so their recall is the first stage's, and the report has the rest.
    """
    systems = [s for s in SYSTEMS if s in metrics]

    def cut(
        family: str, prefix: str, wanted: int
    ) -> str:  # the wanted cut-off, or the deepest measured
        name = f"{prefix}@{wanted}"
        return name if name in metrics[systems[0]][family] else f"{prefix}@{max(params.k_values)}"

    columns = [
        ("NDCG", cut("NDCG", "NDCG", params.significance_k)),
        ("Recall", cut("Recall", "Recall", RECALL_K)),
        ("MRR", f"MRR@{params.mrr_k}"),
    ]
    out: dict = {
        system: {
            name: metrics[system][family][name]
            for family, name in columns
            if system not in PARTS or family == "NDCG"
        }
        for system in systems
    }
    out["gain_over_best_baseline"] = round(metrics["verdict"]["gain"], 5)
    out["p_value"] = metrics["verdict"]["p_value"]
    return out


def check_endpoint(
    data: BeirData, params: EvalParams, candidates: Run, checkpoint_metrics: dict
) -> tuple[dict, list[dict]]:
    """Score ``candidates`` through ``params.endpoint_url``; (summary, per-metric rows)."""
    client = RankingClient(
        params.endpoint_url,
        params.endpoint_model,
        params.endpoint_timeout_s,
        params.endpoint_api_key_env,
    )
    try:
        log.info("endpoint check: %s (model %s)", client.url, client.model)
        run = rerank_with_endpoint(data, candidates, client)
    finally:
        client.close()
    endpoint_metrics = ranking_metrics(data.qrels, run, params.k_values, params.mrr_k)
    rows = compare_metrics(
        checkpoint_metrics,
        endpoint_metrics,
        params.endpoint_tolerance_at_1,
        params.endpoint_tolerance,
    )
    return endpoint_summary(rows, client.url, client.model), rows


def load_base(
    base_model: str, finetuned: Reranker, mode: str, trust_remote_code: bool
) -> tuple[Reranker | None, str | None]:
    """The base model as a reranker with the fine-tuned prompt, or None with the reason why."""
    if mode == "never":
        return None, "base model not evaluated (eval.evaluate_base: never)"
    base = Reranker.from_pretrained(
        base_model,
        trust_remote_code=trust_remote_code,
        prompt_template=finetuned.prompt_template,
        max_length=finetuned.max_length,
        bf16=finetuned.backend.bf16,
    )
    if mode == "auto" and base.head_was_new:
        return None, (
            f"base model {base_model} skipped: it has no trained ranking head "
            "(its scores would be random); set eval.evaluate_base: always to force it"
        )
    return base, None


def _plot_rows(test_set: str, metrics: dict, k_values: list[int]) -> list[dict]:
    """One row per (system, k): DVC draws one line per ``model`` (test set / system)."""
    systems = [s for s in SYSTEMS if s in metrics]
    return [
        {
            "model": f"{test_set}/{name}",
            "k": k,
            "NDCG": metrics[name]["NDCG"][f"NDCG@{k}"],
            "Recall": metrics[name]["Recall"][f"Recall@{k}"],
            "MAP": metrics[name]["MAP"][f"MAP@{k}"],
            "Precision": metrics[name]["Precision"][f"P@{k}"],
        }
        for name in systems
        for k in sorted(set(k_values))
    ]


def write_per_query(
    path: str | Path, per_query: dict[str, dict[str, dict[str, dict[str, float]]]]
) -> None:
    """Long TSV (query_id, system as ``test_set/system``, measures...) so two runs can be joined
    and compared."""
    rows = {
        f"{test_set}/{system}": scores
        for test_set, systems in per_query.items()
        for system, scores in systems.items()
    }
    measures = sorted({m for scores in rows.values() for s in scores.values() for m in s})
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(["query_id", "system", *measures])
        for system, scores in rows.items():
            for qid in sorted(scores):
                writer.writerow([qid, system, *(f"{scores[qid][m]:.5f}" for m in measures)])


def test_sets(params: EvalParams) -> list[TestSet]:
    """Each BEIR folder under ``questions_dir`` (real questions); without any, prep's synthetic
    split.

    Generated queries are cut from their passages, so BM25 ranks them almost perfectly and
    they cannot tell rerankers apart: they stand in only where no real question exists.
    """
    root = Path(params.questions_dir)
    human = (
        sorted(p for p in root.iterdir() if (p / "queries.jsonl").is_file())
        if root.is_dir()
        else []
    )
    if human:
        return [TestSet(p.name, str(p), "real questions") for p in human]
    log.warning(
        "no real questions under %s: judging on prep's split of generated queries, "
        "which favour BM25",
        root,
    )
    return [TestSet(SYNTHETIC, params.data_path, "prep's test split of generated queries")]


def run_eval(
    params: EvalParams,
    finetuned_model: str | Path,
    outputs: EvalOutputs,
    retrieval: RetrievalParams | None = None,
    model: ModelParams | None = None,
) -> dict:
    """The eval stage: every test set, then metrics, details, plots, per-query scores and the
    report.

    ``retrieval`` is the first stage whose candidates get reranked (default: RetrievalParams());
    ``model`` the base model the fine-tuned one is compared against (default: ModelParams()).

    A failed endpoint check raises EndpointMismatch after every file is written.
    """
    retrieval = retrieval or RetrievalParams()
    model = model or ModelParams()
    sets = [
        (test_set, load_beir(test_set.path, params.split)) for test_set in test_sets(params)
    ]  # bad data fails first
    finetuned = Reranker.from_pretrained(
        str(finetuned_model),
        trust_remote_code=model.trust_remote_code,
        bf16=bf16_enabled(params.mixed_precision),
    )
    base, note = load_base(
        model.base_model, finetuned, params.evaluate_base, model.trust_remote_code
    )
    first_stage = FirstStageSettings.from_params(retrieval, params.top_k)
    if note:
        log.info(note)
    details: dict = {}
    per_query: dict = {}
    plots: list[dict] = []
    endpoint_rows: list[dict] = []
    for test_set, data in sets:
        log.info(
            "eval (%s): %d queries over %d passages from %s",
            test_set.name,
            len(data.queries),
            len(data.corpus),
            test_set.path,
        )
        result = evaluate(data, params, first_stage, finetuned, base, [note] if note else None)
        result.metrics["dataset"].update(path=test_set.path, description=test_set.description)
        if params.endpoint_url and not endpoint_rows:
            result.metrics["endpoint"], endpoint_rows = check_endpoint(
                data, params, result.runs[first_stage.name], result.metrics["finetuned"]
            )
        details[test_set.name], per_query[test_set.name] = result.metrics, result.per_query
        plots += _plot_rows(test_set.name, result.metrics, params.k_values)
        (log.info if result.verdict["beats_best_baseline"] else log.warning)(
            "%s: %s", test_set.name, result.verdict["line"]
        )
    review = {name: review_metrics(metrics, params) for name, metrics in details.items()}
    write_json(outputs.metrics, review)
    write_json(outputs.details, details)
    write_json(outputs.plots, plots)
    write_per_query(outputs.per_query, per_query)
    write_text(outputs.report, markdown_report(details, params.k_values, endpoint_rows))
    endpoint = next((m["endpoint"] for m in details.values() if "endpoint" in m), None)
    if endpoint and not endpoint["passed"]:
        raise EndpointMismatch(
            f"endpoint {params.endpoint_url} differs from the checkpoint {finetuned_model} "
            f"beyond tolerance:\n{format_table(endpoint_rows)}"
        )
    return review
