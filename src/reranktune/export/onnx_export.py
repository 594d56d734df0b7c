"""Export a sequence-classification reranker to ONNX with dynamic batch and length."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from reranktune.reranker.model import model_input_names


class _LogitsOnly(torch.nn.Module):
    """Plain-tensor inputs and one ``logits`` output, as ONNX consumers expect."""

    def __init__(self, model: torch.nn.Module, input_names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.input_names = input_names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.input_names, tensors))).logits


def export_onnx(
    model,
    tokenizer,
    path: Path,
    opset: int,
    sample: dict[str, torch.Tensor],
    attn_implementation: str | None = "eager",
) -> list[str]:
    """Write ``path``; returns the input names the graph takes.

    Eager attention traces to explicit MatMul/Softmax nodes, the pattern onnxruntime's
    optimizer fuses into one Attention op (an SDPA export stays unfused); the model's
    own setting is restored afterwards.
    """
    names = model_input_names(model, tokenizer)
    previous = model.config._attn_implementation
    if attn_implementation and attn_implementation != previous:
        model.set_attn_implementation(attn_implementation)
    try:
        _export(model, names, path, opset, sample)
    finally:
        if attn_implementation and attn_implementation != previous:
            model.set_attn_implementation(previous)
    return names


def _export(
    model, names: list[str], path: Path, opset: int, sample: dict[str, torch.Tensor]
) -> None:
    wrapper = _LogitsOnly(model.eval(), names).eval()  # export restores this mode on exit
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes["logits"] = {0: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings about shape-dependent branches
        torch.onnx.export(
            wrapper,
            tuple(sample[n] for n in names),
            str(path),
            input_names=names,
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )
