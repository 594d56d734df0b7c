"""bench/gpu/gpu_check.sh --cpu and bench/gpu/gpu_throughput.py: the GPU check's tiny CPU
configuration, its pieces."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO

ABSENT_ON_THE_GPU_MACHINE = ("dvc", "dvclive", "faiss", "beir", "tensorrt")


def load_bench():
    spec = importlib.util.spec_from_file_location(
        "gpu_throughput", REPO / "bench" / "gpu" / "gpu_throughput.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass resolves annotations through it
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_gpu_check_runs_every_stage_and_the_bench_without_dvc_faiss_beir_or_tensorrt(tmp_path):
    blocked = tmp_path / "blocked"
    for (
        name
    ) in ABSENT_ON_THE_GPU_MACHINE:  # importing any of them fails, as where none is installed
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(
            f"raise ImportError('{name} is not installed here')\n"
        )
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(blocked)}
    result = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu" / "gpu_check.sh"), "--cpu", "--out", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads((tmp_path / "gpu_check_cpu.json").read_text())
    pipeline = figures["pipeline"]
    assert set(pipeline["stage_seconds"]) == {"sdg", "prep", "finetune", "eval", "export"}
    assert {"dense", "bm25", "hybrid", "finetuned"} <= set(pipeline["nDCG@10"]["synthetic"])
    assert pipeline["export_accepted"]["fp32"] and pipeline["export_gate_torch"]["pairs_per_s"] > 0
    assert (
        pipeline["finetune"]["train_pairs_per_s"] > 0
        and pipeline["eval_rerank"]["synthetic"]["pairs_per_s"] > 0
    )
    rows = [r for r in figures["throughput"]["rows"] if "task" in r]
    assert {(r["model"], r["task"], r["path"]) for r in rows} == {
        (m, "train", p) for m in ("minilm", "nemotron-1b") for p in ("project", "bare")
    } | {(m, "infer", p) for m in ("minilm", "nemotron-1b") for p in ("project", "serve", "bare")}
    assert all(r["pairs_per_s"] > 0 and r["mfu"] is not None for r in rows)
    assert all(
        r["max_abs_diff_vs_bare"] < 1e-4
        for r in rows
        if r["path"] == "project" and r["task"] == "infer"
    )
    assert all(c["pass"] is None for c in figures["checks"]), "a CPU run passes or fails nothing"
    assert (tmp_path / "gpu_check_cpu.log").read_text().count("== ") == 5


def test_gpu_check_names_missing_packages_before_work(tmp_path):
    fake_python = tmp_path / "python"
    fake_python.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')  # -S: no site-packages
    fake_python.chmod(0o755)
    result = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu" / "gpu_check.sh"), "--cpu", "--out", str(tmp_path)],
        env={**os.environ, "PYTHON": str(fake_python)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "missing Python packages:" in result.stderr and "torch" in result.stderr
    assert not list(tmp_path.glob("*.json")), "no work started"


def test_the_llama_shape_attends_both_ways_like_nemotron_rerank():
    bench = load_bench()
    model = bench.build_model(bench.shapes(cpu=True)["nemotron-1b"].config, "cpu").eval()
    ids = torch.randint(1, 1000, (1, 12))
    changed = ids.clone()
    changed[0, -1] += 1
    with torch.no_grad():
        first = [model.model(input_ids=x).last_hidden_state[0, 0] for x in (ids, changed)]
    assert not torch.allclose(*first), "the first token sees the last: no causal mask"


def test_flops_and_peaks_follow_the_stated_formula():
    bench = load_bench()
    model = bench.build_model(bench.shapes(cpu=True)["minilm"].config, "cpu")
    n, config = bench.non_embedding_parameters(model), model.config
    attention = 4 * config.num_hidden_layers * 32**2 * config.hidden_size
    assert bench.flops_per_pair(model, 32, train=False) == 2 * n * 32 + attention
    assert bench.flops_per_pair(model, 32, train=True) == 3 * (2 * n * 32 + attention)
    assert n < sum(p.numel() for p in model.parameters())  # the embeddings are out
    assert bench.PEAK_TFLOPS[next(k for k in bench.PEAK_TFLOPS if k in "NVIDIA H100 PCIe")] == 756.0
    assert (
        bench.PEAK_TFLOPS[next(k for k in bench.PEAK_TFLOPS if k in "NVIDIA H100 80GB HBM3")]
        == 989.0
    )
    assert bench.peak("cpu", None)[1].startswith("nominal") and bench.peak("cpu", 50.0) == (
        50.0,
        "--peak-tflops",
    )
