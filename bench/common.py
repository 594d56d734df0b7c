"""Shared bench helpers: the machine a result was measured on, and where results go."""

from __future__ import annotations

import importlib
import json
import os
import platform
import subprocess
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def version(module: str) -> str | None:
    """``module.__version__``, or None where it is not installed."""
    try:
        return importlib.import_module(module).__version__
    except ImportError:
        return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict:
    """The machine, the library versions and the load when a result is written.

    Timings only compare between results with like machines and loads, so every result file
    carries this; call it when the work is done, so the load average covers the run.
    """
    import torch

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch_threads": torch.get_num_threads(),
        "load_average_at_end": list(os.getloadavg()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": version("transformers"),
        "onnxruntime": version("onnxruntime"),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def save(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **result}, indent=2) + "\n")
    print(f"wrote {path}")
    return path


RUNS = RESULTS / "domain_adaptation_runs.json"


def read_runs(path: Path = RUNS) -> list[dict]:
    """The domain-adaptation run record (bench/results_table.py describes its fields), oldest run
    first."""
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else []


def save_run(run: dict, path: Path = RUNS) -> None:
    """Put ``run`` in the record in place of the run with its id, or last: a rerun replaces its
    numbers."""
    runs = read_runs(path)
    at = next((i for i, r in enumerate(runs) if r["id"] == run["id"]), len(runs))
    runs[at : at + 1] = [run]
    path.write_text(json.dumps(runs, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def checkout_commit() -> str | None:
    """The checkout's commit, ``-dirty`` with uncommitted changes: the code a recorded run ran."""
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=RESULTS,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def load_summary(
    latencies: list[float], pairs: int, elapsed: float, statuses: dict[int, int]
) -> dict:
    """One load's figures: throughput, latency percentiles (ms), status counts and server errors."""
    import numpy as np

    ms = np.asarray(latencies) * 1000
    return {
        "requests": len(latencies),
        "seconds": round(elapsed, 2),
        "requests_per_s": round(len(latencies) / elapsed, 2),
        "pairs_per_s": round(pairs / elapsed, 1),
        "latency_ms": {f"p{q}": round(float(np.percentile(ms, q)), 1) for q in (50, 95, 99)},
        "status": {str(k): v for k, v in sorted(statuses.items())},
        "server_errors": sum(v for k, v in statuses.items() if k >= 500),
    }
