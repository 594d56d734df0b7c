"""The tables of bench/results/domain_adaptation.md, generated from the run record.

    python bench/results_table.py            # print every table, regenerated from the record
    python bench/results_table.py --write    # rewrite the tables in the markdown
    python bench/results_table.py --check    # exit 1 where the markdown and the record disagree

The record, bench/results/domain_adaptation_runs.json, is a list of runs, oldest first:

- ``id``: ``<dataset>/<what the run tries>``, e.g. ``nq-utd/prior-10-10``;
- ``dataset``: the BEIR folder's name;
- ``change``: what the run tried, against the runs whose ids it names;
- ``settings``: ``{params key: value}`` that set the run apart: the ``--params`` it was given and,
  for runs recorded before those were, the recorded params that differ from the default recipe;
- ``note`` (optional): what else shared the machine, or why a figure reads differently;
- ``commit``, ``date``: the commit that recorded the result;
- ``result``: bench/domain_adaptation.py's report (every system's metrics, the paired tests, the
  params, the prep and training summaries, wall time per stage, the machine);
- ``rerank_depth`` (optional): ``{commit, date, result}``, bench/rerank_depth.py's sweep of the
  run's model.

bench/domain_adaptation.py ``--run-id`` and bench/rerank_depth.py ``--run-id`` write it. A table
in the markdown sits between ``<!-- table KIND: RUN_ID ... -->`` (``*``: every run) and
``<!-- /table -->``; KIND is ``depth`` or a key of ``ROWS``. Runs made before eval measured a
system show "—" for it; before the hybrid first stage existed the reranker was tested against
dense.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(
    0, str(Path(__file__).resolve().parent)
)  # the bench's helpers, also when a test loads this file
from common import RESULTS, read_runs  # noqa: E402

MARKDOWN = RESULTS / "domain_adaptation.md"
BLOCK = re.compile(r"<!-- table ([\w-]+): ([^>]*?) -->\n.*?<!-- /table -->", re.S)
NONE = "—"


def systems(result: dict) -> dict[str, dict]:
    """Each system's metrics by name. The first results' ``first_stage`` was dense retrieval, and
    ``finetuned_fused`` a z-score mix of the reranker and dense scores (here ``fused``)."""
    found = {name: m for name, m in result["systems"].items() if isinstance(m, dict)}
    renamed = {"first_stage": "dense", "finetuned_fused": "fused"}
    return {renamed.get(name, name): m for name, m in found.items()}


def paired(result: dict, system: str, baseline: str) -> dict | None:
    """The paired test of ``system`` against ``baseline`` (``delta``, ``p_value``), if the run made
    it."""
    if "significance" in result:
        return result["significance"].get(f"{system}_vs_{baseline}")
    old = (
        systems(result).get(system, {}).get("vs_first_stage_ndcg@10")
        if baseline == "dense"
        else None
    )
    return old and {
        "delta": old["mean_difference"],
        "p_value": old["p_value"],
        "wins": old["wins"],
        "losses": old["losses"],
    }


def ndcg(result: dict, system: str) -> str:
    scores = systems(result).get(system)
    return f"{scores['NDCG@10']:.4f}" if scores else NONE


def points(delta: float) -> str:
    return f"{delta * 100:+.1f}"


def delta_and_p(result: dict, system: str, baseline: str) -> list[str]:
    test = paired(result, system, baseline)
    return [points(test["delta"]), f"{test['p_value']:.4f}"] if test else [NONE, NONE]


def minutes(result: dict) -> str:
    return f"{result['wall_time_s']['total'] / 60:.1f} min"


def params_value(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def settings(run: dict) -> str:
    return (
        " ".join(f"`{key}={params_value(value)}`" for key, value in run["settings"].items())
        or "params.yaml"
    )


def change(run: dict) -> str:
    return run.get("change") or settings(run)


def depth(result: dict) -> int:
    params = result["params"]
    return params["eval"]["top_k"] if "eval" in params else params["bench"]["rerank_top_k"]


def prior_weights(result: dict) -> str:
    """The prior's weights the model scores with: fitted, as trained, or the early cosine-only
    prior."""
    finetune, params = result["finetune"], result["params"]["finetune"]
    if "prior_weights" in finetune:
        return f"{finetune['prior_weights']['dense']:g} / {finetune['prior_weights']['lexical']:g}"
    if "prior" in params:
        return f"{params['prior']['dense_weight']:g} / {params['prior']['lexical_weight']:g}"
    return f"{params['prior_weight']:g} / none" if params.get("prior_weight") else "none"


def summary(run: dict) -> list[str]:
    r = run["result"]
    return [
        run["id"],
        str(r["queries"]),
        *(ndcg(r, s) for s in ("dense", "bm25", "hybrid", "finetuned")),
        *delta_and_p(r, "finetuned", "hybrid"),
        f"{systems(r)['finetuned']['Recall@100']:.4f}",
        minutes(r),
    ]


def parts(run: dict) -> list[str]:
    r = run["result"]
    verdict, alone = r["verdict"], paired(r, "crossencoder", "dense")
    return [
        run["id"],
        settings(run),
        *(ndcg(r, s) for s in ("dense", "bm25", "hybrid", "prior", "crossencoder", "finetuned")),
        # runs before the prior-alone baseline named the best first stage instead
        f"{points(verdict['gain'])} vs "
        f"{verdict.get('best_baseline') or verdict['best_first_stage']}",
        f"{verdict['p_value']:.4f}",
        f"{points(alone['delta'])} ({alone['p_value']:.4f})" if alone else NONE,
        minutes(r),
    ]


def versus_hybrid(run: dict) -> list[str]:
    r = run["result"]
    return [
        run["id"],
        change(run),
        ndcg(r, "hybrid"),
        ndcg(r, "finetuned"),
        *delta_and_p(r, "finetuned", "hybrid"),
        minutes(r),
    ]


def versus_dense(run: dict) -> list[str]:
    r = run["result"]
    test, fused = paired(r, "finetuned", "dense"), paired(r, "fused", "dense")
    has_prior = bool(
        r["params"]["finetune"].get("prior_weight")
    )  # then fused counts the first stage twice
    return [
        run["id"],
        change(run),
        f"{r['finetune']['train_records']:,} ({r['finetune']['steps']:,})",
        str(depth(r)),
        ndcg(r, "dense"),
        ndcg(r, "finetuned"),
        *delta_and_p(r, "finetuned", "dense"),
        f"{test['wins']} / {test['losses']}" if test and "wins" in test else NONE,
        f"{points(fused['delta'])} ({fused['p_value']:.4f})" if fused and not has_prior else NONE,
        minutes(r),
    ]


def training(run: dict) -> list[str]:
    r = run["result"]
    ft, wall = r["finetune"], r["wall_time_s"]
    stages = [
        wall["sdg"],
        wall["prep"],
        wall["finetune"],
        wall["total"] - wall["sdg"] - wall["prep"] - wall["finetune"],
    ]
    mrr = ft.get("best_val_mrr")
    prior_alone = ft.get("prior_alone")  # "—" for runs recorded before the summary had it
    return [
        run["id"],
        f"{ft['train_records']:,}",
        f"{ft['steps']:,}",
        f"{prior_alone['groups_ranked_first']:.1%}" if prior_alone else NONE,
        f"{ft['train_loss']:.4f}",
        f"{mrr:.3f}" if mrr is not None else NONE,
        prior_weights(r),
        " / ".join(f"{s:.0f}" for s in stages),
    ]


def seeds(run: dict) -> list[str]:
    """A ``bench.seeds`` run: each seed's models, then their per-query mean and its paired test."""
    r = run["result"]
    per_seed = r["per_seed"]

    def each(system: str) -> str:
        return " / ".join(f"{s['systems'][system]['NDCG@10']:.4f}" for s in per_seed.values())

    test = paired(r, "finetuned", "prior")
    return [
        run["id"],
        ", ".join(per_seed),
        ndcg(r, "prior"),
        each("crossencoder"),
        ndcg(r, "crossencoder"),
        each("finetuned"),
        ndcg(r, "finetuned"),
        points(test["delta"]),
        f"{test['p_value']:.4f}",
        minutes(r),
    ]


def folds(run: dict) -> list[str]:
    """A ``bench.real_query_folds`` run: each fold's training on the other folds' questions."""
    per_fold = run["result"]["per_fold"]

    def each(value) -> str:
        return " / ".join(value(fold) for fold in per_fold)

    return [
        run["id"],
        each(lambda f: f"{f['queries']:,}"),
        each(lambda f: f"{f['prep']['queries_per_split']['train']:,}"),
        each(lambda f: f"{f['finetune']['train_records']:,}"),
        each(lambda f: f"{f['finetune']['steps']:,}"),
        each(lambda f: f"{f['finetune']['prior_alone']['groups_ranked_first']:.1%}"),
        each(lambda f: f"{f['finetune']['train_loss']:.4f}"),
    ]


def provenance(run: dict) -> list[str]:
    r = run["result"]
    m = r["machine"]
    notes = "; ".join(n for n in (run.get("note"), m.get("note"), r.get("note")) if n)
    return [
        run["id"],
        run["date"],
        f"`{run['commit']}`",
        m["cpu"],
        str(m["cores"]),
        str(m["torch_threads"]),
        r["finetune"].get("precision", NONE),  # "—" for runs recorded before the summary had it
        f"{m['load_average_at_end'][0]:.1f}",
        notes,
    ]


def depth_cells(sweep: dict) -> tuple[str, dict[tuple[int, float | None], dict]]:
    """(baseline first stage and its nDCG@10, {(depth, prior scale): {NDCG@10, delta, p_value}}).

    The first sweeps named the prior's weight and tested against dense; later ones name the scale
    of the trained prior (None: the prior alone) and test against the best first stage.
    """
    if "trained_prior_weight" in sweep:
        trained = sweep["trained_prior_weight"]
        base = f"dense {sweep['first_stage']['NDCG@10']:.4f}"
        return base, {
            (s["depth"], s["prior_weight"] / trained): {
                "NDCG@10": s["NDCG@10"],
                "delta": s["vs_first_stage_ndcg@10"]["mean_difference"],
                "p_value": s["vs_first_stage_ndcg@10"]["p_value"],
            }
            for s in sweep["settings"]
        }
    best = sweep["best_first_stage"]
    return f"{best} {sweep['first_stages'][best]:.4f}", {
        (s["depth"], s["prior_scale"]): {"NDCG@10": s["NDCG@10"], **s["vs_best_first_stage"]}
        for s in sweep["settings"]
    }


def scale_name(scale: float | None) -> str:
    if scale is None:
        return "prior alone"
    return "logit alone" if scale == 0 else f"× {scale:g}" + (" (trained)" if scale == 1 else "")


def depth_table(runs: list[dict]) -> list[str]:
    sweeps = [(run["id"], *depth_cells(run["rerank_depth"]["result"])) for run in runs]
    found = {scale for _, _, cells in sweeps for _, scale in cells}
    scales = [s for s in (0.0, None) if s in found] + sorted(found - {0.0, None})
    header = ["run", "depth", "baseline", *map(scale_name, scales)]
    rows = []
    for run_id, base, cells in sweeps:
        for d in sorted({d for d, _ in cells}):
            row = [run_id, str(d), base]
            for scale in scales:
                cell = cells.get((d, scale))
                p = f", p {cell['p_value']:.2f}" if cell and cell["p_value"] >= 0.05 else ""
                row.append(f"{cell['NDCG@10']:.4f} ({points(cell['delta'])}{p})" if cell else NONE)
            rows.append(row)
    legend = (
        "Cells: nDCG@10 (Δ against the baseline first stage in points; "
        "p where it is 0.05 or more). "
        "× s: the trained prior times s at ranking time only; logit alone: × 0."
    )
    return markdown_table(header, rows) + ["", legend]


ROWS = {  # KIND: (header, one row per run)
    "summary": (
        [
            "run",
            "queries",
            "dense",
            "BM25",
            "hybrid",
            "fine-tuned",
            "Δ vs hybrid",
            "p",
            "Recall@100",
            "wall",
        ],
        summary,
    ),
    "parts": (
        [
            "run",
            "settings",
            "dense",
            "BM25",
            "hybrid",
            "prior alone",
            "CE alone",
            "trained",
            "Δ vs best untrained",
            "p",
            "CE vs dense (p)",
            "wall",
        ],
        parts,
    ),
    "seeds": (
        [
            "run",
            "seeds",
            "prior alone",
            "CE alone per seed",
            "CE alone, mean",
            "trained per seed",
            "trained, mean",
            "Δ vs prior",
            "p",
            "wall",
        ],
        seeds,
    ),
    "folds": (
        [
            "run",
            "questions ranked",
            "questions trained on",
            "training groups",
            "steps",
            "prior alone ranks first",
            "train loss",
        ],
        folds,
    ),
    "versus-hybrid": (
        ["run", "change", "hybrid", "fine-tuned", "Δ vs hybrid", "p", "wall"],
        versus_hybrid,
    ),
    "versus-dense": (
        [
            "run",
            "change",
            "training queries (steps)",
            "depth",
            "dense",
            "fine-tuned",
            "Δ vs dense",
            "p",
            "wins / losses",
            "fused Δ (p)",
            "wall",
        ],
        versus_dense,
    ),
    "training": (
        [
            "run",
            "training queries",
            "steps",
            "prior alone ranks first",
            "train loss",
            "best val MRR",
            "prior weights (dense / BM25)",
            "sdg / prep / finetune / eval (s)",
        ],
        training,
    ),
    "provenance": (
        [
            "run",
            "date",
            "commit",
            "CPU",
            "cores",
            "torch threads",
            "precision",
            "load (1 min) at end",
            "note",
        ],
        provenance,
    ),
}


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    cells = [header, ["---"] * len(header), *rows]
    return ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]


def table(kind: str, selection: str, runs: list[dict]) -> str:
    """The rows of ``kind`` for the runs ``selection`` names (``*``: every run), as markdown
    lines."""
    by_id = {run["id"]: run for run in runs}
    ids = list(by_id) if selection.strip() == "*" else selection.split()
    missing = [i for i in ids if i not in by_id]
    if kind not in (*ROWS, "depth") or missing:
        raise SystemExit(f"table {kind}: unknown kind, or runs not in the record: {missing}")
    chosen = [by_id[i] for i in ids]
    if kind == "depth":
        return "\n".join(depth_table(chosen))
    header, row = ROWS[kind]
    return "\n".join(markdown_table(header, [row(run) for run in chosen]))


def render(markdown: str, runs: list[dict]) -> str:
    """``markdown`` with every table block regenerated from ``runs``."""
    return BLOCK.sub(
        lambda m: f"<!-- table {m[1]}: {m[2]} -->\n{table(m[1], m[2], runs)}\n<!-- /table -->",
        markdown,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite the tables in the markdown")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the markdown's tables are not the record's"
    )
    parser.add_argument("--markdown", type=Path, default=MARKDOWN, help="default: %(default)s")
    args = parser.parse_args(argv)
    text, runs = args.markdown.read_text(encoding="utf-8"), read_runs()
    fresh = render(text, runs)
    if args.write:
        args.markdown.write_text(fresh, encoding="utf-8")
    elif args.check:
        if fresh != text:
            print(
                f"{args.markdown}: tables differ from the record; "
                "run python bench/results_table.py --write"
            )
            return 1
    else:
        for block in BLOCK.finditer(fresh):
            print(block[0], end="\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
