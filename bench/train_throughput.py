"""Training pairs/s: reranktune's ListwiseTrainer vs sentence-transformers' CrossEncoderTrainer.

Same model (the packaged MiniLM with a new one-logit head), same listwise groups
(1 positive + 4 negatives), same loss (softmax cross-entropy over each group; ST's
ListNetLoss with one-hot labels is the same function), batch, sequence length and
precision. reranktune runs twice per round: with params.yaml's dropout and attention
(``finetune.dropout``, ``finetune.attn_implementation``) and with the model's own (its
dropout, transformers' SDPA attention), which is also how sentence-transformers trains it.
All run alternately, ``--rounds`` times each, in one process.

    python bench/train_throughput.py [--groups 64] [--rounds 2] [--max-length 128]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

from reranktune.documents import (
    content_words,  # noqa: E402
    read_documents,  # noqa: E402
)
from reranktune.finetune.run import precision_flags, run_finetune  # noqa: E402
from reranktune.models import resolve_model  # noqa: E402
from reranktune.params import FinetuneParams, ModelParams, PriorParams  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
N_PASSAGES = 5


def make_groups(n: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    docs, _ = read_documents(REPO / "data" / "questions" / "nq-utd" / "corpus.jsonl", [], 50, 5)
    chunks = [c for d in docs for c in d.chunks if len(c) > 200]
    rng = random.Random(seed)
    groups = []
    for i in rng.sample(range(len(chunks)), n):
        query = " ".join(content_words(chunks[i])[:6])
        negatives = rng.sample([c for j, c in enumerate(chunks) if j != i], N_PASSAGES - 1)
        groups.append((query, [chunks[i], *negatives]))
    return groups


def run_ours(groups, work: Path, params: FinetuneParams) -> float:
    corpus, data = {}, []
    for g, (query, passages) in enumerate(groups):
        ids = [f"g{g}_{k}" for k in range(len(passages))]
        corpus.update(zip(ids, passages))
        data.append(
            {
                "question_id": f"q{g}",
                "question": query,
                "corpus_id": "train",
                "pos_doc": [{"id": ids[0], "score": 1}],
                "neg_doc": [{"id": i, "score": 0} for i in ids[1:]],
            }
        )
    (work / "corpus").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": list(corpus), "text": list(corpus.values())}).to_parquet(
        work / "corpus" / "train.parquet"
    )
    (work / "train.json").write_text(json.dumps({"corpus": {"path": "./corpus/"}, "data": data}))
    summary = run_finetune(
        params, work / "train.json", work / "model", work / "ckpt", work / "live"
    )
    return len(groups) * N_PASSAGES / summary["train_runtime_s"]


def run_sentence_transformers(groups, work: Path, params: FinetuneParams) -> float:
    from datasets import Dataset
    from sentence_transformers.cross_encoder import (
        CrossEncoder,
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from sentence_transformers.cross_encoder.losses import ListNetLoss

    model = CrossEncoder(
        resolve_model(ModelParams().base_model),
        num_labels=1,
        max_length=params.rerank_max_length,
        device="cpu",
    )
    dataset = Dataset.from_dict(
        {
            "query": [q for q, _ in groups],
            "docs": [p for _, p in groups],
            "labels": [[1] + [0] * (N_PASSAGES - 1) for _ in groups],
        }
    )
    args = CrossEncoderTrainingArguments(
        output_dir=str(work / "st"),
        per_device_train_batch_size=params.per_device_batch_size,
        num_train_epochs=1,
        learning_rate=params.learning_rate,
        warmup_steps=0,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=params.mixed_precision == "bf16",
        logging_steps=1000,
        seed=params.seed,
        dataloader_num_workers=0,
    )
    trainer = CrossEncoderTrainer(
        model=model, args=args, train_dataset=dataset, loss=ListNetLoss(model)
    )
    result = trainer.train()
    return len(groups) * N_PASSAGES / result.metrics["train_runtime"]


def main() -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--groups", type=int, default=64, help="queries per run (each with 5 passages)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each trainer")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="auto: bf16 where this machine runs it natively, as finetune picks it",
    )
    args = parser.parse_args()
    precision = "bf16" if precision_flags(args.precision)["bf16"] else "fp32"
    params = FinetuneParams(
        prior=PriorParams(dense_weight=0.0, lexical_weight=0.0),
        per_device_batch_size=4,
        global_batch_size=4,
        learning_rate=5e-5,
        lr_warmup_steps=0,
        num_epochs=1,
        rerank_max_length=args.max_length,
        mixed_precision=precision,
        save_steps=10_000,
        logging_steps=1000,
    )
    models_own = params.model_copy(update={"dropout": None, "attn_implementation": None})
    groups = make_groups(args.groups)
    ours, own, theirs = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            ours.append(run_ours(groups, Path(tmp) / f"ours{r}", params))
            own.append(run_ours(groups, Path(tmp) / f"own{r}", models_own))
            theirs.append(run_sentence_transformers(groups, Path(tmp) / f"st{r}", params))
            print(
                f"round {r + 1}: reranktune {ours[-1]:.1f} pairs/s, with the model's own dropout "
                f"and attention {own[-1]:.1f}, sentence-transformers {theirs[-1]:.1f}"
            )
    result = {
        "setup": {
            "model": "all-MiniLM-L6-v2 + new head",
            "groups": args.groups,
            "passages_per_group": N_PASSAGES,
            "per_device_batch_queries": 4,
            "max_length": args.max_length,
            "precision": precision,
            "rounds": args.rounds,
            "dropout": params.dropout,
            "attn_implementation": params.attn_implementation,
        },
        "reranktune_pairs_per_s": [round(x, 2) for x in ours],
        "reranktune_models_own_dropout_and_attention_pairs_per_s": [round(x, 2) for x in own],
        "sentence_transformers_pairs_per_s": [round(x, 2) for x in theirs],
        "ratio_median": round(statistics.median(ours) / statistics.median(theirs), 3),
        "ratio_over_models_own_median": round(statistics.median(ours) / statistics.median(own), 3),
    }
    print(
        f"ratio reranktune / sentence-transformers (median): {result['ratio_median']}; "
        f"over the model's own dropout and attention: {result['ratio_over_models_own_median']}"
    )
    save("train_throughput", result)
    return result


if __name__ == "__main__":
    main()
