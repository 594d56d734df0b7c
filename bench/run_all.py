"""Run every benchmark, one after another, and list where each wrote its results.

    python bench/run_all.py [--beir-dir DIR] [--only NAME ...]

Each benchmark prints ratios against a baseline measured in its own run and writes
``bench/results/<name>.json`` with a description of the machine. The pipeline benchmark
runs first, in a fresh clone, and the inference, prior-cost and serving benchmarks then use
the models it trained and exported, so nothing needs to be built beforehand. ``--beir-dir``
names a BEIR folder (e.g. nfcorpus) for the mining benchmark; without it the mining benchmark
runs on the clone's own held-out test set (small, so its ratio says less). The GPU harness
runs apart, on a GPU machine (bench/gpu/README.md).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from common import save  # noqa: E402


def benchmarks(beir_dir: Path | None, clone: Path) -> dict[str, list[str]]:
    test_set = clone / "data" / "prep" / "eval_beir"
    return {
        "pipeline": ["pipeline.py", "--keep", str(clone)],
        "mining": ["mining.py", str(beir_dir or test_set)],
        "train_throughput": ["train_throughput.py"],
        "inference": [
            "inference.py",
            "--model",
            str(clone / "models" / "reranker"),
            "--beir",
            str(test_set),
            "--params",
            str(clone / "params.yaml"),
        ],
        "prior_cost": ["prior_cost.py", "--model-dir", str(clone / "models" / "onnx")],
        "serve": ["serve.py", "--model-dir", str(clone / "models" / "onnx")],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--beir-dir", type=Path, help="BEIR folder for the mining benchmark")
    parser.add_argument("--only", nargs="+", help="run only these benchmarks")
    args = parser.parse_args()
    failures, times = [], {}
    start_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="reranktune_bench_") as tmp:
        clone = Path(tmp) / "clone"
        selected = {
            n: a
            for n, a in benchmarks(args.beir_dir, clone).items()
            if not args.only or n in args.only
        }
        needs_clone = {"inference", "prior_cost", "serve"}
        if not args.beir_dir:
            needs_clone.add("mining")
        if needs_clone & set(selected) and "pipeline" not in selected:
            selected = {"pipeline": benchmarks(args.beir_dir, clone)["pipeline"], **selected}
        for name, argv in selected.items():
            print(f"== {name}: python bench/{' '.join(argv)}", flush=True)
            start = time.perf_counter()
            code = subprocess.run([sys.executable, str(BENCH / argv[0]), *argv[1:]]).returncode
            times[name] = round(time.perf_counter() - start, 1)
            if code:
                failures.append(name)
    times["total"] = round(time.perf_counter() - start_all, 1)
    print("\nbenchmark wall times (s):", times)
    if not args.only:
        save("run_all", {"wall_s": times, "failed": failures, "beir_dir": str(args.beir_dir or "")})
    if failures:
        print("failed:", ", ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
