"""Stage 4: ONNX export of the fine-tuned reranker, checked against PyTorch."""
