"""Training data in the reference trainer's format, served as listwise groups."""

from __future__ import annotations

import random
from itertools import cycle, islice
from pathlib import Path

import numpy as np
import torch

from reranktune.documents import without_source_sentence
from reranktune.io import InputError
from reranktune.reranker.scoring import PairEncoder
from reranktune.training_file import read_training_file


class ListwiseDataset(torch.utils.data.Dataset):
    """Each item: a query, its positive first, then ``n_passages - 1`` negatives (cycled).

    With ``with_scores`` each item also carries the passages' first-stage scores (prep writes
    them as ``score``: the embedding model's cosines), the teacher for distillation; with a
    prior, ``set_prior`` adds each passage's prior score. With ``cloze_rate`` that share of the
    positives (a seeded draw) lose the sentence their query was cut from
    (``documents.without_source_sentence``); the file's score stays that of the whole passage.
    """

    def __init__(
        self,
        training_file: str | Path,
        n_passages: int,
        with_scores: bool = False,
        cloze_rate: float = 0.0,
        seed: int = 0,
    ) -> None:
        training = read_training_file(training_file)
        training_file, corpus, records = training.path, training.corpus, training.records
        self.items: list[dict] = []
        draw = random.Random(seed)
        for n, record in enumerate(records):
            try:
                docs = [record["pos_doc"][0], *islice(cycle(record["neg_doc"]), n_passages - 1)]
                item = {"query": record["question"], "passages": [corpus[d["id"]] for d in docs]}
            except (KeyError, IndexError) as exc:
                raise InputError(
                    f"{training_file}: data[{n}]: unknown or missing document {exc}"
                ) from None
            if len(docs) < 2:
                raise InputError(
                    f"{training_file}: data[{n}] ({record.get('question_id')}): no negatives"
                )
            if cloze_rate and draw.random() < cloze_rate:
                positive = without_source_sentence(item["query"], item["passages"][0])
                item["clozed"] = positive != item["passages"][0]
                item["passages"][0] = positive
            if with_scores:
                if any(not isinstance(d.get("score"), (int, float)) for d in docs):
                    raise InputError(
                        f"{training_file}: data[{n}] ({record.get('question_id')}): "
                        "a document has no numeric 'score' (distillation and the dense prior "
                        "need prep's scores; set finetune.distillation_weight "
                        "and finetune.prior.dense_weight to 0)"
                    )
                item["scores"] = [float(d["score"]) for d in docs]
            self.items.append(item)
        if not self.items:
            raise InputError(
                f"{training_file}: no training records ('data' is empty); rerun `reranktune prep` "
                "on more Q&A pairs or a lower prep.quality_threshold"
            )
        self.corpus_texts = list(corpus.values())

    def pairs(self) -> tuple[list[str], list[str]]:
        """(queries, passages), every item's passages in order, flattened."""
        queries = [item["query"] for item in self.items for _ in item["passages"]]
        return queries, [p for item in self.items for p in item["passages"]]

    def clozed_rows(self) -> list[int]:
        """The ``pairs()`` rows whose positive lost its source sentence (the file scored it
        whole)."""
        rows, start = [], 0
        for item in self.items:
            if item.get("clozed"):
                rows.append(start)
            start += len(item["passages"])
        return rows

    def file_scores(self) -> list[float]:
        return [s for item in self.items for s in item["scores"]]

    def set_prior(self, values: list[float]) -> None:
        """Each passage's prior score, in ``pairs()`` order: trained on logit + prior."""
        self._set("prior", values)

    def set_teacher(self, values: list[float]) -> None:
        """Each passage's teacher score for distillation, in ``pairs()`` order, instead of the
        file's."""
        self._set("teacher", values)

    def _set(self, key: str, values: list[float]) -> None:
        start = 0
        for item in self.items:
            item[key] = values[start : start + len(item["passages"])]
            start += len(item["passages"])

    def tokenize(self, encoder: PairEncoder) -> None:
        """Encode every pair now, in one call (the tokenizer's threads share it), so the collator
        only pads.

        On a GPU, per-batch tokenization on the training loop's thread can take longer than the
        step itself; done up front it costs a few seconds once.
        """
        queries, passages = self.pairs()
        encoded = encoder.encode(queries, passages)
        start = 0
        for item in self.items:
            end = start + len(item["passages"])
            item["encoded"] = [
                {name: np.asarray(ids, dtype=np.int32) for name, ids in pair.items()}
                for pair in encoded[start:end]
            ]
            start = end

    def lengths(self) -> list[int]:
        """Per item, its longest pair: in tokens once tokenized, else in characters."""
        if self.items and "encoded" in self.items[0]:
            return [max(len(pair["input_ids"]) for pair in item["encoded"]) for item in self.items]
        return [len(item["query"]) + max(map(len, item["passages"])) for item in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class LengthGroupedSampler(torch.utils.data.Sampler[int]):
    """Batches of items of similar length, the batches in random order.

    Items are shuffled, cut into pools of ``pool_batches`` batches, sorted by length within
    a pool and cut into batches, which are then shuffled (a short last batch stays last):
    padding stays small, and unlike transformers' sampler no run of long batches precedes
    the short ones. The order is a function of (seed, epoch), so a resumed run replays the
    interrupted epoch.
    """

    def __init__(
        self, lengths: list[int], batch_size: int, seed: int, pool_batches: int = 50
    ) -> None:
        self.lengths = lengths
        self.batch_size = batch_size
        self.seed = seed
        self.pool = batch_size * pool_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        batches = []
        for start in range(0, len(order), self.pool):
            pool = sorted(order[start : start + self.pool], key=lambda i: self.lengths[i])
            batches += [pool[i : i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
        # a short last batch stays last: the data loader cuts this stream into batches again
        short = batches.pop() if batches and len(batches[-1]) < self.batch_size else []
        for b in torch.randperm(len(batches), generator=generator).tolist():
            yield from batches[b]
        yield from short


class ListwiseCollator:
    """Flattens a batch of groups into ``batch x n_passages`` sequences, encoded as eval and serve
    encode them."""

    def __init__(self, encoder: PairEncoder) -> None:
        self.encoder = encoder

    def __call__(self, features: list[dict]) -> dict:
        if "encoded" in features[0]:  # ListwiseDataset.tokenize ran
            encoded = [pair for f in features for pair in f["encoded"]]
        else:
            queries = [f["query"] for f in features for _ in f["passages"]]
            encoded = self.encoder.encode(queries, [p for f in features for p in f["passages"]])
        arrays = self.encoder.pad(encoded)
        inputs = {name: torch.from_numpy(array) for name, array in arrays.items()}
        teacher = "teacher" if "teacher" in features[0] else "scores"
        for key, name in ((teacher, "teacher_scores"), ("prior", "prior_scores")):
            if key in features[0]:
                inputs[name] = torch.tensor([f[key] for f in features], dtype=torch.float32)
        return inputs
