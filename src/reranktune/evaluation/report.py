"""A short markdown summary of an eval run, small enough for a pull-request comment."""

from __future__ import annotations

from reranktune.evaluation.endpoint import format_table
from reranktune.retrieval.first_stage import FIRST_STAGES

LABELS = {
    "prior": "prior alone (no cross-encoder)",
    "crossencoder": "cross-encoder alone (no prior)",
}

# every system eval reports, in table order. "prior": the reranker's prior alone over the same
# candidates (first-stage evidence, no training); "crossencoder": its logit alone (what training
# taught); "finetuned": their sum, the shipped score
PARTS = ("prior", "crossencoder")
SYSTEMS = (*FIRST_STAGES, "prior", "base", "crossencoder", "finetuned")


def _systems(metrics: dict) -> list[str]:
    return [s for s in SYSTEMS if s in metrics]


def _metric_table(metrics: dict, k_values: list[int]) -> list[str]:
    systems = _systems(metrics)
    ks = sorted(set(k_values))
    mrr = next(iter(metrics[systems[0]]["MRR"]))
    columns = [("NDCG", f"NDCG@{k}") for k in ks] + [
        ("MAP", f"MAP@{ks[-1]}"),
        ("Recall", f"Recall@{ks[-1]}"),
        ("Precision", "P@1"),
        ("MRR", mrr),
    ]
    columns = [(family, name) for family, name in columns if name in metrics[systems[0]][family]]
    best = metrics["verdict"]["best_baseline"]
    reranked = metrics["dataset"]["first_stage"]
    lines = [
        "| system | " + " | ".join(name for _, name in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for system in systems:
        label = (
            LABELS.get(system, system)
            + (" (best untrained)" if system == best else "")
            + (
                f" (reranks {reranked})"
                if system in ("prior", "base", "crossencoder", "finetuned")
                else ""
            )
        )
        cells = " | ".join(f"{metrics[system][family][name]:.4f}" for family, name in columns)
        lines.append(f"| {label} | {cells} |")
    return lines


def _section(name: str, metrics: dict, k_values: list[int]) -> list[str]:
    data = metrics["dataset"]
    verdict = metrics["verdict"]
    mark = "**Verdict:**" if verdict["beats_best_baseline"] else "**Verdict (warning):**"
    title = (
        "Synthetic questions (prep's test split)"
        if name == "synthetic"
        else f"Real questions: {name}"
    )
    lines = [
        f"### {title}",
        "",
        f"{data['queries']} queries, {data['passages']} passages (`{data.get('path', '')}`); "
        f"top {data['top_k']} of the {data['first_stage']} first stage reranked.",
        "",
        f"{mark} {verdict['line']}.",
        "",
    ]
    lines += _metric_table(metrics, k_values)
    significance = metrics["significance"]
    lines += ["", f"Paired tests ({significance['metric']}, {significance['test']}):", ""]
    for test, entry in significance.items():
        if isinstance(entry, dict):
            outcome = "significant" if entry["p_value"] < 0.05 else "not significant"
            lines.append(
                f"- {test.replace('_vs_', ' vs ')}: delta {entry['delta']:+.4f}, "
                f"p = {entry['p_value']:.4f} ({outcome} at 0.05, {entry['queries']} queries)"
            )
    by_meta = metrics.get("breakdown")
    if by_meta:
        shown = _systems(metrics)
        lines += [
            "",
            f"Breakdown ({by_meta['metric']}):",
            "",
            "| group | queries | " + " | ".join(shown) + " |",
            "|---" * (len(shown) + 2) + "|",
        ]
        for key, groups in by_meta.items():
            if isinstance(groups, dict):
                for value, row in groups.items():
                    cells = " | ".join(f"{row[s]:.4f}" if s in row else "-" for s in shown)
                    lines.append(f"| {key}={value} | {row['queries']} | {cells} |")
    endpoint = metrics.get("endpoint")
    if endpoint:
        status = "PASSED" if endpoint["passed"] else "FAILED"
        lines += [
            "",
            f"Endpoint check {status}: {endpoint['url']} (model `{endpoint['model']}`), "
            f"largest difference {endpoint['max_abs_diff']:.4f}.",
        ]
    for note in metrics.get("notes", []):
        lines += ["", f"Note: {note}"]
    return lines + [""]


def markdown_report(
    details: dict[str, dict], k_values: list[int], endpoint_rows: list[dict]
) -> str:
    """One section per test set, each opening with its verdict against the best untrained system."""
    lines = ["## Reranker evaluation", ""]
    for name, metrics in details.items():
        lines += _section(name, metrics, k_values)
    failed = [r for r in endpoint_rows if not r["ok"]]
    if failed:
        lines += [format_table(failed), ""]
    return "\n".join(lines)
