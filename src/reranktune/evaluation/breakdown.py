"""Mean per-query scores by query metadata (query type, reasoning type, hop count)."""

from __future__ import annotations

from collections import defaultdict


def breakdown(
    per_query: dict[str, dict[str, dict[str, float]]],
    metadata: dict[str, dict],
    keys: list[str],
    measure: str,
) -> dict[str, dict[str, dict[str, float]]]:
    """``{key: {value: {"queries": n, system: mean measure}}}``; keys no query carries are left
    out."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for key in keys:
        groups: dict[str, list[str]] = defaultdict(list)
        for qid, meta in metadata.items():
            value = meta.get(key)
            if value is not None and value != "":
                groups[str(value)].append(qid)
        if not groups:
            continue
        out[key] = {}
        for value in sorted(groups):
            row: dict[str, float] = {"queries": len(groups[value])}
            for system, scores in per_query.items():
                values = [scores[q][measure] for q in groups[value] if q in scores]
                if values:
                    row[system] = round(sum(values) / len(values), 5)
            out[key][value] = row
    return out
