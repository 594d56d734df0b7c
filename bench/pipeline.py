"""Wall time of the whole pipeline in a fresh clone, and of a no-op ``dvc repro``.

The baseline measured in the same run is DVC's own start-up (``dvc version``), so the
no-op ratio shows what the pipeline adds on top of starting DVC.

    python bench/pipeline.py [--noop-runs 3] [--keep DIR] [--save-as pipeline]

``--keep DIR`` leaves the clone, with its trained and exported models, in DIR, so
``run_all.py`` can benchmark inference and serving on them without a second ``dvc repro``.
``--save-as NAME`` writes ``bench/results/NAME.json``: one file per kind of CPU, since training
runs in bf16 where the CPU has AMX and in fp32 elsewhere.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], cwd: Path, env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(
        cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - start


def main() -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--noop-runs", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="clone into this (new) folder and keep it")
    parser.add_argument("--save-as", default="pipeline", help="results file name, no extension")
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HF_HUB_OFFLINE": "1",
    }
    dvc = shutil.which("dvc", path=env["PATH"])
    with tempfile.TemporaryDirectory() as tmp:
        clone = args.keep or Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        env["RERANKTUNE_CACHE_DIR"] = str(clone / ".cache")  # a cold embedding cache
        full = timed([dvc, "repro"], clone, env)
        noop = [timed([dvc, "repro"], clone, env) for _ in range(args.noop_runs)]
        startup = [timed([dvc, "version"], clone, env) for _ in range(args.noop_runs)]
    result = {
        "full_repro_s": round(full, 1),
        "noop_repro_s": [round(x, 2) for x in noop],
        "dvc_startup_s": [round(x, 2) for x in startup],
        "noop_vs_dvc_startup": round(statistics.median(noop) / statistics.median(startup), 2),
    }
    print(result)
    save(args.save_as, result)
    return result


if __name__ == "__main__":
    main()
