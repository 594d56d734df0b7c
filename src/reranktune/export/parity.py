"""Compare an exported reranker's scores with PyTorch's fp32 ones on real pairs, batch by batch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import spearmanr

from reranktune.reranker.scoring import LogitBackend


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


class ParityProbe:
    """Fixed batches of real pairs (several batch sizes, up to the maximum length) and PyTorch's
    scores."""

    def __init__(
        self,
        model,
        tokenizer,
        texts: list[str],
        max_length: int,
        input_names: list[str],
        batch_sizes: tuple[int, ...] = (1, 7, 64),
    ) -> None:
        self.input_names = input_names
        self.batches: list[dict[str, np.ndarray]] = []
        start = 0
        while start < len(texts):
            size = batch_sizes[len(self.batches) % len(batch_sizes)]
            batch = tokenizer(
                texts[start : start + size],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            self.batches.append({n: batch[n].numpy() for n in input_names})
            start += size
        model = model.eval().float().cpu()
        with torch.inference_mode():
            self.torch_scores = np.concatenate(
                [
                    model(**{n: torch.from_numpy(b[n]) for n in input_names}).logits[:, 0].numpy()
                    for b in self.batches
                ]
            )

    def compare(self, backend: LogitBackend) -> Parity:
        """``backend``'s logits on the probe's batches against PyTorch's."""
        scores = np.concatenate(backend.logits_batches(self.batches))
        shapes = [list(batch["input_ids"].shape) for batch in self.batches]
        return compare_scores(self.torch_scores, scores, shapes)


def compare_scores(reference: np.ndarray, scores: np.ndarray, shapes=None) -> Parity:
    """Max |diff| and Spearman of ``scores`` against PyTorch's ``reference``, pair by pair."""
    a, b = np.asarray(reference, np.float64), np.asarray(scores, np.float64)
    rho = float(spearmanr(a, b).statistic) if len(a) > 1 else 1.0
    return Parity(float(np.max(np.abs(a - b))) if len(a) else 0.0, rho, len(a), shapes or [])
