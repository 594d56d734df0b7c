"""The files dvc.yaml declares as `metrics` hold the numbers a review decides on: at most 50 in all.

Everything else (every k, breakdowns, gate details) goes to the *_details.json outputs, so
`dvc metrics show` and the `dvc metrics diff --md` a pull request gets stay one short table.
"""

import json

import pytest
import yaml
from conftest import REPO

BUDGET = 50


def metric_files() -> list[str]:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return [
        next(iter(entry)) if isinstance(entry, dict) else entry
        for stage in stages.values()
        for entry in stage.get("metrics", [])
    ]


def values(node) -> int:
    """Scalars DVC shows as metric columns (numbers and booleans; null counts, it is a column
    too)."""
    if isinstance(node, dict):
        return sum(values(v) for v in node.values())
    if isinstance(node, list):
        return sum(values(v) for v in node)
    return 1


def test_every_declared_metrics_file_is_committed_and_small():
    files = metric_files()
    assert files, "dvc.yaml declares no metrics"
    counts = {}
    for name in files:
        path = REPO / name
        assert path.exists(), (
            f"{name}: declared as a DVC metric but not committed (run `make repro`)"
        )
        counts[name] = values(json.loads(path.read_text()))
    assert sum(counts.values()) <= BUDGET, (
        f"{sum(counts.values())} metric values > {BUDGET}: {counts}"
    )


def test_eval_metrics_hold_three_numbers_per_system_and_the_verdict_per_test_set():
    review = json.loads((REPO / "metrics" / "eval.json").read_text())
    assert review and "synthetic" not in review, list(
        review
    )  # real questions: the generated split stands in only without them
    for section in review.values():
        systems = [s for s in section if isinstance(section[s], dict)]
        assert {"dense", "bm25", "hybrid", "finetuned"} <= set(systems)
        assert all(
            set(section[s])
            == (
                {"NDCG@10"}
                if s in ("prior", "crossencoder")
                else {"NDCG@10", "Recall@100", "MRR@10"}
            )
            for s in systems
        )
        assert set(section) - set(systems) == {"gain_over_best_baseline", "p_value"}


@pytest.mark.parametrize("name", ["sdg", "prep", "finetune", "export"])
def test_details_are_kept_beside_the_review_numbers(name):
    details = REPO / "metrics" / f"{name}_details.json"
    if name == "finetune":  # DVCLive's own summary holds its details
        details = REPO / "metrics" / "finetune" / "metrics.json"
    assert details.exists() and values(json.loads(details.read_text())) > values(
        json.loads((REPO / "metrics" / f"{name}.json").read_text())
    )
