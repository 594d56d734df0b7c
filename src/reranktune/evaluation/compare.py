"""Compare two eval runs query by query from their ``eval_per_query.tsv`` files.

    reranktune compare old/eval_per_query.tsv new/eval_per_query.tsv \
        [--system human/finetuned] [--measure NDCG@10]

Prints the paired randomisation test of the new run against the old one on the queries
both contain (e.g. the fine-tuned model before and after a params change).
"""

from __future__ import annotations

import csv
from pathlib import Path

from reranktune.evaluation.significance import compare_systems
from reranktune.io import InputError


def read_per_query(path: str | Path) -> dict[str, dict[str, dict[str, float]]]:
    """``{system: {query_id: {measure: value}}}`` from a per-query TSV written by eval."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t")
            if not reader.fieldnames or reader.fieldnames[:2] != ["query_id", "system"]:
                raise InputError(
                    f"{path}: line 1: expected a header starting with query_id, system"
                )
            for lineno, row in enumerate(reader, start=2):
                try:
                    scores = {
                        k: float(v) for k, v in row.items() if k not in ("query_id", "system")
                    }
                except (TypeError, ValueError) as exc:
                    raise InputError(f"{path}: line {lineno}: {exc}") from exc
                out.setdefault(row["system"], {})[row["query_id"]] = scores
    except FileNotFoundError as exc:
        raise InputError(f"{path}: file not found") from exc
    return out


def compare_files(
    old: str | Path,
    new: str | Path,
    system: str = "finetuned",
    measure: str = "NDCG@10",
    n_resamples: int = 10000,
    seed: int = 42,
) -> dict[str, float]:
    """Mean of ``measure`` in both runs, the difference and its paired p-value."""
    runs = {}
    for name, path in (("old", old), ("new", new)):
        per_query = read_per_query(path)
        # "finetuned" means the first test set's (human questions when eval had them):
        # "human/finetuned"
        match = (
            system
            if system in per_query
            else next((s for s in per_query if s.endswith(f"/{system}")), None)
        )
        if match is None:
            raise InputError(f"{path}: no rows for system {system!r} (found {sorted(per_query)})")
        runs[name] = per_query[match]
        missing = [q for q, s in runs[name].items() if measure not in s]
        if missing:
            raise InputError(f"{path}: no {measure} column (query {missing[0]})")
    return compare_systems(runs, [("new", "old")], measure, n_resamples, seed)["new_vs_old"]
