"""Compare an ONNX reranker's scores with PyTorch's on real pairs."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
import torch
from scipy.stats import spearmanr


@dataclass
class Parity:
    max_abs_diff: float
    spearman: float
    pairs: int
    shapes: list[list[int]]

    def as_dict(self) -> dict:
        return {
            "max_abs_diff": self.max_abs_diff,
            "spearman": self.spearman,
            "pairs": self.pairs,
            "shapes": self.shapes,
        }


def onnx_session(path: str) -> ort.InferenceSession:
    return ort.InferenceSession(path, providers=ort.get_available_providers())


def check_parity(
    session: ort.InferenceSession, model, tokenizer, texts: list[str], max_length: int,
    input_names: list[str], batch_sizes: tuple[int, ...] = (1, 7, 64),
) -> Parity:
    """Score ``texts`` in batches of several sizes through both engines."""
    model = model.eval().float().cpu()
    torch_scores: list[float] = []
    onnx_scores: list[float] = []
    shapes: list[list[int]] = []
    start = 0
    i = 0
    while start < len(texts):
        size = batch_sizes[i % len(batch_sizes)]
        batch = tokenizer(texts[start : start + size], padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt")
        with torch.inference_mode():
            torch_scores += model(**{n: batch[n] for n in input_names}).logits[:, 0].tolist()
        onnx_scores += session.run(["logits"], {n: batch[n].numpy() for n in input_names})[0][:, 0].tolist()
        shapes.append(list(batch["input_ids"].shape))
        start += size
        i += 1
    a, b = np.asarray(torch_scores), np.asarray(onnx_scores)
    rho = float(spearmanr(a, b).statistic) if len(a) > 1 else 1.0
    return Parity(float(np.max(np.abs(a - b))), rho, len(a), shapes)
