"""bench/results/domain_adaptation.md against its run record: the tables are generated, the prose
quotes no figure."""

import importlib.util
import json
import re

import pytest
from conftest import REPO

MARKDOWN = REPO / "bench" / "results" / "domain_adaptation.md"


@pytest.fixture(scope="module")
def table():
    spec = importlib.util.spec_from_file_location(
        "results_table", REPO / "bench" / "results_table.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runs(table):
    return table.read_runs()


def test_every_table_in_the_markdown_is_the_records(table, runs):
    text = MARKDOWN.read_text(encoding="utf-8")
    assert len(table.BLOCK.findall(text)) >= 10
    assert table.render(text, runs) == text, (
        "stale tables: run python bench/results_table.py --write"
    )


def test_the_prose_quotes_no_figures_of_its_own(table):
    """Outside the generated tables, code and comments, no number: every figure comes from the
    record."""
    prose = table.BLOCK.sub("", MARKDOWN.read_text(encoding="utf-8"))
    for pattern in (r"```.*?```", r"`[^`\n]*`", r"<!--.*?-->"):
        prose = re.sub(pattern, "", prose, flags=re.S)
    numbers = [m.group() for m in re.finditer(r"(?<![\w@])\d[\d.,]*", prose)]
    assert not numbers, f"hand-typed numbers in {MARKDOWN.name}: {numbers}"


def test_the_run_ids_say_what_each_run_tried(runs):
    ids = [run["id"] for run in runs]
    assert len(set(ids)) == len(ids)
    for run in runs:
        dataset, _, name = run["id"].partition("/")
        assert dataset == run["dataset"] == run["result"]["dataset"] and len(name) > 3, run["id"]
        assert run["commit"] and run["date"] and isinstance(run["settings"], dict)
        if "rerank_depth" in run:
            assert run["rerank_depth"]["result"]["dataset"] == run["dataset"]


def test_a_row_holds_its_runs_figures(table, runs):
    run = next(r for r in runs if r["id"] == "cranfield/prior-10-10")
    [row] = table.table("parts", run["id"], runs).splitlines()[2:]
    cells = [c.strip() for c in row.strip("|").split("|")]
    result = run["result"]
    assert cells[:2] == [run["id"], table.settings(run)]
    assert cells[2:8] == [
        f"{result['systems'][s]['NDCG@10']:.4f}"
        for s in ("dense", "bm25", "hybrid", "prior", "crossencoder", "finetuned")
    ]
    assert (
        cells[8]
        == f"{result['verdict']['gain'] * 100:+.1f} vs {result['verdict']['best_baseline']}"
    )


def test_check_fails_on_a_stale_table_and_write_mends_it(table, runs, tmp_path):
    copy = tmp_path / "results.md"
    text = MARKDOWN.read_text(encoding="utf-8")
    figure = f"{runs[-1]['result']['systems']['finetuned']['NDCG@10']:.4f}"
    copy.write_text(text.replace(figure, "0.9999"), encoding="utf-8")
    assert table.main(["--check", "--markdown", str(copy)]) == 1
    table.main(["--write", "--markdown", str(copy)])
    assert copy.read_text(encoding="utf-8") == text


def test_a_rerun_replaces_its_run_and_a_new_run_goes_last(table, tmp_path):
    from common import save_run  # the results_table fixture put bench/ on the path

    record = tmp_path / "runs.json"
    for run in ({"id": "a/x", "n": 1}, {"id": "a/y", "n": 2}, {"id": "a/x", "n": 3}):
        save_run(run, record)
    assert json.loads(record.read_text()) == [{"id": "a/x", "n": 3}, {"id": "a/y", "n": 2}]
