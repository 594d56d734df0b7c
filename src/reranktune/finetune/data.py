"""Training data in the reference trainer's format, served as listwise groups."""
from __future__ import annotations

from itertools import cycle, islice
from pathlib import Path

import pandas as pd
import torch

from reranktune.io import InputError, read_json
from reranktune.reranker import format_pair


def load_corpus(training_file: Path, corpus_path: str) -> dict[str, str]:
    folder = (training_file.parent / corpus_path).resolve()
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise InputError(f"{training_file}: corpus folder {folder} has no .parquet files")
    frame = pd.concat([pd.read_parquet(f, columns=["id", "text"]) for f in files])
    return dict(zip(frame["id"].astype(str), frame["text"].astype(str)))


class ListwiseDataset(torch.utils.data.Dataset):
    """Each item: a query, its positive first, then ``n_passages - 1`` negatives (cycled).

    With ``with_scores`` each item also carries the passages' first-stage scores (prep writes
    them as ``score``), the teacher for distillation.
    """

    def __init__(self, training_file: str | Path, n_passages: int, with_scores: bool = False) -> None:
        training_file = Path(training_file)
        spec = read_json(training_file)
        try:
            corpus = load_corpus(training_file, spec["corpus"]["path"])
            records = spec["data"]
        except KeyError as exc:
            raise InputError(f"{training_file}: missing key {exc}") from None
        self.items: list[dict] = []
        for n, record in enumerate(records):
            try:
                docs = [record["pos_doc"][0], *islice(cycle(record["neg_doc"]), n_passages - 1)]
                item = {"query": record["question"], "passages": [corpus[d["id"]] for d in docs]}
            except (KeyError, IndexError) as exc:
                raise InputError(f"{training_file}: data[{n}]: unknown or missing document {exc}") from None
            if len(docs) < 2:
                raise InputError(f"{training_file}: data[{n}] ({record.get('question_id')}): no negatives")
            if with_scores:
                if any(not isinstance(d.get("score"), (int, float)) for d in docs):
                    raise InputError(
                        f"{training_file}: data[{n}] ({record.get('question_id')}): a document has no numeric "
                        "'score' (distillation and the prior need prep's scores; set finetune.distillation_weight "
                        "and finetune.prior_weight to 0)"
                    )
                item["scores"] = [float(d["score"]) for d in docs]
            self.items.append(item)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class ListwiseCollator:
    """Flattens a batch of groups into ``batch x n_passages`` tokenised sequences."""

    def __init__(self, tokenizer, prompt_template: str, max_length: int, input_names: list[str]) -> None:
        self.tokenizer = tokenizer
        self.input_names = input_names
        self.prompt_template = prompt_template
        self.max_length = max_length

    def __call__(self, features: list[dict]) -> dict:
        texts = [format_pair(self.prompt_template, f["query"], p) for f in features for p in f["passages"]]
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        inputs = {name: batch[name] for name in self.input_names}
        if "scores" in features[0]:
            inputs["teacher_scores"] = torch.tensor([f["scores"] for f in features], dtype=torch.float32)
        return inputs
