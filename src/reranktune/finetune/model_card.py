"""A Hugging Face model card (README.md) for the fine-tuned reranker."""

from __future__ import annotations

import json
from pathlib import Path

from reranktune.io import write_text
from reranktune.params import FinetuneParams, ModelParams


def write_model_card(
    folder: Path, params: FinetuneParams, model: ModelParams, summary: dict
) -> None:
    distilled = (
        f" {params.distillation_weight:g} of the loss matched the first-stage embedder's scores"
        f" (distillation, temperature {params.distillation_temperature:g})."
        if params.distillation_weight
        else ""
    )
    weights = summary.get("prior_weights")
    prior = (
        f"\n\n**Score = logit + a first-stage prior**: {weights['dense']:g} x the cosine of an"
        " embedding model (the first stage's, with its query/passage prefixes)"
        f" + {weights['lexical']:g} x BM25 divided by its query's maximum (corpus statistics),"
        " both saved in `prior/` and described in"
        " `reranktune.json`. Load the folder with `reranktune.reranker.Reranker.from_pretrained`,"
        " which adds the prior."
        if weights
        else ""
    )
    text = f"""---
library_name: transformers
pipeline_tag: text-classification
base_model: {model.base_model}
tags: [reranker, cross-encoder, reranktune]
---

# Fine-tuned cross-encoder reranker

Fine-tuned from `{model.base_model}` by reranktune with a listwise
softmax cross-entropy over 1 positive and {params.train_n_passages - 1} hard negatives per query.\
{distilled}{prior}

Score a pair by formatting it with the prompt template and taking the single logit:

```python
from transformers import AutoModelForSequenceClassification, AutoTokenizer
model = AutoModelForSequenceClassification.from_pretrained("PATH")
tokenizer = AutoTokenizer.from_pretrained("PATH")
text = {params.prompt_template!r}.format(query="...", passage="...")
score = model(**tokenizer(text, truncation=True, max_length={params.rerank_max_length}, \
return_tensors="pt")).logits[0, 0]
```

## Training data and run

```json
{json.dumps(summary, indent=2)}
```

## Parameters

```json
{params.model_dump_json(indent=2)}
```
"""
    write_text(folder / "README.md", text)
