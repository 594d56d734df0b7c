"""The variants export offers serve: ONNX graphs derived from the fp32 export (fused graph,
INT8 weights, fp16 weights), and the PyTorch weights run with bf16 autocast.

Each ONNX builder reads one ``.onnx`` file and writes another; bf16 is the fine-tuned
weights themselves, copied (``copy_weights``), because on CPUs with AMX or AVX512-BF16
PyTorch's bf16 matrix units outrun every ONNX Runtime CPU kernel. The accuracy gate in
``gate.py`` decides afterwards which of them serve may use, and export records the
fastest accepted one, timed on the machine it runs on, as the folder's default.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import onnx

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Variant:
    file: str
    device: str  # where it is meant to run: "cpu" or "cuda"
    precision: str
    lossless: bool  # True: must match PyTorch to parity_atol; False: judged by rank correlation
    runtime: str = "onnx"  # what runs ``file``: onnx (ONNX Runtime), torch, tensorrt


VARIANTS: dict[str, Variant] = {
    "fp32": Variant("model.onnx", "cpu", "fp32", True),
    "optimized": Variant("model.opt.onnx", "cpu", "fp32", True),
    "int8": Variant(
        "model.int8.onnx", "cpu", "int8 weights (dynamic, per channel; head fp32)", False
    ),
    "fp16": Variant("model.fp16.onnx", "cuda", "fp16 (fp32 inputs/outputs)", False),
    "bf16": Variant("model.safetensors", "cpu", "bf16 autocast (PyTorch)", False, "torch"),
}
WEIGHT_FILES = ("model*.safetensors", "model.safetensors.index.json")  # one file or shards


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime's tools log expected advice ("run pre-processing", type inference) on the root
    logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def optimize(src: Path, dst: Path, config) -> dict[str, int]:
    """onnxruntime's transformer optimizer; returns the fused operators it made.

    BERT graphs exported with eager attention get fused Attention, EmbedLayerNormalization
    and SkipLayerNormalization; Llama graphs get (Skip)SimplifiedLayerNormalization.
    """
    from onnxruntime.transformers.optimizer import optimize_model

    with _quiet_root_logger():
        model = optimize_model(
            str(src),
            model_type="bert",
            num_heads=getattr(config, "num_attention_heads", 0) or 0,
            hidden_size=getattr(config, "hidden_size", 0) or 0,
        )
    model.save_model_to_file(str(dst))
    return {op: n for op, n in model.get_fused_operator_statistics().items() if n}


HEAD_MODULES = {"classifier", "pooler", "score"}  # BERT's and Llama's names, as exported


def head_node_names(model: onnx.ModelProto) -> list[str]:
    """The pooler and classifier: small matrices whose rounding lands directly on the logit."""
    names = [
        node.name for node in model.graph.node if HEAD_MODULES & set(node.name.lower().split("/"))
    ]
    # the quantiser first rewrites each Gemm as a MatMul named after it, and excludes by that name
    gemms = [n.name for n in model.graph.node if n.name in names and n.op_type == "Gemm"]
    return names + [f"{name}_MatMul" for name in gemms]


def int8_saturates() -> bool:
    """Whether this CPU lacks VNNI: there ONNX Runtime multiplies INT8 with VPMADDUBSW, whose
    16-bit sums of 8-bit products can saturate (onnxruntime's quantization docs), so weights
    keep 7 bits (``reduce_range``). Unknown counts as lacking it."""
    import torch

    return not getattr(torch.cpu, "_is_vnni_supported", lambda: False)()


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic INT8: weights quantised offline, activations per batch; no calibration data needed.

    Weights get one scale per output channel (a single scale per matrix lets one large row
    blur all the others), and the head stays fp32: together they keep the ranking within
    the gate where per-tensor quantisation of every matrix did not. On a CPU without VNNI the
    weights keep 7 bits (``int8_saturates``). The prior's encoder (``export.run``) is quantised
    the same way.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    head = head_node_names(onnx.load(str(src), load_external_data=False))
    with _quiet_root_logger():
        # DefaultTensorType: the fused graph's contrib ops carry no type info for some outputs
        quantize_dynamic(
            src,
            dst,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=int8_saturates(),
            nodes_to_exclude=head,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )


def norm_node_names(model: onnx.ModelProto) -> list[str]:
    """Normalisation nodes (LayerNorm, RMSNorm pieces): kept in fp32, where fp16 overflows first."""
    return [
        node.name
        for node in model.graph.node
        if "norm" in node.name.lower() or "Normalization" in node.op_type
    ]


def to_fp16(src: Path, dst: Path, keep_norms_fp32: bool = False) -> None:
    """fp16 weights and activations; inputs stay int64 and ``logits`` stays fp32."""
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = onnx.load(str(src))
    blocked = norm_node_names(model) if keep_norms_fp32 else None
    wrapped = OnnxModel(model)
    with _quiet_root_logger():
        wrapped.convert_float_to_float16(keep_io_types=True, node_block_list=blocked)
    wrapped.save_model_to_file(str(dst))


def copy_weights(model_dir: Path, folder: Path) -> dict:
    """The bf16 variant: the fine-tuned safetensors weights (one file or shards) beside the graphs;
    returns how it was built."""
    files = sorted({f for pattern in WEIGHT_FILES for f in Path(model_dir).glob(pattern)})
    if not any(f.suffix == ".safetensors" for f in files):
        raise FileNotFoundError(f"{model_dir}: no safetensors weights to serve in bf16")
    for file in files:
        shutil.copy(file, folder / file.name)
    return {
        "source": str(model_dir),
        "size_mb": round(sum(f.stat().st_size for f in files) / 2**20, 1),
    }


def remove_weights(folder: Path) -> None:
    """Undo ``copy_weights`` (the gate rejected bf16)."""
    for pattern in WEIGHT_FILES:
        for file in folder.glob(pattern):
            file.unlink()


def build_variants(folder: Path, names: list[str], config) -> dict[str, dict]:
    """Write every requested ONNX variant beside ``model.onnx``; returns how each was built.

    INT8 and fp16 start from the optimised graph when it is built (fused ops run faster
    and quantise better), otherwise from the plain fp32 graph.
    """
    fp32 = folder / VARIANTS["fp32"].file
    info: dict[str, dict] = {"fp32": {"source": "torch.onnx.export"}}
    base = fp32
    if "optimized" in names:
        fused = optimize(fp32, folder / VARIANTS["optimized"].file, config)
        info["optimized"] = {"source": fp32.name, "fused_ops": fused}
        base = folder / VARIANTS["optimized"].file
        log.info(
            "optimised graph: %s",
            ", ".join(f"{n} {op}" for op, n in fused.items()) or "nothing fused",
        )
    if "int8" in names:
        quantize_int8(base, folder / VARIANTS["int8"].file)
        info["int8"] = {"source": base.name}
    if "fp16" in names:
        to_fp16(base, folder / VARIANTS["fp16"].file)
        info["fp16"] = {"source": base.name}
    for name in info:
        info[name]["size_mb"] = round((folder / VARIANTS[name].file).stat().st_size / 2**20, 1)
    return info
