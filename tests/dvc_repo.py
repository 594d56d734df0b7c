"""A temporary git + DVC repo with the real stages, a dozen sample documents and tiny params.

Shared by the remote-storage and sweep tests; every command runs with the test's
Python on PATH and the temp repo's ``src`` on PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import REPO, SAMPLE_CORPUS

GIT_ID = ["-c", "user.email=test@reranktune.invalid", "-c", "user.name=test"]


def run(
    cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 900, check: bool = True
) -> str:
    """Run a command; on failure show the tail of its output."""
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, (
            f"{cmd} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result.stdout + result.stderr


def write_questions(folder: Path, files: list[Path]) -> None:
    """A BEIR folder of "real" questions over ``files``: each asks for its page by name."""
    (folder / "qrels").mkdir(parents=True)
    corpus = [
        {"_id": path.stem, "title": "", "text": path.read_text(encoding="utf-8")} for path in files
    ]
    queries = [
        {"_id": f"q{i}", "text": f"{path.stem.replace('-', ' ')} syntax"}
        for i, path in enumerate(files)
    ]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n"
        + "".join(f"q{i}\t{path.stem}\t1\n" for i, path in enumerate(files))
    )


def make_repo(
    root: Path,
    tiny_model: Path,
    stages: tuple[str, ...] | None = None,
    extra_env: dict[str, str] | None = None,
) -> dict[str, str]:
    """Build the repo under ``root``, commit it, and return the environment to run DVC in."""
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    if stages is not None:
        pipeline = {"stages": {name: pipeline["stages"][name] for name in stages}}
    (root / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    for name in ("stages", "src"):
        shutil.copytree(
            REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
        )
    docs = root / "docs"
    files = [p for p in sorted(SAMPLE_CORPUS.rglob("*")) if p.is_file()][::3][:12]
    for i, path in enumerate(files):
        (docs / f"d{i}").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, docs / f"d{i}" / path.name)
    write_questions(root / "questions" / "docs-qa", files)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["sdg"]["input_path"] = "docs"
    params["eval"]["questions_dir"] = "questions"
    params["prep"]["quality_threshold"] = 5.0
    params["model"]["base_model"] = str(tiny_model)
    params["finetune"].update(
        global_batch_size=32,
        per_device_batch_size=32,
        num_epochs=1,
        rerank_max_length=64,
        mixed_precision="fp32",
        save_steps=1000,
    )
    params["eval"].update(top_k=10, k_values=[1, 5, 10])
    # the other variants, the prior's INT8 and the timing have their own tests (test_export.py)
    params["export"].update(variants=["fp32"], gate_queries=8)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / ".gitignore").write_text("__pycache__/\n.cache/\n")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(root / "src"),
        "RERANKTUNE_CACHE_DIR": str(root / ".cache"),
        **(extra_env or {}),
    }
    run(["git", "init", "-q", "-b", "main"], root, env)
    run(["dvc", "init", "-q"], root, env)
    run(["dvc", "config", "core.analytics", "false"], root, env)
    shutil.copytree(
        REPO / ".dvc" / "plots", root / ".dvc" / "plots"
    )  # the project's plot templates
    run(["git", "add", "-A"], root, env)
    run(["git", *GIT_ID, "commit", "-q", "-m", "pipeline"], root, env)
    return env


def commit(root: Path, env: dict[str, str], message: str) -> None:
    run(["git", "add", "-A"], root, env)
    run(["git", *GIT_ID, "commit", "-q", "-m", message], root, env)
