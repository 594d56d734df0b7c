"""Queued DVC experiment sweeps on the sample corpus, and the GPU preset as a queued experiment."""

from __future__ import annotations

import json
import shutil
import time

import pytest
from conftest import REPO
from dvc_repo import make_repo, run

pytestmark = pytest.mark.slow

LEARNING_RATES = (1e-4, 1e-3)


def _experiments(show: list[dict]) -> dict[str, dict]:
    """``dvc exp show --json`` → {experiment name: its data}, for the workspace's baseline."""
    found = {}
    for baseline in show:
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs") or []:
                found[rev["name"]] = rev
    return found


def _wait_for_queue(root, env, timeout: float = 900) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = run(["dvc", "queue", "status"], root, env)
        if "Queued" not in status and "Running" not in status:
            return status
        assert time.monotonic() < deadline, f"queue still busy after {timeout} s:\n{status}"
        time.sleep(3)


@pytest.fixture(scope="module")
def swept_repo(tmp_path_factory, tiny_bert_dir):
    root = tmp_path_factory.mktemp("sweep")
    env = make_repo(root, tiny_bert_dir)
    rates = ",".join(str(lr) for lr in LEARNING_RATES)
    out = run(["dvc", "exp", "run", "--queue", "-S", f"finetune.learning_rate={rates}"], root, env)
    assert out.count("Queued experiment") == 2, out
    try:
        run(["dvc", "queue", "start", "-j", "1"], root, env)
        status = _wait_for_queue(root, env)
    finally:
        run(["dvc", "queue", "stop"], root, env, check=False)
    if status.count("Success") != 2:
        names = [line.split()[1] for line in status.splitlines()[1:] if len(line.split()) > 3]
        logs = "".join(
            run(["dvc", "queue", "logs", name], root, env, check=False)[-3000:] for name in names
        )
        pytest.fail(f"sweep did not succeed:\n{status}\n{logs}")
    return root, env


def test_queued_sweep_runs_both_experiments_with_metrics(swept_repo):
    root, env = swept_repo
    exps = _experiments(json.loads(run(["dvc", "exp", "show", "--json"], root, env)))
    assert len(exps) == 2, exps.keys()
    rates, ndcgs = set(), []
    for exp in exps.values():
        data = exp["data"]
        rates.add(data["params"]["params.yaml"]["data"]["finetune"]["learning_rate"])
        metrics = data["metrics"]["metrics/eval.json"]["data"]
        ndcg = metrics["docs-qa"]["finetuned"]["NDCG@10"]
        assert 0.0 <= ndcg <= 1.0
        ndcgs.append(ndcg)
        assert "hybrid" in metrics["docs-qa"]
    assert rates == set(LEARNING_RATES)
    table = run(["dvc", "exp", "show", "--md", "--no-pager"], root, env)
    for name in exps:
        assert name in table
    assert "docs-qa.finetuned.NDCG@10" in table


def test_pr_report_commands_compare_two_experiments(swept_repo, tmp_path):
    """The commands the CML workflow posts on a pull request work on experiment revisions."""
    root, env = swept_repo
    first, second = sorted(
        _experiments(json.loads(run(["dvc", "exp", "show", "--json"], root, env)))
    )
    diff = run(["dvc", "metrics", "diff", "--md", "--all", first, second], root, env)
    assert "| metrics/eval.json" in diff and "docs-qa.finetuned.NDCG@10" in diff
    params = run(["dvc", "params", "diff", "--md", first, second], root, env)
    assert "finetune.learning_rate" in params
    out = tmp_path / "plots"
    run(["dvc", "plots", "diff", first, second, "-o", str(out)], root, env)
    html = (out / "index.html").read_text()
    assert "ndcg_at_k" in html and first in html
    vega = json.loads(
        run(
            ["dvc", "plots", "diff", first, second, "--targets", "ndcg_at_k", "--show-vega"],
            root,
            env,
        )
    )
    assert vega["$schema"].startswith("https://vega.github.io/schema/vega-lite")
    assert {row["rev"] for row in vega["data"]["values"]} == {first, second}


def test_gpu_preset_queues_as_one_experiment_with_the_reference_params(swept_repo):
    root, env = swept_repo
    (root / "params").mkdir(exist_ok=True)
    shutil.copy(REPO / "params" / "gpu-reference.yaml", root / "params" / "gpu-reference.yaml")
    run(
        ["reranktune", "preset", "params/gpu-reference.yaml", "--queue", "-n", "gpu-reference"],
        root,
        env,
    )
    try:
        queued = _experiments(json.loads(run(["dvc", "exp", "show", "--json"], root, env)))[
            "gpu-reference"
        ]
        assert "gpu-reference" in run(["dvc", "queue", "status"], root, env)
        queued = queued["data"]["params"]["params.yaml"]["data"]
    finally:
        run(["dvc", "queue", "remove", "gpu-reference"], root, env, check=False)
    assert queued["model"]["base_model"] == "nvidia/llama-nemotron-rerank-1b-v2"
    assert queued["retrieval"]["embedding"]["model"] == "nvidia/llama-nemotron-embed-1b-v2"
    assert queued["model"]["trust_remote_code"] is True
    assert queued["retrieval"]["embedding"]["trust_remote_code"] is True
    assert queued["finetune"]["global_batch_size"] == 128
    assert queued["finetune"]["learning_rate"] == 3e-6
    assert queued["finetune"]["mixed_precision"] == "auto"
    assert queued["sdg"]["input_path"] == "docs"  # keys the preset leaves alone stay as they were
