"""Export a sequence-classification reranker to ONNX with dynamic batch and length."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from reranktune.reranker import model_input_names


class _LogitsOnly(torch.nn.Module):
    """Plain-tensor inputs and one ``logits`` output, as ONNX consumers expect."""

    def __init__(self, model: torch.nn.Module, input_names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.input_names = input_names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.input_names, tensors))).logits


def export_onnx(model, tokenizer, path: Path, opset: int, sample: dict[str, torch.Tensor]) -> list[str]:
    """Write ``path``; returns the input names the graph takes."""
    names = model_input_names(model, tokenizer)
    wrapper = _LogitsOnly(model.eval(), names)
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes["logits"] = {0: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")   # TracerWarnings about shape-dependent branches
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
    return names
