"""Print the markdown rows of bench/results/domain_adaptation.md's parts table from its JSON files.

    python bench/results_table.py bench/results/domain_adaptation_nq-utd_logit-loss.json ...

Each row is one `bench/domain_adaptation.py` result: every system's nDCG@10 from that run,
the trained reranker against the best untrained system, the cross-encoder alone against dense.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def row(result: dict, change: str) -> str:
    systems, verdict, tests = result["systems"], result["verdict"], result["significance"]
    ndcg = {name: f"{scores['NDCG@10']:.4f}" for name, scores in systems.items() if isinstance(scores, dict)}
    alone = tests.get("crossencoder_vs_dense")
    versus = f"{alone['delta'] * 100:+.1f} ({alone['p_value']:.4f})" if alone else "—"
    cells = [result["run"], result["dataset"], change,
             *(ndcg.get(s, "—") for s in ("dense", "bm25", "hybrid", "prior", "crossencoder", "finetuned")),
             f"{verdict['gain'] * 100:+.1f} vs {verdict['best_baseline']}", f"{verdict['p_value']:.4f}", versus,
             f"{result['wall_time_s']['total'] / 60:.1f} min"]
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for path in args.results:
        result = json.loads(path.read_text())
        print(row(result, " ".join(result["overrides"]) or "params.yaml"))


if __name__ == "__main__":
    main()
