"""How deep to rerank, and how strong a prior: one trained reranker, many settings, real queries.

    python bench/rerank_depth.py /path/to/beir_folder /path/to/reranker \\
        [--depths 20 50 100] [--prior-scales 0.5 1.5] [--run-id nq-utd/my-change] [--out FILE]

With ``--run-id`` the sweep joins that run in the run record
(bench/results/domain_adaptation_runs.json), as the sweep of the model the run trained; without it
it goes to bench/results/rerank_depth_<name>.json.

The first stage is the recipe's (params.yaml: retrieval, as the eval
stage and bench/domain_adaptation.py retrieve) and returns the top max(depths) candidates.
Each pair is scored once, the cross-encoder's logit and the prior apart, so every
(depth, prior scale) setting costs no more model time; scores combine through the same
``ScoreRecipe`` as everywhere else. Scale 1 is the prior the model was trained with; any
other scale only rescales it at ranking time, so it is an experiment, not something
``finetune`` ships. "Prior alone" ranks by the prior without the cross-encoder: the
untrained baseline the training has to beat. Each setting gets nDCG@10 and the paired test
against the best first stage.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
from common import RESULTS, RUNS, checkout_commit, machine, read_runs, save_run
from domain_adaptation import REPO, load_config

from reranktune.beir_data import load_beir
from reranktune.evaluation.significance import compare_systems
from reranktune.io import InputError, write_json
from reranktune.ir_metrics import Run, per_query_scores
from reranktune.models import bf16_enabled
from reranktune.params import EvalParams, RetrievalParams
from reranktune.reranker.model import Reranker
from reranktune.reranker.scoring import ScoreRecipe
from reranktune.retrieval.first_stage import FIRST_STAGES, FirstStageSettings, first_stage_runs

log = logging.getLogger("rerank_depth")
KEY = "NDCG@10"


def first_stage_settings(params_file: Path) -> tuple[EvalParams, FirstStageSettings]:
    """The recipe's eval section and first stage: what the eval stage retrieves with."""
    config = load_config(params_file)
    eval_params = EvalParams(**config["eval"])
    return eval_params, FirstStageSettings.from_params(
        RetrievalParams(**config["retrieval"]), eval_params.top_k
    )


def head_of(candidates: Run, top: int) -> Run:
    """Each query's first ``top`` candidates by first-stage score."""
    return {q: dict(sorted(d.items(), key=lambda x: -x[1])[:top]) for q, d in candidates.items()}


def with_tail(candidates: Run, head_scores: Run) -> Run:
    """The reranked head first, then the other candidates in first-stage order below it."""
    run = {}
    for qid, docs in candidates.items():
        scores = head_scores.get(qid, {})
        floor = min(scores.values()) if scores else 0.0
        tail = sorted((d for d in docs if d not in scores), key=lambda d: -docs[d])
        run[qid] = {**scores, **{d: floor - 1.0 - i for i, d in enumerate(tail)}}
    return run


def split_scores(data, head: Run, reranker: Reranker, batch_size: int) -> tuple[Run, Run]:
    """Per (query, doc): the cross-encoder's logit, and the prior's score (zero without a prior)."""
    pairs = [(q, d) for q, docs in head.items() for d in docs]
    queries, passages = (
        [data.queries[q] for q, _ in pairs],
        [data.passage_text(d) for _, d in pairs],
    )
    logits = reranker.logits_encoded(
        reranker.encoder.encode(queries, passages), batch_size, progress=True
    )
    prior = reranker.prior.scores(queries, passages) if reranker.prior else np.zeros(len(pairs))
    logit_run: Run = {q: {} for q in head}
    prior_run: Run = {q: {} for q in head}
    for (q, d), logit, value in zip(pairs, logits.tolist(), prior.tolist()):
        logit_run[q][d], prior_run[q][d] = logit, value
    return logit_run, prior_run


def sweep(candidates: Run, logits: Run, prior: Run, depths: list[int], scales: list[float | None]):
    """(depth, scale, run) for every setting: logit + scale x prior over the top ``depth``.

    Scale None is the prior alone, the cross-encoder left out: what the first stage's
    evidence gives without any training, so the trained model's own share shows.
    """
    for depth in depths:
        head = head_of(candidates, depth)
        for scale in scales:
            scores = {
                q: {
                    d: prior[q][d]
                    if scale is None
                    else ScoreRecipe.total(logits[q][d], scale * prior[q][d])
                    for d in docs
                }
                for q, docs in head.items()
            }
            yield depth, scale, with_tail(candidates, scores)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "beir_dir", type=Path, help="BEIR folder with corpus, queries and qrels/test.tsv"
    )
    parser.add_argument(
        "reranker", help="a reranker folder (finetune's output, or a bench --work's model/)"
    )
    parser.add_argument(
        "--depths",
        type=int,
        nargs="+",
        default=[20, 30, 50, 100],
        help="rerank the first stage's top N for each N",
    )
    parser.add_argument(
        "--prior-scales",
        type=float,
        nargs="*",
        default=[],
        help="multiples of the trained prior to try besides 1 (needs a reranker with a prior)",
    )
    parser.add_argument(
        "--params-file",
        type=Path,
        default=REPO / "params.yaml",
        help="its retrieval section is the first stage",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--run-id", help="the run in the run record that trained this reranker: the sweep joins it"
    )
    parser.add_argument(
        "--record", type=Path, default=RUNS, help="the run record (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if min(args.depths) < 1:
        raise InputError(f"--depths {args.depths}: every depth must be >= 1")
    record = {run["id"]: run for run in read_runs(args.record)}
    if args.run_id and args.run_id not in record:
        raise InputError(f"--run-id {args.run_id}: no such run in {args.record}")

    start = time.perf_counter()
    params, settings = first_stage_settings(args.params_file)
    reranker = Reranker.from_pretrained(args.reranker, bf16=bf16_enabled(params.mixed_precision))
    if args.prior_scales and reranker.prior is None:
        raise InputError(
            f"--prior-scales: {args.reranker} has no prior (reranktune.json has no 'prior' entry)"
        )
    scales = sorted({1.0, *args.prior_scales}) + ([None] if reranker.prior else [])

    data = load_beir(args.beir_dir)
    runs = first_stage_runs(data, list(FIRST_STAGES), settings.with_top_k(max(args.depths)))
    candidates = runs[settings.name]
    logits, prior = split_scores(
        data, head_of(candidates, max(args.depths)), reranker, args.batch_size
    )
    per_query = {
        name: per_query_scores(data.qrels, run, 10, max(args.depths), params.mrr_k)
        for name, run in runs.items()
    }
    best = max(FIRST_STAGES, key=lambda n: np.mean([s[KEY] for s in per_query[n].values()]))
    results = []
    for depth, scale, run in sweep(candidates, logits, prior, sorted(args.depths), scales):
        per_query["setting"] = per_query_scores(data.qrels, run, 10, max(args.depths), params.mrr_k)
        test = compare_systems(
            per_query, [("setting", best)], KEY, params.significance_resamples, params.seed
        )[f"setting_vs_{best}"]
        results.append(
            {
                "depth": depth,
                "prior_scale": scale,
                "trained": scale == 1.0,
                "prior_only": scale is None,
                KEY: test["mean_setting"],
                "vs_best_first_stage": test,
            }
        )
        log.info(
            "depth %d, %s: %s %.4f",
            depth,
            "prior alone" if scale is None else f"prior x {scale:g}",
            KEY,
            test["mean_setting"],
        )

    name = args.beir_dir.resolve().name
    out = args.out or (None if args.run_id else RESULTS / f"rerank_depth_{name}.json")
    report = {
        "dataset": name,
        "reranker": str(args.reranker),
        "reranked_first_stage": settings.name,
        "first_stages": {
            n: round(float(np.mean([s[KEY] for s in per_query[n].values()])), 5)
            for n in FIRST_STAGES
        },
        "best_first_stage": best,
        "settings": results,
        "wall_time_s": round(time.perf_counter() - start, 1),
        "machine": machine(),
    }
    if out:
        write_json(out, report)
        log.info("wrote %s", out)
    if args.run_id:
        recorded = {
            "commit": checkout_commit(),
            "date": time.strftime("%Y-%m-%d"),
            "result": report,
        }
        save_run({**record[args.run_id], "rerank_depth": recorded}, args.record)
        log.info("recorded the sweep with %s in %s", args.run_id, args.record)
    return report


if __name__ == "__main__":
    main()
