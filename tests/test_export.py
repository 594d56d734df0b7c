import numpy as np
import pytest
import torch

from reranktune.export.onnx_export import export_onnx
from reranktune.export.parity import check_parity, onnx_session
from reranktune.reranker import Reranker

TEXTS = (["question:what is vacuum \n \n passage:VACUUM reclaims storage occupied by dead tuples."] * 3 + [
    "question:lambda \n \n passage:" + "Lambda expressions create anonymous functions. " * 150,
    "question:short \n \n passage:x",
]) * 14


@pytest.mark.parametrize("fixture", ["tiny_bert_dir", "tiny_llama_dir"])
def test_onnx_matches_torch_at_several_shapes(fixture, request, tmp_path):
    reranker = Reranker.from_pretrained(str(request.getfixturevalue(fixture)), device="cpu", max_length=512)
    sample = reranker.tokenizer(TEXTS[:2], padding=True, return_tensors="pt")
    names = export_onnx(reranker.model, reranker.tokenizer, tmp_path / "model.onnx", 17, sample)
    parity = check_parity(onnx_session(str(tmp_path / "model.onnx")), reranker.model, reranker.tokenizer,
                          TEXTS, 512, names, batch_sizes=(1, 64))
    assert parity.max_abs_diff < 1e-4
    assert any(s[0] == 1 for s in parity.shapes), parity.shapes
    assert any(s[0] == 64 and s[1] == 512 for s in parity.shapes), parity.shapes


def test_parity_flags_a_corrupted_graph(tiny_bert_dir, tmp_path):
    reranker = Reranker.from_pretrained(str(tiny_bert_dir), device="cpu")
    sample = reranker.tokenizer(TEXTS[:2], padding=True, return_tensors="pt")
    names = export_onnx(reranker.model, reranker.tokenizer, tmp_path / "model.onnx", 17, sample)
    session = onnx_session(str(tmp_path / "model.onnx"))
    with torch.no_grad():
        reranker.model.classifier.bias += 0.5     # the torch side now differs from the graph
    parity = check_parity(session, reranker.model, reranker.tokenizer, TEXTS, 128, names)
    assert parity.max_abs_diff == pytest.approx(0.5, abs=1e-3)
    assert np.isfinite(parity.spearman)
