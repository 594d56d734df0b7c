"""The stage scripts under DVC, in a temporary repo, on twelve documents."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.slow


def _run(cmd, cwd, env):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory, tiny_bert_dir):
    root = tmp_path_factory.mktemp("e2e")
    for name in ("dvc.yaml", "stages", "src"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / name)
    docs = root / "docs"
    for i, path in enumerate(sorted((REPO / "data" / "sample_corpus").rglob("*"))[::14][:12]):
        if path.is_file():
            (docs / f"d{i}").mkdir(parents=True, exist_ok=True)
            shutil.copy(path, docs / f"d{i}" / path.name)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["sdg"]["input_dir"] = "docs"
    params["prep"]["quality_threshold"] = 5.0
    params["finetune"].update(base_model=str(tiny_bert_dir), global_batch_size=8, per_device_batch_size=8,
                              num_epochs=1, rerank_max_length=64, mixed_precision="fp32")
    params["eval"].update(top_k=10, k_values=[1, 5, 10])
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(root / "src"), "RERANKTUNE_CACHE_DIR": str(root / ".cache")}
    _run(["git", "init", "-q"], root, env)
    _run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "init"], root, env)
    _run(["dvc", "init", "-q"], root, env)
    _run(["dvc", "config", "core.analytics", "false"], root, env)
    return root, env


def test_dvc_repro_runs_every_stage_and_reruns_only_what_changed(dvc_repo):
    root, env = dvc_repo
    _run(["dvc", "repro"], root, env)
    metrics = json.loads((root / "metrics" / "eval.json").read_text())
    assert {"retrieval", "finetuned"} <= set(metrics)
    assert set(metrics["finetuned"]["NDCG"]) == {"NDCG@1", "NDCG@5", "NDCG@10"}
    assert (root / "models" / "onnx" / "model.onnx").exists()
    assert json.loads((root / "metrics" / "export.json").read_text())["fp32"]["accepted"]
    assert (root / "dvc.lock").exists()

    out = _run(["dvc", "repro"], root, env)
    assert "Data and pipelines are up to date" in out

    params = yaml.safe_load((root / "params.yaml").read_text())
    params["eval"]["top_k"] = 8
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = _run(["dvc", "repro"], root, env)
    assert "Running stage 'eval'" in out
    for stage in ("sdg", "prep", "finetune", "export"):
        assert f"Running stage '{stage}'" not in out

    table = _run(["dvc", "metrics", "show", "--md"], root, env)
    assert "finetuned.NDCG.NDCG@10" in table


def test_unknown_param_stops_the_stage_with_the_key_named(dvc_repo):
    root, env = dvc_repo
    params = (root / "params.yaml").read_text()
    bad = params.replace("eval:\n", "eval:\n  topk: 3\n", 1)
    (root / "params.yaml").write_text(bad)
    try:
        result = subprocess.run([sys.executable, "stages/eval.py"], cwd=root, env=env,
                                capture_output=True, text=True)
    finally:
        (root / "params.yaml").write_text(params)
    assert result.returncode == 2
    assert "eval.topk: unknown key" in result.stderr
