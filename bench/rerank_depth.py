"""How deep to rerank, and how strong a prior: one trained reranker, many settings, real queries.

    python bench/rerank_depth.py /path/to/beir_folder /path/to/reranker \\
        [--depths 20 50 100] [--prior-weights 10 20 30] [--out bench/results/rerank_depth_<name>.json]

The first stage (dense, params.yaml's prep.embedding, as in bench/domain_adaptation.py) returns
the top max(depths) candidates. Each pair is scored once, the logit and the prior's cosine
apart, so every (depth, prior weight) setting costs no more model time. Each setting gets
nDCG@10 and the paired test against the first stage. The reranker's own prior weight (the one
it was trained with, 0 without a prior) is always among the weights; any other weight only
rescales the prior at ranking time, so it is an experiment, not something `finetune` ships.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
from domain_adaptation import REPO, head_of, load_config, machine, per_query_ndcg10, versus, with_tail

from reranktune.evaluation.beir_data import load_beir
from reranktune.evaluation.first_stage import dense_retrieval
from reranktune.evaluation.run import rerank
from reranktune.io import InputError, write_json
from reranktune.params import EmbeddingParams
from reranktune.reranker import Reranker

log = logging.getLogger("rerank_depth")


def first_stage_embedding(params_file: Path) -> EmbeddingParams:
    """prep.embedding of the recipe: the model prep mined with and the bench retrieves with."""
    return EmbeddingParams(**load_config(params_file)["prep"]["embedding"])


def split_scores(data, head: dict, reranker: Reranker, batch_size: int) -> tuple[dict, dict]:
    """Per (query, doc): the model's logit, and the prior's cosine (weight 1; empty without a prior)."""
    prior, reranker.prior = reranker.prior, None
    try:
        logits = rerank(data, head, reranker, batch_size)
    finally:
        reranker.prior = prior
    if prior is None:
        return logits, {}
    pairs = [(q, d) for q, docs in head.items() for d in docs]
    cosines = prior.scores([data.queries[q] for q, _ in pairs], [data.passage_text(d) for _, d in pairs])
    cosine: dict = {q: {} for q in head}
    for (q, d), value in zip(pairs, (cosines / prior.weight).tolist()):
        cosine[q][d] = value
    return logits, cosine


def sweep(candidates: dict, logits: dict, cosine: dict, depths: list[int], weights: list[float]):
    """(depth, weight, run) for every setting: logit + weight x cosine over the top ``depth``."""
    for depth in depths:
        head = head_of(candidates, depth)
        for weight in weights:
            scores = {q: {d: logits[q][d] + weight * cosine.get(q, {}).get(d, 0.0) for d in docs}
                      for q, docs in head.items()}
            yield depth, weight, with_tail(candidates, scores)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("beir_dir", type=Path, help="BEIR folder with corpus, queries and qrels/test.tsv")
    parser.add_argument("reranker", help="a reranker folder (finetune's output, or a bench --work's model/)")
    parser.add_argument("--depths", type=int, nargs="+", default=[20, 30, 50, 100],
                        help="rerank the first stage's top N for each N")
    parser.add_argument("--prior-weights", type=float, nargs="*", default=[],
                        help="prior weights to try besides the reranker's own (needs a reranker with a prior)")
    parser.add_argument("--params-file", type=Path, default=REPO / "params.yaml",
                        help="its prep.embedding is the first stage")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                        help="bf16 autocast on CPU (AMX), as bench/domain_adaptation.py reranks")
    parser.add_argument("--permutations", type=int, default=10000, help="paired randomisation test resamples")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if min(args.depths) < 1:
        raise InputError(f"--depths {args.depths}: every depth must be >= 1")

    start = time.perf_counter()
    embedding = first_stage_embedding(args.params_file)
    reranker = Reranker.from_pretrained(args.reranker)
    reranker.bf16 = reranker.bf16 or args.bf16
    own_weight = reranker.prior.weight if reranker.prior else 0.0
    if args.prior_weights and reranker.prior is None:
        raise InputError(f"--prior-weights: {args.reranker} has no prior (reranktune.json has no 'prior' entry)")
    weights = sorted({own_weight, *args.prior_weights})

    data = load_beir(args.beir_dir)
    candidates = dense_retrieval(data, embedding, max(args.depths))
    logits, cosine = split_scores(data, head_of(candidates, max(args.depths)), reranker, args.batch_size)
    first = per_query_ndcg10(data.qrels, candidates)
    settings = []
    for depth, weight, run in sweep(candidates, logits, cosine, sorted(args.depths), weights):
        per_query = per_query_ndcg10(data.qrels, run)
        settings.append({"depth": depth, "prior_weight": weight, "trained_weight": weight == own_weight,
                         "NDCG@10": round(float(np.mean(list(per_query.values()))), 5),
                         "vs_first_stage_ndcg@10": versus(first, per_query, args.permutations)})
        log.info("depth %d, prior weight %g: nDCG@10 %.4f", depth, weight, settings[-1]["NDCG@10"])

    name = args.beir_dir.resolve().name
    out = args.out or Path(__file__).parent / "results" / f"rerank_depth_{name}.json"
    result = {"dataset": name, "reranker": str(args.reranker), "trained_prior_weight": own_weight,
              "first_stage": {"model": embedding.model, "NDCG@10": round(float(np.mean(list(first.values()))), 5)},
              "settings": settings, "wall_time_s": round(time.perf_counter() - start, 1), "machine": machine()}
    write_json(out, result)
    log.info("wrote %s", out)
    return result


if __name__ == "__main__":
    main()
