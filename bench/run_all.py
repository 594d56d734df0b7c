"""Run every benchmark, one after another, and list where each wrote its results.

    python bench/run_all.py [--beir-dir DIR] [--only NAME ...]

Each benchmark prints ratios against a baseline measured in its own run and writes
``bench/results/<name>.json`` with a description of the machine. ``--beir-dir`` names a
BEIR folder (e.g. nfcorpus) for the mining benchmark; without it that one is skipped.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def benchmarks(beir_dir: Path | None) -> dict[str, list[str] | None]:
    return {
        "mining": ["mining.py", str(beir_dir)] if beir_dir else None,
        "train_throughput": ["train_throughput.py"],
        "inference": ["inference.py"],
        "serve": ["serve.py"],
        "pipeline": ["pipeline.py"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--beir-dir", type=Path, help="BEIR folder for the mining benchmark")
    parser.add_argument("--only", nargs="+", help="run only these benchmarks")
    args = parser.parse_args()
    failures, times = [], {}
    for name, argv in benchmarks(args.beir_dir).items():
        if args.only and name not in args.only:
            continue
        if argv is None:
            print(f"== {name}: skipped (needs --beir-dir)")
            continue
        print(f"== {name}: python bench/{' '.join(argv)}", flush=True)
        start = time.perf_counter()
        code = subprocess.run([sys.executable, str(BENCH / argv[0]), *argv[1:]]).returncode
        times[name] = round(time.perf_counter() - start, 1)
        if code:
            failures.append(name)
    print("\nbenchmark wall times (s):", times)
    if failures:
        print("failed:", ", ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
