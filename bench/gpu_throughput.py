"""Training and inference throughput of a Llama-shaped reranker on the local accelerator.

A random-weight ``LlamaForSequenceClassification`` (~110M parameters by default, built
from a config, no download) trains with the listwise loss in bf16 autocast, then scores
batches with torch bf16 and, where onnxruntime has a CUDA provider, with ONNX Runtime.
``--tiny`` shrinks everything so the script runs on a CPU in seconds (CI).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from transformers import LlamaConfig, LlamaForSequenceClassification

from reranktune.finetune.trainer import listwise_loss


def build_model(tiny: bool) -> LlamaForSequenceClassification:
    size = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=1000) if tiny else \
        dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12,
             num_key_value_heads=4, vocab_size=32000)
    config = LlamaConfig(**size, max_position_embeddings=1024, num_labels=1, pad_token_id=0)
    torch.manual_seed(0)
    return LlamaForSequenceClassification(config)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def train_pairs_per_s(model, device: str, queries: int, passages: int, length: int, steps: int) -> float:
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ids = torch.randint(1, model.config.vocab_size, (queries * passages, length), device=device)
    mask = torch.ones_like(ids)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")
    for step in range(steps + 2):          # two warm-up steps
        if step == 2:
            _sync(device)
            start = time.perf_counter()
        with autocast:
            loss = listwise_loss(model(input_ids=ids, attention_mask=mask).logits[:, 0], passages, 1.0)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    _sync(device)
    return queries * passages * steps / (time.perf_counter() - start)


@torch.inference_mode()
def torch_infer_pairs_per_s(model, device: str, batch: int, length: int, iters: int) -> float:
    model.eval()
    ids = torch.randint(1, model.config.vocab_size, (batch, length), device=device)
    mask = torch.ones_like(ids)
    with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
        for i in range(iters + 2):
            if i == 2:
                _sync(device)
                start = time.perf_counter()
            model(input_ids=ids, attention_mask=mask)
    _sync(device)
    return batch * iters / (time.perf_counter() - start)


def onnx_cuda_pairs_per_s(model, batch: int, length: int, iters: int) -> float | str:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return f"no CUDA provider in onnxruntime {ort.__version__} ({', '.join(ort.get_available_providers())})"
    from reranktune.export.onnx_export import export_onnx

    model = model.float().cpu().eval()
    ids = torch.randint(1, model.config.vocab_size, (batch, length))
    feeds = {"input_ids": ids.numpy(), "attention_mask": torch.ones_like(ids).numpy()}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        tokenizer = SimpleNamespace(model_input_names=["input_ids", "attention_mask"])
        export_onnx(model, tokenizer, path, 17, {k: torch.from_numpy(v)[:2, :8] for k, v in feeds.items()})
        session = ort.InferenceSession(str(path), providers=["CUDAExecutionProvider"])
        for i in range(iters + 2):
            if i == 2:
                start = time.perf_counter()
            session.run(["logits"], feeds)
        return batch * iters / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny model and shapes (CPU smoke run)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = build_model(args.tiny).to(device)
    length = 32 if args.tiny else 256
    figures = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "parameters_millions": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "sequence_length": length,
    }
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    figures["precision"] = "bf16 autocast" if device == "cuda" else "fp32"
    figures["train_pairs_per_s"] = round(train_pairs_per_s(model, device, 4 if args.tiny else 32, 5, length,
                                                                2 if args.tiny else 10), 1)
    figures["infer_pairs_per_s_torch"] = round(torch_infer_pairs_per_s(model, device, 64, length,
                                                                           2 if args.tiny else 20), 1)
    if device == "cuda":
        figures["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    onnx = onnx_cuda_pairs_per_s(model, 64, length, 2 if args.tiny else 20) if device == "cuda" else "cpu run"
    figures["infer_pairs_per_s_onnx_cuda"] = round(onnx, 1) if isinstance(onnx, float) else onnx
    print(json.dumps(figures, indent=2))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
