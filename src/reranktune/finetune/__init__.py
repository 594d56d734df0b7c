"""Stage 2: listwise cross-encoder fine-tuning on transformers.Trainer."""
