"""Split queries by document, so no document gives queries to two splits."""

from __future__ import annotations

import random

from reranktune.prep.records import Query


def split_documents(
    source_ids: list[str], seed: int, train_ratio: float, val_ratio: float
) -> dict[str, str]:
    """Map every document to 'train', 'val' or 'test': sort, shuffle with ``seed``, cut."""
    docs = sorted(set(source_ids))
    random.Random(seed).shuffle(docs)
    n_train = int(round(len(docs) * train_ratio))
    n_val = int(round(len(docs) * val_ratio))
    if len(docs) >= 2:
        n_train = min(max(n_train, 1), len(docs) - 1)  # keep at least one test document
    n_val = min(n_val, len(docs) - n_train - 1) if len(docs) >= 3 else 0
    assignment = {}
    for i, doc in enumerate(docs):
        assignment[doc] = "train" if i < n_train else "val" if i < n_train + n_val else "test"
    return assignment


def split_queries(queries: list[Query], assignment: dict[str, str]) -> dict[str, list[Query]]:
    splits: dict[str, list[Query]] = {"train": [], "val": [], "test": []}
    for query in queries:
        splits[assignment[query.source_id]].append(query)
    return splits
