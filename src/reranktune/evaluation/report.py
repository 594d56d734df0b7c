"""A short markdown summary of an eval run, small enough for a pull-request comment."""
from __future__ import annotations

from reranktune.evaluation.endpoint import format_table


def _metric_table(metrics: dict, systems: list[str], k_values: list[int]) -> list[str]:
    ks = sorted(set(k_values))
    mrr = next(iter(metrics[systems[0]]["MRR"]))
    columns = [("NDCG", f"NDCG@{k}") for k in ks] + [("MAP", f"MAP@{ks[-1]}"), ("Recall", f"Recall@{ks[-1]}"),
                                                      ("Precision", "P@1"), ("MRR", mrr)]
    columns = [(family, name) for family, name in columns if name in metrics[systems[0]][family]]
    lines = ["| system | " + " | ".join(name for _, name in columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for system in systems:
        cells = " | ".join(f"{metrics[system][family][name]:.4f}" for family, name in columns)
        lines.append(f"| {system} | {cells} |")
    return lines


def markdown_report(metrics: dict, systems: list[str], k_values: list[int], endpoint_rows: list[dict]) -> str:
    data = metrics.get("dataset", {})
    lines = ["## Reranker evaluation", ""]
    if data:
        lines += [f"{data['queries']} queries, {data['passages']} passages; "
                  f"{data['first_stage']} first stage, top {data['top_k']} reranked.", ""]
    lines += _metric_table(metrics, systems, k_values)
    significance = metrics.get("significance")
    if significance:
        lines += ["", f"**Significance** ({significance['metric']}, {significance['test']}):", ""]
        for name, entry in significance.items():
            if isinstance(entry, dict):
                verdict = "significant" if entry["p_value"] < 0.05 else "not significant"
                lines.append(f"- {name.replace('_vs_', ' vs ')}: delta {entry['delta']:+.4f}, "
                             f"p = {entry['p_value']:.4f} ({verdict} at 0.05, {entry['queries']} queries)")
    by_meta = metrics.get("breakdown")
    if by_meta:
        shown = [s for s in systems if not s.startswith("retrieval_")]
        lines += ["", f"**Breakdown** ({by_meta['metric']}):", "",
                  "| group | queries | " + " | ".join(shown) + " |", "|---" * (len(shown) + 2) + "|"]
        for key, groups in by_meta.items():
            if isinstance(groups, dict):
                for value, row in groups.items():
                    cells = " | ".join(f"{row[s]:.4f}" if s in row else "-" for s in shown)
                    lines.append(f"| {key}={value} | {row['queries']} | {cells} |")
    endpoint = metrics.get("endpoint")
    if endpoint:
        status = "PASSED" if endpoint["passed"] else "FAILED"
        lines += ["", f"**Endpoint check** {status}: {endpoint['url']} (model `{endpoint['model']}`), "
                  f"largest difference {endpoint['max_abs_diff']:.4f}.", ""]
        if not endpoint["passed"]:
            lines.append(format_table([r for r in endpoint_rows if not r["ok"]]))
    for note in metrics.get("notes", []):
        lines += ["", f"Note: {note}"]
    return "\n".join(lines) + "\n"
