"""bench/gpu_check.sh --cpu: the GPU verification script's tiny CPU configuration."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def test_gpu_check_runs_every_stage_and_reports_figures(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), "--cpu", "--out", str(tmp_path)],
                            env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads((tmp_path / "gpu_check_cpu.json").read_text())
    assert set(figures["stage_seconds"]) == {"sdg", "prep", "finetune", "eval", "export"}
    assert {"dense", "bm25", "hybrid", "finetuned"} <= set(figures["pipeline"]["nDCG@10"]["synthetic"])
    assert figures["pipeline"]["export"]["fp32"]["accepted"]
    assert figures["throughput_llama"]["train_pairs_per_s"] > 0


def test_gpu_check_names_missing_packages_before_work(tmp_path):
    fake_python = tmp_path / "python"
    fake_python.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")   # -S: no site-packages
    fake_python.chmod(0o755)
    result = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), "--cpu", "--out", str(tmp_path)],
                            env={**os.environ, "PYTHON": str(fake_python)}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    assert "missing Python packages:" in result.stderr and "torch" in result.stderr
    assert not list(tmp_path.glob("*.json")), "no work started"
