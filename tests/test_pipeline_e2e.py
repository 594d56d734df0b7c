"""The stage scripts under DVC, in a temporary repo, on twelve documents."""

import json
import subprocess
import sys

import pytest
import yaml
from dvc_repo import make_repo, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory, tiny_bert_dir):
    root = tmp_path_factory.mktemp("e2e")
    return root, make_repo(root, tiny_bert_dir)


def test_dvc_repro_runs_every_stage_and_reruns_only_what_changed(dvc_repo):
    root, env = dvc_repo
    run(["dvc", "repro"], root, env)
    metrics = json.loads((root / "metrics" / "eval.json").read_text())
    assert list(metrics) == [
        "docs-qa"
    ]  # the real questions; prep's generated split only stands in without them
    for section in metrics.values():
        assert {
            "dense",
            "bm25",
            "hybrid",
            "finetuned",
            "gain_over_best_baseline",
            "p_value",
        } <= set(section)
        assert set(section["finetuned"]) == {"NDCG@10", "Recall@10", "MRR@10"}
    details = json.loads((root / "metrics" / "eval_details.json").read_text())
    assert set(details["docs-qa"]["finetuned"]["NDCG"]) == {"NDCG@1", "NDCG@5", "NDCG@10"}
    assert "beat the best untrained system" in details["docs-qa"]["verdict"]["line"]
    assert (root / "models" / "onnx" / "model.onnx").exists()
    assert json.loads((root / "metrics" / "export.json").read_text())["fp32"]["accepted"]
    assert (root / "dvc.lock").exists()

    out = run(["dvc", "repro"], root, env)
    assert "Data and pipelines are up to date" in out

    # a change to dense retrieval is a change to every stage that imports it, and to no other
    retrieval = root / "src" / "reranktune" / "retrieval" / "index.py"
    source = retrieval.read_text()
    retrieval.write_text(source + "\n# edited\n")
    try:
        changed = set(
            json.loads(run(["dvc", "status", "--json"], root, env).strip().splitlines()[-1])
        )
    finally:
        retrieval.write_text(source)
    assert changed == {"sdg", "prep", "eval", "export"}, changed  # sdg: paraphrase neighbours

    params = yaml.safe_load((root / "params.yaml").read_text())
    params["eval"]["top_k"] = 8
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro"], root, env)
    assert "Running stage 'eval'" in out
    for stage in ("sdg", "prep", "finetune", "export"):
        assert f"Running stage '{stage}'" not in out

    table = run(["dvc", "metrics", "show", "--md"], root, env)
    assert "docs-qa.finetuned.NDCG@10" in table


def test_unknown_param_stops_the_stage_with_the_key_named(dvc_repo):
    root, env = dvc_repo
    params = (root / "params.yaml").read_text()
    bad = params.replace("eval:\n", "eval:\n  topk: 3\n", 1)
    (root / "params.yaml").write_text(bad)
    try:
        result = subprocess.run(
            [sys.executable, "stages/eval.py"], cwd=root, env=env, capture_output=True, text=True
        )
    finally:
        (root / "params.yaml").write_text(params)
    assert result.returncode == 2
    assert "eval.topk: unknown key" in result.stderr
